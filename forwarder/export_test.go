package forwarder

// Internals for the external tests (package forwarder_test), which run the
// forwarder together with its subpackages; those import forwarder, so the
// tests that use them cannot be in package forwarder.
var (
	IPv4HeaderSumOK = ipv4HeaderSumOK
	Checksum16      = checksum16
	ICMPEcho        = icmpEcho
	PlaneFIBs       = planeFIBs
)
