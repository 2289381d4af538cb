// Package layout holds, in its tests, the import rules that README's
// Architecture section promises (only the daemon reads configuration; the
// forwarder pulls in no routing code; nothing imports back up the flow),
// so that a change breaking one fails a test instead of drifting from the
// document. It has no code and must never gain any.
package layout
