// Package forwarder is pnap's fast path: one Worker per queue decides each
// packet (parse, one batched fib lookup, rewrite in place), counts what it
// drops and why, and samples what probes measure; a Loop drives a worker
// over one queue of every AF_XDP port (xsk) and sends the probes queued on
// its InjectRing. The kernel objects around it live in subpackages, one per
// concept: xsk (AF_XDP sockets), steering (the XDP program and its maps),
// neighbours (next hops over netlink) and slowpath (ICMP errors). The fast
// path never allocates, locks, makes a syscall or calls through an
// interface per packet; anything unusual (ICMP errors, unresolved
// neighbours) is handed to the slow path off the worker, and it never
// blocks on it.
package forwarder
