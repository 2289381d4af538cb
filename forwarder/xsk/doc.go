// Package xsk is pnap's AF_XDP sockets: a Port is one socket bound to one
// queue of one interface, with its UMEM and rings, and offers the fast path
// what it needs in pnap's terms (receive a batch of frames, release them,
// send a batch) rather than descriptors and ring indices. It never
// allocates, locks or calls through an interface per packet, and never
// blocks except in poll(2) by its caller; it knows nothing of routing. Today
// it is built on github.com/asavie/xdp, whose limits it works around where a
// measurement said so; that dependency stays behind this package's API.
package xsk
