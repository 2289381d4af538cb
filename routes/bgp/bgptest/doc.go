// Package bgptest holds what the tests of routes/bgp and the lab tests of
// a running pnapd share: the corpus of malformed UPDATEs, with what
// RFC 7606 says to do with each, and the raw builders it is made of. It is
// for tests only: no non-test code imports it. It must not import
// routes/bgp, whose own tests import it.
package bgptest
