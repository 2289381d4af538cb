// Package rfc2544 is pnap's throughput benchmark: for each forwarder (pnap,
// Linux forwarding, a raw AF_XDP bounce, a native XDP redirect), family and
// frame size it searches for the highest rate carried without loss (RFC
// 2544 section 26.1), measures latency at that rate, and writes a report
// (bench/results/rfc2544.{md,json} and PNG plots). The backbones share the
// routing tables out, so the forwarders that look destinations up spread
// them over all backbones, and a frame that arrives on another backbone
// than its destination's longest match counts as lost.
//
// It runs as a Go benchmark so that the lab's namespaces live and die with
// the test binary:
//
//	go test -run '^$' -bench RFC2544 -benchtime 1x ./bench/rfc2544/ -args -report ../results
//
// TestQuick runs a seconds-long smoke version inside `make test`.
package rfc2544
