package optimizer

import (
	"math"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// A prefix that left a lossy backbone returns to it as soon as its last
// rounds show the loss gone beyond chance, while the window still holds
// the lossy past; rounds that chance could explain change nothing.
func TestLossFallReturnsEarly(t *testing.T) {
	f := newFIB(t, 2, 1)
	src := roundSource{newSource()}
	o, err := New(testOptions(), f, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	// a: 20 ms but 5 % of its probes lost in the window; b: a clean 45 ms.
	src.set(pfx(0), bbA, 20, 0.05, 40)
	src.set(pfx(0), bbB, 45, 0, 40)
	src.backbones[bbA] = probes.BackboneStats{ProbesSent: 400, ProbesLost: 20, Loss: 0.05}
	src.backbones[bbB] = probes.BackboneStats{ProbesSent: 400}
	now := t0
	o.Step(now)
	if got := sel(t, f); got != bbB {
		t.Fatalf("on %d with a losing 5 %%, want b", got)
	}
	now = now.Add(time.Minute) // past hold-down
	// Two clean rounds of 32: 0.95^64 = 3.7 %, chance enough.
	src.rounds = map[fib.BackboneID]Round{bbA: {Sent: 32}, bbB: {Sent: 32}}
	src.prevRounds = map[fib.BackboneID]Round{bbA: {Sent: 32}, bbB: {Sent: 32}}
	o.Step(now)
	if got := sel(t, f); got != bbB {
		t.Fatal("moved back to a on two clean rounds of 32 probes")
	}
	// Of 64: 0.95^128 = 0.14 %, still chance enough at lossShiftP.
	src.rounds[bbA], src.prevRounds[bbA] = Round{Sent: 64}, Round{Sent: 64}
	o.Step(now.Add(500 * time.Millisecond))
	if got := sel(t, f); got != bbB {
		t.Fatal("moved back to a on 128 answered probes: 0.14 % is chance at 0.1 %")
	}
	// Of 80: 0.95^160 = 0.03 %.
	src.rounds[bbA], src.prevRounds[bbA] = Round{Sent: 80}, Round{Sent: 80}
	o.Step(now.Add(time.Second))
	if got := sel(t, f); got != bbA {
		t.Fatal("still on b after 160 answered probes in a row on a")
	}
}

func sel(t *testing.T, f *fib.FIB) fib.BackboneID {
	t.Helper()
	e, ok := f.Route(pfx(0))
	if !ok {
		t.Fatal("no route")
	}
	return e.Backbone
}

// binomialCDF against the sum of the terms, and at its edges.
func TestBinomialCDF(t *testing.T) {
	direct := func(k, n uint64, p float64) float64 {
		var s float64
		for i := uint64(0); i <= k; i++ {
			lg, _ := math.Lgamma(float64(n + 1))
			li, _ := math.Lgamma(float64(i + 1))
			ln, _ := math.Lgamma(float64(n - i + 1))
			s += math.Exp(lg - li - ln + float64(i)*math.Log(p) + float64(n-i)*math.Log1p(-p))
		}
		return s
	}
	for _, c := range []struct {
		k, n uint64
		p    float64
	}{{0, 64, 0.05}, {1, 100, 0.05}, {3, 200, 0.1}, {10, 1000, 0.02}} {
		if got, want := binomialCDF(c.k, c.n, c.p), direct(c.k, c.n, c.p); math.Abs(got-want) > 1e-9*math.Max(want, 1e-300) {
			t.Errorf("binomialCDF(%d, %d, %g) = %g, want %g", c.k, c.n, c.p, got, want)
		}
	}
	if got := binomialCDF(5, 100, 0.05); got != 1 {
		t.Errorf("no fall (5 of 100 at 5 %%): %g, want 1", got)
	}
	if got := binomialCDF(3, 10, 1); got != 0 {
		t.Errorf("a dead backbone that answered: %g, want 0", got)
	}
}

// A prefix that left a backbone for its latency and loss returns as soon
// as its latest samples show a new path that has lost nothing since they
// began, though the window holds the old path's losses; not while the
// backbone still loses.
func TestLevelShiftClearsOldLoss(t *testing.T) {
	f := newFIB(t, 2, 1)
	src := newSource()
	o, err := New(testOptions(), f, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	src.set(pfx(0), bbA, 150, 0.05, 40)
	src.set(pfx(0), bbB, 45, 0, 40)
	src.backbones[bbA] = probes.BackboneStats{ProbesSent: 400, ProbesLost: 20, Loss: 0.05, LastLossSent: t0}
	src.backbones[bbB] = probes.BackboneStats{ProbesSent: 400}
	o.Step(t0)
	if got := sel(t, f); got != bbB {
		t.Fatalf("on %d, want b", got)
	}
	// a's latest samples: a 20 ms path since t0+59.5 s.
	st := src.prefixes[pfx(0)].Backbones[bbA]
	st.Recent = probes.Recent{N: probes.RecentSamples, Lo: 19 * time.Millisecond, P50: 20 * time.Millisecond, Hi: 21 * time.Millisecond, Since: t0.Add(59500 * time.Millisecond)}
	src.prefixes[pfx(0)].Backbones[bbA] = st
	bs := src.backbones[bbA]
	bs.LastLossSent = t0.Add(59600 * time.Millisecond) // lost one since
	src.backbones[bbA] = bs
	o.Step(t0.Add(time.Minute))
	if got := sel(t, f); got != bbB {
		t.Fatal("back on a, which lost a probe since its new path showed")
	}
	bs.LastLossSent = t0.Add(59400 * time.Millisecond)
	src.backbones[bbA] = bs
	o.Step(t0.Add(61 * time.Second))
	if got := sel(t, f); got != bbA {
		t.Fatal("still on b though a's new path has lost nothing")
	}
}
