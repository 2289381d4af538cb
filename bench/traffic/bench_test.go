//go:build linux

package traffic

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// BenchmarkGenerator measures what the generator offers and the receiver
// counts through one veth pair, generator on CPU 0, one 300 ms Run per
// case: paced accuracy and the unpaced maximum, IPv4 and IPv6, 64 B, 1518 B
// and IMIX, with the receiver's work on the generator's CPU (veth's default)
// or on CPU 1 (threaded NAPI). Run it alone on an idle machine:
//
//	go test -run '^$' -bench Generator -benchtime 1x ./bench/traffic/
func BenchmarkGenerator(b *testing.B) {
	for _, napi := range []string{"inline", "cpu1"} {
		p := newPair(b)
		if napi == "cpu1" {
			if err := p.rl.PinNAPI(1); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range []struct {
			family, size int
			rates        []float64
		}{
			{IPv4, 64, []float64{1e4, 1e5, 1e6, 2e6, 0}},
			{IPv6, 82, []float64{1e6, 0}},
			{IPv4, 1518, []float64{1e6, 0}},
			{IPv6, 1518, []float64{0}},
			{IPv4, 0, []float64{1e6, 0}},
		} {
			s := p.spec(c.family, c.size)
			s.IMIX = c.size == 0
			size := strconv.Itoa(c.size) + "B"
			if s.IMIX {
				size = "imix"
			}
			g := NewGenerator(b, p.gen, p.gl, s)
			for _, rate := range c.rates {
				name := fmt.Sprintf("%s/ipv%d-%s/rate=%g", napi, c.family, size, rate)
				b.Run(name, func(b *testing.B) {
					var sent Sent
					var st Stats
					for range b.N {
						sent, st = p.trial(b, g, rate, 300*time.Millisecond)
					}
					b.ReportMetric(sent.Rate(), "sent-pps")
					b.ReportMetric(float64(st.Received())/sent.Took.Seconds(), "rcvd-pps")
					if rate > 0 {
						b.ReportMetric(100*(sent.Rate()/rate-1), "%rate-err")
					}
					b.ReportMetric(float64(sent.Stalled)/float64(sent.Took)*100, "%stalled")
					b.ReportMetric(float64(sent.Packets-st.Received()), "lost")
					b.ReportMetric(float64(st.LatencyP50.Nanoseconds()), "p50-ns")
					b.ReportMetric(float64(st.LatencyP99.Nanoseconds()), "p99-ns")
				})
			}
		}
	}
}
