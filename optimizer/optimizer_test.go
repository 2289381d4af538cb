package optimizer

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

func TestHysteresis(t *testing.T) {
	r := newRig(t, 2, testOptions())
	p, q := pfx(0), pfx(1)
	// p: b is 3 ms better (under MinImprovementMs). q: b is 6 ms better
	// on 100 ms (under MinImprovementPct).
	r.measure(p, 20, 17)
	r.measure(q, 100, 94)
	r.step(time.Second)
	r.expectSel(p, bbA)
	r.expectSel(q, bbA)
	if n := moves(r.o.Counters()); n != 0 {
		t.Fatalf("%d moves on small wins", n)
	}
	// Clear wins: 10 ms on 20 (50 %), 15 ms on 100 (15 %).
	r.src.set(p, bbB, 10, 0, 50)
	r.src.set(q, bbB, 85, 0, 50)
	r.step(time.Second)
	r.expectSel(p, bbB)
	r.expectSel(q, bbB)
	if got := r.o.Overrides(); got != 2 {
		t.Fatalf("Overrides() = %d, want 2", got)
	}
}

func TestMinSamples(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.src.set(p, bbA, 50, 0, 50)
	r.src.set(p, bbB, 10, 0, 9)
	r.stepExpect(time.Second, p, bbA)
	r.src.set(p, bbB, 10, 0, 10)
	r.stepExpect(time.Second, p, bbB)
}

func TestCurrentUnmeasuredStays(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.src.set(p, bbA, 50, 0, 3) // too few to score
	r.src.set(p, bbB, 10, 0, 50)
	r.src.set(p, bbC, 10, 0, 50)
	for range 5 {
		r.step(time.Second)
	}
	r.expectSel(p, bbA)
}

func TestTotalLossCountsAsSamples(t *testing.T) {
	// Every probe through a lost: no RTT, but the 100 % loss must move it.
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.src.set(p, bbA, 0, 1, 30)
	r.src.set(p, bbB, 40, 0, 30)
	r.stepExpect(time.Second, p, bbB)
	if e := r.o.Events(1)[0]; e.Reason != LowerLoss {
		t.Fatalf("reason %v, want lower-loss", e.Reason)
	}
}

func TestHoldDown(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.measure(p, 50, 30)
	r.stepExpect(time.Second, p, bbB)
	r.src.set(p, bbC, 10, 0, 50)
	r.stepExpect(30*time.Second, p, bbB) // 30 s after the move: held down
	r.stepExpect(29*time.Second, p, bbB)
	r.stepExpect(time.Second, p, bbC) // 60 s after
}

func TestBackToDefault(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.measure(p, 50, 30)
	r.stepExpect(time.Second, p, bbB)
	// The default becomes as good: not a clear win, nothing moves.
	r.src.set(p, bbA, 30, 0, 50)
	r.stepExpect(time.Minute, p, bbB)
	// Clearly better: back, through ResetSelection, releasing the override.
	r.src.set(p, bbA, 20, 0, 50)
	r.stepExpect(time.Second, p, bbA)
	if got := r.o.Overrides(); got != 0 {
		t.Fatalf("Overrides() = %d after return, want 0", got)
	}
	if e := r.o.Events(1)[0]; e.Reason != BetterRTT || e.To.Backbone != bbA {
		t.Fatalf("last event %v, want better-rtt to a", e)
	}
}

