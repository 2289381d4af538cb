// Package bounce is the benchmarks' peer "raw AF_XDP port-to-port without
// lookup": frames from one xsk.Port go out of another with only their MACs
// rewritten, through the same ports, copies and kicks as pnap's forwarder
// loop. It measures what Go plus AF_XDP costs before pnap's parsing and
// lookup, as a ceiling to compare pnap with; it must never be mistaken for
// a forwarder (no lookup, no TTL, no checks) nor used outside benchmarks.
package bounce
