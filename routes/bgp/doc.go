// Package bgp is pnap's lean BGP-4 speaker: one Session per neighbour runs
// the RFC 4271 finite state machine over TCP (optionally signed with TCP
// MD5), negotiates IPv4 and IPv6 unicast (RFC 4760), 4-octet AS numbers
// (RFC 6793), route refresh (RFC 2918) and graceful restart as a helper
// (RFC 4724), and decodes each UPDATE into prefix-level Changes handed to a
// callback, with malformed UPDATEs handled as RFC 7606 says; for announce
// sessions it keeps the set of routes to advertise and sends the difference.
// It is built on GoBGP's message codec (pkg/packet/bgp) but not on its
// server: the package never keeps the routes it learns (the daemon's FIB
// does), never imports the FIB, forwarder or configuration, and nothing a
// peer sends may make it panic or deliver a Change it did not fully parse.
package bgp