func TestMaxOverrides(t *testing.T) {
	opt := testOptions()
	opt.MaxOverrides = 2
	r := newRig(t, 6, opt)
	// Wins of 10, 20, 30, 40 ms on a 100 ms default: only the two largest
	// get the two slots.
	for i, win := range []float64{10, 20, 30, 40} {
		r.measure(pfx(i), 100, 100-win)
	}
	r.step(time.Second)
	r.expectSel(pfx(0), bbA)
	r.expectSel(pfx(1), bbA)
	r.expectSel(pfx(2), bbB)
	r.expectSel(pfx(3), bbB)
	if got, blocked := r.o.Overrides(), r.o.Counters().BlockedCap; got != 2 || blocked != 2 {
		t.Fatalf("Overrides() = %d, BlockedCap = %d; want 2, 2", got, blocked)
	}
	// At the cap, replacing an override is allowed: c beats b for pfx(2).
	r.src.set(pfx(2), bbC, 50, 0, 50)
	r.stepExpect(time.Minute, pfx(2), bbC)
	// A new win of 33 ms is not 5 ms more than the smallest kept (30):
	// nothing is displaced. (pfx(2) now keeps 50 ms, pfx(3) 40 ms.)
	r.measure(pfx(4), 100, 67)
	r.stepExpect(time.Second, pfx(4), bbA)
	// A win of 60 ms displaces the smallest, pfx(3)'s 40 ms.
	r.measure(pfx(5), 100, 40)
	r.step(time.Second)
	r.expectSel(pfx(5), bbB)
	r.expectSel(pfx(3), bbA)
	r.expectSel(pfx(2), bbC)
	if got := r.o.Overrides(); got != 2 {
		t.Fatalf("Overrides() = %d, want 2", got)
	}
	if c := r.o.Counters(); c.Moves[Displaced] != 1 {
		t.Fatalf("displaced %d, want 1", c.Moves[Displaced])
	}
}

func TestCommitLimit(t *testing.T) {
	r := limitRig(t, 3, bbB, Backbone{CommitMbps: 100}, 92e6)
	p, q, w := pfx(0), pfx(1), pfx(2)
	// 10 Mbit/s onto b at 92: 102 > 100. A 10 ms win does not justify it.
	r.measure(p, 30, 20)
	r.src.setTraffic(p, 10)
	r.stepExpect(time.Second, p, bbA)
	if c := r.o.Counters(); c.BlockedCommit == 0 {
		t.Fatal("no move blocked by the commit")
	}
	// A 60 ms win does (CommitWinMs 50).
	r.measure(p, 130, 70)
	r.stepExpect(time.Second, p, bbB)
	// A small prefix that fits under the commit, less its 10 % headroom,
	// moves on an ordinary win: b carries 80 now; 80 + 5 fits under 90.
	// (b's p95 over the window is still 92 Mbit/s: it does not count.)
	r.measure(q, 30, 20)
	r.src.setTraffic(q, 5)
	r.tr[bbB] = 80e6
	r.step(time.Second)
	r.step(time.Second)
	r.expectSel(q, bbB)
	// Into the headroom, nothing does: b carries 85 with q; 85 + 8 = 93
	// is under the commit but over 90.
	r.tr[bbB] = 85e6
	r.measure(w, 30, 20)
	r.src.setTraffic(w, 8)
	r.step(time.Second)
	r.step(time.Second)
	r.expectSel(w, bbA)
}

func TestCapacityLimit(t *testing.T) {
	r := limitRig(t, 1, bbB, Backbone{CapacityMbps: 100}, 95e6)
	p := pfx(0)
	r.measure(p, 300, 20) // 280 ms better: still never over capacity
	r.src.setTraffic(p, 10)
	r.stepExpect(time.Second, p, bbA)
	if c := r.o.Counters(); c.BlockedCapacity == 0 {
		t.Fatal("no move blocked by capacity")
	}
	// c, worse than b but a clear win over a, takes it instead.
	r.src.set(p, bbC, 40, 0, 50)
	r.stepExpect(time.Second, p, bbC)
}

func TestCapacityCountsMovesWithinAStep(t *testing.T) {
	r := limitRig(t, 5, bbB, Backbone{CapacityMbps: 100}, 60e6)
	for i := range 5 {
		r.measure(pfx(i), 50, 10)
		r.src.setTraffic(pfx(i), 15)
	}
	r.step(time.Second)
	// 60 + 15 + 15 = 90 fits, a third would make 105.
	on := 0
	for i := range 5 {
		if r.selected(pfx(i)) == bbB {
			on++
		}
	}
	if on != 2 {
		t.Fatalf("%d prefixes moved onto b, want 2 (capacity)", on)
	}
}

