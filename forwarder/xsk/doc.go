// Package xsk is pnap's AF_XDP socket layer, on golang.org/x/sys/unix: a
// Umem is one worker's frame memory, shared by all the sockets it serves
// (XDP_SHARED_UMEM), and a Port is one socket bound to one queue of one
// interface, with its fill, completion, RX and TX rings. A frame received on
// one port leaves by another as its descriptor: the forwarding path never
// copies a frame in user space, and every frame is accounted for in exactly
// one ring, the worker's hands or the free list. It binds zero-copy where
// the driver can and copy mode otherwise, with need_wakeup either way.
// It never allocates, locks or calls through an interface per packet, never
// panics on an errno (errors are returned or counted), never blocks except in
// poll(2) by its caller, and knows nothing of routing. It is pnap's own
// rather than asavie/xdp because that library gives each socket its own
// UMEM, so forwarding copied every frame between UMEMs.
package xsk
