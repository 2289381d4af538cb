// Package neighbours resolves pnap's next hops over netlink: a Tracker
// reads and follows the kernel's neighbour table, asks the kernel to
// resolve the gateways and connected hosts that pnap's traffic (which
// bypasses the kernel) never makes it resolve, and publishes each change as
// a new immutable forwarder.Hops. It must never touch the fast path other
// than by that one atomic publish, never write a Hops once published, and
// never use its netlink handle outside Run's goroutine.
package neighbours