func TestCommitShedding(t *testing.T) {
	r := limitRig(t, 3, bbA, Backbone{CommitMbps: 100}, 120e6)
	for i := range 3 {
		r.measure(pfx(i), 20, 30) // 10 ms worse: under CommitWinMs
		r.src.setTraffic(pfx(i), 15-float64(i))
	}
	r.step(time.Second)
	// 120 - 15 = 105 is still over, 105 - 14 = 91 is not: two go.
	r.expectSel(pfx(0), bbB)
	r.expectSel(pfx(1), bbB)
	r.expectSel(pfx(2), bbA)
	if c := r.o.Counters(); c.Moves[CommitExceeded] != 2 {
		t.Fatalf("commit-exceeded moves %d, want 2", c.Moves[CommitExceeded])
	}
	// While a's p95 stays over its commit, the 10 ms win back is not
	// enough to return: no ping-pong.
	r.tr[bbA] = 91e6
	for range 120 {
		r.step(time.Second)
	}
	// a's p95 over 10 samples fell to 91: 91 + 15 > 100, so p stays;
	// nothing went back and forth meanwhile.
	if c := r.o.Counters(); moves(c) != 2 {
		t.Fatalf("%d moves, want the 2 sheds only:\n%s", moves(c), eventList(r.o.Events(20)))
	}
}

func TestCostShiftsChoice(t *testing.T) {
	opt := testOptions()
	opt.Backbones = []Backbone{{Name: "b", Cost: 20}}
	r := newRig(t, 2, opt)
	p, q := pfx(0), pfx(1)
	// b is 10 ms faster, but costs 20: a stays.
	r.measure(p, 30, 20)
	// For q, c is as fast as b and costs nothing: q goes to c, not b.
	r.measure(q, 50, 10, 12)
	r.step(time.Second)
	r.expectSel(p, bbA)
	r.expectSel(q, bbC)

	// Equal RTTs, a expensive: the move is for cost.
	opt = testOptions()
	opt.Backbones = []Backbone{{Name: "a", Cost: 30}}
	r = newRig(t, 1, opt)
	r.measure(p, 20, 20)
	r.stepExpect(time.Second, p, bbB)
	if e := r.o.Events(1)[0]; e.Reason != LowerCost {
		t.Fatalf("reason %v, want lower-cost", e.Reason)
	}
}

func TestEvents(t *testing.T) {
	opt := testOptions()
	opt.Events = 2
	r := newRig(t, 3, opt)
	r.src.set(pfx(0), bbA, 50, 0, 40)
	r.src.set(pfx(0), bbB, 20, 0, 30)
	r.src.set(pfx(1), bbA, 20, 0.10, 100) // 20 + 1000
	r.src.set(pfx(1), bbC, 30, 0, 100)
	r.src.setTraffic(pfx(1), 1) // busier: decided first
	r.step(time.Second)
	es := r.o.Events(10)
	if len(es) != 2 {
		t.Fatalf("%d events, want 2:\n%s", len(es), eventList(es))
	}
	loss, rtt := es[0], es[1]
	if loss.Prefix != pfx(1) || loss.Reason != LowerLoss || loss.From.Name != "a" || loss.To.Name != "c" ||
		loss.From.Score != 1020 || loss.To.Score != 30 || loss.From.Loss != 0.1 || loss.To.Samples != 100 {
		t.Fatalf("loss event %+v", loss)
	}
	if rtt.Prefix != pfx(0) || rtt.Reason != BetterRTT || rtt.From.RTT != 50*time.Millisecond ||
		rtt.To.RTT != 20*time.Millisecond || rtt.From.Samples != 40 || rtt.To.Samples != 30 || !rtt.Time.Equal(r.now) {
		t.Fatalf("rtt event %+v", rtt)
	}
	// The ring keeps the newest two.
	r.src.set(pfx(2), bbA, 50, 0, 40)
	r.src.set(pfx(2), bbB, 20, 0, 40)
	r.step(time.Second)
	es = r.o.Events(10)
	if len(es) != 2 || es[0].Prefix != pfx(0) || es[1].Prefix != pfx(2) {
		t.Fatalf("after a third event:\n%s", eventList(es))
	}
	if es := r.o.Events(1); len(es) != 1 || es[0].Prefix != pfx(2) {
		t.Fatalf("Events(1):\n%s", eventList(es))
	}
	c := r.o.Counters()
	if c.Moves[BetterRTT] != 2 || c.Moves[LowerLoss] != 1 || c.Steps != 2 {
		t.Fatalf("counters %+v", c)
	}
}

