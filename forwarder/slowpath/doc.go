// Package slowpath answers what the forwarder's loops hand over (ActSlow)
// off the fast path: the ICMP and ICMPv6 errors RFC 1812 and RFC 4443 call
// for (time exceeded, destination unreachable, fragmentation needed /
// packet too big), rate-limited and sent through the kernel with an
// AF_PACKET socket per port, and requests to resolve connected hosts that
// had no MAC. It may allocate, but it must never block a loop (frames reach
// it by a channel the loops never wait on), never answer what RFC 1812
// 4.3.2.7 says must not be answered, and never send more than its limit.
package slowpath
