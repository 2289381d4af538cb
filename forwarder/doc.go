// Package forwarder is pnap's data plane: AF_XDP ports, the XDP program that
// steers transit traffic to them, one pinned worker per queue that looks each
// packet up in the fib and rewrites it, and the neighbour table. Its fast path
// never allocates, locks, makes a syscall or calls through an interface per
// packet; anything unusual (ICMP errors, unresolved neighbours) is handed to
// a slow path off the worker.
package forwarder