func TestStatisticMin(t *testing.T) {
	opt := testOptions()
	opt.Statistic = StatisticMin
	r := newRig(t, 1, opt)
	p := pfx(0)
	r.measure(p, 30, 20)
	r.step(time.Second)
	if e := r.o.Events(1)[0]; e.From.RTT != 29*time.Millisecond || e.To.Score != 19 {
		t.Fatalf("event %+v: want min RTTs", e)
	}
}

// TestNoFlapping: two backbones whose RTTs differ by noise only never
// trade the prefix, even with a short hold-down.
func TestNoFlapping(t *testing.T) {
	opt := testOptions()
	opt.HoldDown = time.Second
	r := newRig(t, 1, opt)
	p := pfx(0)
	rng := rand.New(rand.NewPCG(1, 2))
	noise := func() float64 { return 20 + 2*(2*rng.Float64()-1) } // 18..22 ms: differences under MinImprovementMs
	for range 1000 {
		r.measure(p, noise(), noise())
		r.step(time.Second)
	}
	if n := moves(r.o.Counters()); n != 0 {
		t.Fatalf("%d moves between backbones within noise:\n%s", n, eventList(r.o.Events(10)))
	}
}

// TestNoisyMovesRespectHoldDown: with noise wide enough to cross the
// hysteresis now and then, moves still come at most once per hold-down.
func TestNoisyMovesRespectHoldDown(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	rng := rand.New(rand.NewPCG(3, 4))
	noise := func() float64 { return 20 + 10*(2*rng.Float64()-1) } // 10..30 ms
	for range 1000 {
		r.measure(p, noise(), noise())
		r.step(time.Second)
	}
	es := r.o.Events(1000)
	for i := 1; i < len(es); i++ {
		if d := es[i].Time.Sub(es[i-1].Time); d < 60*time.Second {
			t.Fatalf("moves %v apart:\n%s", d, eventList(es))
		}
	}
	if len(es) < 2 || len(es) > 1000/60+1 {
		t.Fatalf("%d moves in 1000 s; want a few (the noise crosses the hysteresis), at most one per hold-down", len(es))
	}
}

func TestRouteGone(t *testing.T) {
	r := newRig(t, 2, testOptions())
	r.measure(pfx(0), 50, 20)
	r.stepExpect(time.Second, pfx(0), bbB)
	// Withdrawn from every backbone while measured and overridden.
	for b := range 3 {
		if _, err := r.f.Withdraw(fib.BackboneID(b), pfx(0)); err != nil {
			t.Fatal(err)
		}
	}
	r.step(time.Second)
	if c := r.o.Counters(); c.Gone != 1 {
		t.Fatalf("Gone = %d, want 1", c.Gone)
	}
	delete(r.src.prefixes, pfx(0))
	r.step(time.Minute)
	if got := r.o.Overrides(); got != 0 {
		t.Fatalf("Overrides() = %d after the route went, want 0", got)
	}
	// b withdraws the route it was selected for: fib falls back to a,
	// and the override is no longer counted.
	r.measure(pfx(1), 50, 20)
	r.stepExpect(time.Second, pfx(1), bbB)
	if _, err := r.f.Withdraw(bbB, pfx(1)); err != nil {
		t.Fatal(err)
	}
	r.stepExpect(time.Second, pfx(1), bbA)
	if got := r.o.Overrides(); got != 0 {
		t.Fatalf("Overrides() = %d after b withdrew, want 0", got)
	}
}

func TestStaleOverride(t *testing.T) {
	opt := testOptions()
	opt.StaleAfter = 5 * time.Minute
	r := newRig(t, 1, opt)
	p := pfx(0)
	r.measure(p, 50, 20)
	r.stepExpect(time.Second, p, bbB)
	delete(r.src.prefixes, p) // no longer among the busiest
	r.stepExpect(4*time.Minute, p, bbB)
	r.stepExpect(time.Minute, p, bbA)
	if r.o.Overrides() != 0 {
		t.Fatal("stale override still counted")
	}
}

