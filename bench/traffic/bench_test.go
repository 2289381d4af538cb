//go:build linux

package traffic

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
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
			if err := p.rl.SetThreadedNAPI(true); err != nil {
				b.Fatal(err)
			}
			pinNAPI(b, p.rl, 1)
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

// pinNAPI pins l's NAPI kernel threads ("napi/<name>-<id>") to cpu.
// Interface names are per namespace; the ones here are unique enough while a
// benchmark runs alone.
func pinNAPI(tb testing.TB, l *lab.Link, cpu int) {
	tb.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if err != nil || !strings.HasPrefix(string(comm), "napi/"+l.Name+"-") {
			continue
		}
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	if n == 0 {
		tb.Fatalf("no NAPI thread for %s", l)
	}
}
