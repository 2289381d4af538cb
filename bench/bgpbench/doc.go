// Package bgpbench measures pnapd's BGP side by side with BIRD 2 in one
// run: BIRD feeders in namespaces send a routing table to 4 backbones, once
// to pnapd and once to a BIRD receiver, and for each receiver it measures
// the time from the first session up to the last route installed, the peak
// RSS (VmHWM) and the prefix changes per second it sustains while a test
// speaker built on GoBGP's message codec flaps 10,000 prefixes. It prints
// one table with both receivers and their ratios and writes
// bench/results/bgp.{md,json}.
//
// It runs as a Go benchmark so that the lab's namespaces and processes
// live and die with the test binary (`make bench-bgp`, root):
//
//	go test -run '^$' -bench BGP -benchtime 1x ./bench/bgpbench/ -args -report ../results
//
// TestQuick runs a seconds-long version with small tables inside `make
// test` and fails when either receiver does not converge. Nothing here
// sends traffic outside the namespaces it creates, and every BIRD it
// starts is killed when the run ends, fails or is interrupted.
package bgpbench