func TestNewRejects(t *testing.T) {
	f := newFIB(t, 3, 0)
	src := newSource()
	opt := testOptions()
	opt.Backbones = []Backbone{{Name: "x"}}
	if _, err := New(opt, f, src, nil); err == nil {
		t.Error("unknown backbone accepted")
	}
	opt = testOptions()
	opt.Statistic = "p90"
	if _, err := New(opt, f, src, nil); err == nil {
		t.Error("statistic p90 accepted")
	}
	opt = testOptions()
	opt.MinSamples = 0
	if _, err := New(opt, f, src, nil); err == nil {
		t.Error("min_samples 0 accepted")
	}
}

// TestRunConcurrentReaders runs the loop on the real clock while readers
// poll: for the race detector.
func TestRunConcurrentReaders(t *testing.T) {
	opt := testOptions()
	opt.Interval = time.Millisecond
	opt.HoldDown = time.Millisecond
	f := newFIB(t, 3, 4)
	src := newSource()
	for i := range 4 {
		src.set(pfx(i), bbA, 50, 0, 50)
		src.set(pfx(i), bbB, 20, 0, 50)
	}
	o, err := New(opt, f, src, fakeTraffic{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { o.Run(ctx) })
	for ctx.Err() == nil {
		_ = o.Events(10)
		_ = o.Counters()
		_ = o.Overrides()
		_ = o.Backbones()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	if o.Counters().Steps == 0 {
		t.Fatal("Run never stepped")
	}
	if e, _ := f.Route(pfx(0)); e.Backbone != bbB {
		t.Fatal("Run did not move pfx(0)")
	}
}

func TestRateWindowP95(t *testing.T) {
	w := newRateWindow(20)
	scratch := make([]float64, 20)
	if w.p95(scratch) != 0 {
		t.Fatal("empty window not 0")
	}
	for i := range 40 { // wraps: 20..39 remain
		w.add(float64(i))
	}
	// 20 samples: ceil(19) = 19th = 38 (the top one is free).
	if got := w.p95(scratch); got != 38 {
		t.Fatalf("p95 = %v, want 38", got)
	}
	w = newRateWindow(300)
	scratch = make([]float64, 300)
	for i := range 300 {
		w.add(float64(i))
	}
	if got := w.p95(scratch); got != 284 { // 15 of 300 free
		t.Fatalf("p95 = %v, want 284", got)
	}
}

// A backbone that shed load to its commit takes traffic back once it
// carries less again, seconds later, not when its p95 window has
// forgotten the overshoot: a sample under the commit cannot raise a p95
// that is over it.
func TestCommitRefillsAfterShedding(t *testing.T) {
	r := limitRig(t, 2, bbA, Backbone{CommitMbps: 100}, 120e6)
	p, q := pfx(0), pfx(1)
	r.measure(p, 20, 30)
	r.src.setTraffic(p, 25)
	r.measure(q, 20, 30)
	r.src.setTraffic(q, 10)
	r.step(time.Second)
	r.expectSel(p, bbB) // 120 - 25 = 95: under
	r.expectSel(q, bbA)
	// a now carries 60 (its other traffic went quiet); its p95 over the
	// window is still 120. p is 10 ms faster on a; 60 + 25 fits under 100.
	// (Its hold-down, 60 s, over first.)
	r.tr[bbA] = 60e6
	r.step(time.Second)
	r.step(time.Second)
	r.step(time.Minute)
	if st := r.o.Backbones()[bbA]; st.P95Bps < 100e6 {
		t.Fatalf("a's p95 %v fell under the commit: the test proves nothing", st.P95Bps)
	}
	r.expectSel(p, bbA)
}

// A path that changed shows in its latest samples before its window's
// median follows: the optimizer scores by them when they all lie well
// beyond it, and not when they scatter to both sides (jitter).
func TestLevelShift(t *testing.T) {
	r := newRig(t, 2, testOptions())
	p, q := pfx(0), pfx(1)
	r.measure(p, 20, 45, 80)
	r.measure(q, 20, 45, 80)
	recent := func(pf netip.Prefix, lo, p50, hi float64) {
		st := r.src.prefixes[pf].Backbones[bbA]
		st.Recent = probes.Recent{N: probes.RecentSamples, Lo: durMs(lo), P50: durMs(p50), Hi: durMs(hi)}
		r.src.prefixes[pf].Backbones[bbA] = st
	}
	recent(p, 148, 150, 152) // a went from 20 to 150 ms
	recent(q, 8, 22, 35)     // a jitters around 20 ms
	r.step(time.Second)
	r.expectSel(p, bbB)
	r.expectSel(q, bbA)
	if e := r.o.Events(1); len(e) != 1 || e[0].From.RTT != durMs(150) {
		t.Fatalf("the move scored a by %v, want its recent 150 ms", e)
	}
}

// A rise on the current backbone that is starting on another too (the way
// back got slower: every path shows it) moves nothing while the other's
// latest samples straddle its old level and new; a steady other still
// takes the prefix at once.
func TestRisingHolderWaits(t *testing.T) {
	r := newRig(t, 2, testOptions())
	p, q := pfx(0), pfx(1)
	r.measure(p, 20, 45)
	r.measure(q, 20, 45)
	recent := func(pf netip.Prefix, b fib.BackboneID, lo, p50, hi float64) {
		st := r.src.prefixes[pf].Backbones[b]
		st.Recent = probes.Recent{N: probes.RecentSamples, Lo: durMs(lo), P50: durMs(p50), Hi: durMs(hi)}
		r.src.prefixes[pf].Backbones[b] = st
	}
	recent(p, bbA, 79, 80, 81) // a: 20 -> 80 ms, for both
	recent(q, bbA, 79, 80, 81)
	recent(p, bbB, 45, 75, 105) // b, for p: half its latest at 105 ms
	recent(q, bbB, 44, 45, 46)  // b, for q: steady
	r.step(time.Second)
	r.expectSel(p, bbA)
	r.expectSel(q, bbB)
	recent(p, bbB, 104, 105, 106) // b's rise settled: worse than a
	r.step(time.Second)
	r.expectSel(p, bbA)
}

func durMs(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// A prefix's few probes are read against its backbone's loss over all
// prefixes: a clean window of 16 probes on a backbone losing 5 % is luck,
// not a reason to return to it.
func TestLossReadAgainstBackbone(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.measure(p, 20, 25)
	r.src.setProbes(p, bbA, 16, 0)
	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 400, ProbesLost: 20, Loss: 0.05}
	r.src.backbones[bbB] = probes.BackboneStats{ProbesSent: 400}
	r.stepExpect(time.Second, p, bbB)
	// A prefix's own loss still shows: 16 of 16 lost on a backbone that
	// loses little elsewhere.
	r2 := newRig(t, 1, testOptions())
	r2.measure(p, 20, 25)
	r2.src.setProbes(p, bbA, 16, 16)
	r2.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 400, ProbesLost: 16, Loss: 0.04}
	r2.src.backbones[bbB] = probes.BackboneStats{ProbesSent: 400}
	r2.stepExpect(time.Second, p, bbB)
}

// Loss that every backbone shows (the box's, the customer side's) and
// differences of a tenth of a point do not outweigh RTT: a prefix in turn,
// with a few clean probes on its backbone, stays on it when that backbone
// loses 0.3 % over all prefixes and the others 0.1 %, and one lost probe
// of its own is not its loss; a second one is.
func TestBackgroundLossIgnored(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.measure(p, 20, 30)
	r.src.setProbes(p, bbA, 4, 1)
	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 10000, ProbesLost: 30, Loss: 0.003}
	r.src.backbones[bbB] = probes.BackboneStats{ProbesSent: 10000, ProbesLost: 10, Loss: 0.001}
	r.stepExpect(time.Second, p, bbA)
	r.src.setProbes(p, bbA, 4, 2)
	r.stepExpect(time.Second, p, bbB)
}

// A prefix whose traffic is not measured yet does not go onto a backbone
// with a commit on an ordinary win; once it is, it does if it fits.
func TestCommitWaitsForTraffic(t *testing.T) {
	r := limitRig(t, 1, bbB, Backbone{CommitMbps: 100}, 10e6)
	p := pfx(0)
	r.measure(p, 30, 20)
	r.stepExpect(time.Second, p, bbA)
	if c := r.o.Counters(); c.BlockedCommit == 0 {
		t.Fatal("the move was not counted as blocked by the commit")
	}
	r.src.setTraffic(p, 5)
	r.stepExpect(time.Second, p, bbB)
}
