package optimizer

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// benchSource hands out one prebuilt snapshot, as a store would hand out
// its latest: the benchmark measures Step, not snapshot building.
type benchSource struct{ snap probes.Snapshot }

func (s *benchSource) Snapshot() probes.Snapshot { return s.snap }

// benchRig: n prefixes held by four backbones, measured or not. b beats a
// clearly for three prefixes in seven, so Step keeps ~3n/7 overrides.
func benchRig(b *testing.B, n int, measured bool) (*fib.FIB, *benchSource, *Optimizer) {
	f := newFIB(b, 4, n)
	src := &benchSource{snap: probes.Snapshot{Backbones: map[fib.BackboneID]probes.BackboneStats{}}}
	for i := range n {
		if !measured {
			break
		}
		ps := probes.PrefixStats{Prefix: pfx(i), Traffic: float64(n-i) / 100, Backbones: map[fib.BackboneID]probes.Stats{}}
		for bb, rtt := range []float64{30, 30 + float64(i%7-3)*5, 40, 50} {
			st := probes.Stats{P50: time.Duration(rtt * float64(time.Millisecond)), Min: time.Duration(rtt-1) * time.Millisecond}
			st.Samples[probes.Active] = 100
			ps.Backbones[fib.BackboneID(bb)] = st
		}
		src.snap.Prefixes = append(src.snap.Prefixes, ps)
	}
	opt := testOptions()
	opt.MaxOverrides = n
	opt.FailureHold = time.Nanosecond
	opt.Backbones = []Backbone{{Name: "a", CommitMbps: 10000}, {Name: "b", CapacityMbps: 40000}}
	tr := fakeTraffic{0: 1e9, 1: 2e9, 2: 3e9, 3: 4e9}
	o, err := New(opt, f, src, tr)
	if err != nil {
		b.Fatal(err)
	}
	return f, src, o
}

// BenchmarkStep is a steady Step over 10,000 measured prefixes and four
// backbones: every prefix scored, ~4,290 overrides kept, nothing moving.
func BenchmarkStep(b *testing.B) {
	_, _, o := benchRig(b, 10000, true)
	now := t0
	o.Step(now)
	if got := o.Overrides(); got < 4000 {
		b.Fatalf("setup: %d overrides", got)
	}
	before := moves(o.Counters())
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		o.Step(now)
	}
	if after := moves(o.Counters()); after != before {
		b.Fatalf("%d moves in steady state", after-before)
	}
}

// BenchmarkEvacuate fails a and b in turn: each Step moves all 10,000
// unmeasured prefixes off the failed one (a sweep, a fib.Route and a swap
// each).
func BenchmarkEvacuate(b *testing.B) {
	f, src, o := benchRig(b, 10000, false)
	now := t0
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		failing := fib.BackboneID(i % 2)
		clear(src.snap.Backbones)
		src.snap.Backbones[failing] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 100, Loss: 1}
		now = now.Add(time.Second)
		o.Step(now)
		i++
	}
	e, _ := f.Route(pfx(0))
	if c := o.Counters(); c.Moves[BackboneFailed] < uint64(i)*10000 || e.Backbone > 1 {
		b.Fatalf("%d evacuations in %d Steps; %v on %d", c.Moves[BackboneFailed], i, pfx(0), e.Backbone)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(i*10000), "ns/prefix")
}
