// Package forwarder is pnap's data plane: AF_XDP ports, the XDP program that
// steers transit traffic to them, one pinned worker per queue that looks each
// packet up in the fib and rewrites it, and the neighbour table. It never
// allocates, locks or makes a syscall per packet. (Being built: see the
// issues.)
package forwarder
