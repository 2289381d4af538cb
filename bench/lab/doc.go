// Package lab builds test topologies for pnap: network namespaces that it
// creates for one test, joined by veth pairs (one RX and one TX queue each,
// TX checksum offload off), with addresses, routes, neighbours and sysctls,
// plus raw capture and send helpers, and BIRD 2 run in a namespace as a
// test's router. Every namespace is created by this package, under a unique
// name, and removed together with everything in it when the test ends
// (tb.Cleanup), also when it fails; the package never touches the
// interfaces of the host's own namespace and never sends traffic outside
// the namespaces it created. A program (the demo) builds labs with the same
// helpers through Main, which gives it a testing.TB.
package lab
