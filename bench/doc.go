// Package bench is pnap's benchmark lab, one package per concern: lab
// (network namespaces and veths, made for one test or program and removed
// when it ends, fails or is interrupted), topo (the labs' topologies: a
// traffic source, the device under test with pnapd or Linux forwarding,
// the backbones), emu (a user-space backbone emulator: delay, jitter,
// loss), traffic (an XDP generator and receiver), rfc2544 (throughput and
// latency against Linux forwarding and raw XDP, `make bench-rfc2544`),
// bgpbench (pnapd's BGP convergence, memory and update rate beside BIRD's,
// `make bench-bgp`) and demo (the lab demo program, `make demo`); results/
// keeps reference runs.
// Nothing here ever sends traffic outside the namespaces it creates.
package bench
