package optimizer

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/internal/monotime"
	"github.com/pnap-project/pnap/probes"
)

func TestBackboneFailure(t *testing.T) {
	opt := testOptions()
	opt.HoldDown = 10 * time.Second
	r := newRig(t, 6, opt)
	only := netip.MustParsePrefix("10.99.0.0/24") // a is its only holder
	if err := r.f.Add(bbA, only, 1); err != nil {
		t.Fatal(err)
	}
	// pfx(0), pfx(1) measured (c beats b); pfx(2..4) not measured at all;
	// pfx(5) already on c.
	for _, p := range []netip.Prefix{pfx(0), pfx(1)} {
		r.measure(p, 20, 40, 30)
	}
	if err := r.f.Select(pfx(5), bbC); err != nil {
		t.Fatal(err)
	}
	r.step(time.Second)
	if n := moves(r.o.Counters()); n != 0 {
		t.Fatalf("%d moves before the failure", n)
	}

	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 80, Loss: 0.8}
	r.step(time.Second)
	failedAt := r.now
	r.expectSel(pfx(0), bbC)
	r.expectSel(pfx(1), bbC)
	for i := 2; i <= 4; i++ {
		r.expectSel(pfx(i), bbB) // default order among the rest
	}
	r.expectSel(pfx(5), bbC)
	r.expectSel(only, bbA)
	c := r.o.Counters()
	if c.Moves[BackboneFailed] != 5 || c.Failures != 1 || c.Stranded != 1 {
		t.Fatalf("counters after failure: %+v", c)
	}
	// A first failure holds no longer than it lasts.
	if st := r.o.Backbones()[bbA]; !st.Failed || !st.FailedUntil.Equal(failedAt) {
		t.Fatalf("status of a: %+v", st)
	}
	for _, e := range r.o.Events(5) {
		if e.Reason != BackboneFailed || e.From.Name != "a" {
			t.Fatalf("event %v", e)
		}
	}

	// a recovers and is used again at once, but the prefixes that left it
	// wait out their hold-down (10 s).
	delete(r.src.backbones, bbA)
	r.step(7 * time.Second)
	if st := r.o.Backbones()[bbA]; st.Failed {
		t.Fatal("a still failed after a first failure ended")
	}
	r.expectSel(pfx(0), bbC)
	r.step(3 * time.Second) // hold-down over
	// Measured prefixes return by score (a is 10 ms better), unmeasured
	// ones to the default order.
	r.expectSel(pfx(0), bbA)
	r.expectSel(pfx(1), bbA)
	for i := 2; i <= 4; i++ {
		r.expectSel(pfx(i), bbA)
	}
	r.expectSel(pfx(5), bbC)
	// pfx(5) was selected by hand and is not measured: the optimizer
	// never looked at it, so it is not among its overrides.
	if r.o.Overrides() != 0 {
		t.Fatalf("Overrides() = %d, want 0", r.o.Overrides())
	}
	c = r.o.Counters()
	if c.Moves[BetterRTT] != 2 || c.Moves[ResetToDefault] != 3 {
		t.Fatalf("counters after recovery: %+v", c)
	}
}

// A backbone that fails again soon after it came back is held longer each
// time, up to FailureHold; after a quiet spell a failure is a first again.
func TestRepeatedFailuresHoldLonger(t *testing.T) {
	r := newRig(t, 1, testOptions()) // FailureHold 30 s
	failFor := func() time.Duration {
		r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 80, Loss: 0.8}
		r.step(time.Second)
		at := r.now
		delete(r.src.backbones, bbA)
		st := r.o.Backbones()[bbA]
		if !st.Failed {
			t.Fatal("a not failed")
		}
		for r.o.Backbones()[bbA].Failed {
			r.step(time.Second)
		}
		return st.FailedUntil.Sub(at)
	}
	for i, want := range []time.Duration{0, 15 * time.Second, 30 * time.Second, 30 * time.Second} {
		if got := failFor(); got != want {
			t.Fatalf("failure %d in a row: held %v, want %v", i+1, got, want)
		}
	}
	r.step(3 * time.Minute) // quiet for more than 4 FailureHold
	if got := failFor(); got != 0 {
		t.Fatalf("a failure after a quiet spell: held %v, want none", got)
	}
}

func TestFailureSweepsNewRoutes(t *testing.T) {
	r := newRig(t, 2, testOptions())
	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 40, ProbesLost: 20, Loss: 0.5}
	r.stepExpect(time.Second, pfx(0), bbB)
	// a and b announce a new prefix while a is failed: the fib selects a
	// by default; the next Step moves it.
	p := netip.MustParsePrefix("192.0.2.0/24")
	for _, b := range []fib.BackboneID{bbA, bbB} {
		if err := r.f.Add(b, p, 1); err != nil {
			t.Fatal(err)
		}
	}
	r.expectSel(p, bbA)
	r.stepExpect(time.Second, p, bbB)
}

func TestFailureNeedsEnoughProbes(t *testing.T) {
	r := newRig(t, 1, testOptions())
	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 19, ProbesLost: 19, Loss: 1}
	r.stepExpect(time.Second, pfx(0), bbA)
	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 49, Loss: 0.49}
	r.stepExpect(time.Second, pfx(0), bbA)
	if c := r.o.Counters(); c.Failures != 0 {
		t.Fatalf("Failures = %d", c.Failures)
	}
}

func TestFailureLastRoundLost(t *testing.T) {
	f := newFIB(t, 3, 2)
	src := roundSource{newSource()}
	src.rounds = map[fib.BackboneID]Round{bbA: {Sent: 10, Lost: 9}}
	o, err := New(testOptions(), f, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Step(t0)
	if e, _ := f.Route(pfx(0)); e.Backbone != bbA {
		t.Fatal("moved on 9 of 10 lost")
	}
	src.rounds[bbA] = Round{Sent: 10, Lost: 10}
	o.Step(t0.Add(time.Second))
	for i := range 2 {
		if e, _ := f.Route(pfx(i)); e.Backbone != bbB {
			t.Fatalf("%v on %d after a's whole round was lost", pfx(i), e.Backbone)
		}
	}
}

// Passive only (probes without a data plane) no probe is sent, so none is
// lost: however long it runs, and however slow the traffic's answers, no
// backbone is failed and nothing is evacuated.
func TestPassiveOnlyFailsNoBackbone(t *testing.T) {
	f := newFIB(t, 3, 4)
	pr, err := probes.New(probes.DefaultOptions(), f, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pr.Active() {
		t.Fatal("probes without a data plane say they send probes")
	}
	o, err := New(testOptions(), f, pr, fakeTraffic{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for range 120 {
		// The traffic's own handshakes, slow ones, on the backbone it takes.
		for i := range 4 {
			e, _ := f.Route(pfx(i))
			for range 5 {
				pr.Store().AddRTT(e.Route, e.Backbone, probes.Passive, 400*time.Millisecond, monotime.Now())
			}
		}
		now = now.Add(time.Second)
		o.Step(now)
	}
	snap := pr.Snapshot()
	if len(snap.Prefixes) != 4 {
		t.Fatalf("the store holds %d measured prefixes, want 4", len(snap.Prefixes))
	}
	c := o.Counters()
	if c.Failures != 0 || moves(c) != 0 {
		t.Fatalf("passive only: %d failures, %d moves; events:\n%s", c.Failures, moves(c), eventList(o.Events(20)))
	}
	for _, b := range o.Backbones() {
		if b.Failed {
			t.Errorf("backbone %s failed", b.Name)
		}
	}
}

// A round answered whole ends a failure, though the window still holds
// the lost probes of the outage.
func TestCleanRoundEndsFailure(t *testing.T) {
	f := newFIB(t, 3, 2)
	src := roundSource{newSource()}
	src.backbones[bbA] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 80, Loss: 0.8}
	src.rounds = map[fib.BackboneID]Round{bbA: {Sent: 10, Lost: 10}}
	o, err := New(testOptions(), f, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Step(t0)
	if !o.Backbones()[bbA].Failed {
		t.Fatal("a not failed")
	}
	failedUntil := o.Backbones()[bbA].FailedUntil
	src.rounds[bbA] = Round{Sent: 10, Lost: 0} // the window's 80 % stays
	o.Step(t0.Add(time.Second))
	if got := o.Backbones()[bbA].FailedUntil; !got.Equal(failedUntil) {
		t.Fatalf("a clean round extended the failure: until %v, was %v", got, failedUntil)
	}
}

// A backbone whose customer traffic goes unanswered (SilentSince) fails
// with no probe lost, as passive-only measurement needs; a round of probes
// answered whole says it delivers, and overrules it.
func TestSilentBackboneFails(t *testing.T) {
	f := newFIB(t, 3, 2)
	src := roundSource{newSource()}
	src.backbones[bbA] = probes.BackboneStats{SilentSince: t0.Add(-time.Second)}
	o, err := New(testOptions(), f, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Step(t0)
	if !o.Backbones()[bbA].Failed {
		t.Fatal("a, silent, not failed")
	}
	for i := range 2 {
		if e, _ := f.Route(pfx(i)); e.Backbone != bbB {
			t.Fatalf("%v on %d, want evacuated to b", pfx(i), e.Backbone)
		}
	}
	src.rounds = map[fib.BackboneID]Round{bbA: {Sent: 10}}
	o.Step(t0.Add(time.Second))
	if o.Backbones()[bbA].Failed {
		t.Fatal("a still failed after a round answered whole")
	}
}

// Measured only where its traffic goes (passive), a prefix evacuated from
// a silent backbone returns to it once it has recovered and its hold-down
// is over: nothing else would ever measure it there. Measured there
// (active probing), scoring decides, and a worse backbone keeps nothing.
func TestEvacuatedReturnsUnmeasured(t *testing.T) {
	opt := testOptions()
	opt.HoldDown = 3 * time.Second
	r := newRig(t, 2, opt)
	r.src.set(pfx(0), bbA, 20, 0, 50) // passive: its traffic is on a
	r.src.set(pfx(1), bbA, 20, 0, 50)
	r.step(time.Second)
	r.src.backbones[bbA] = probes.BackboneStats{SilentSince: r.now}
	r.step(time.Second)
	r.expectSel(pfx(0), bbB)
	r.expectSel(pfx(1), bbB)
	// Its traffic on b now: a's samples age out, b's come in; pfx(1)
	// is probed on a too, where it measures 50 ms.
	delete(r.src.prefixes[pfx(0)].Backbones, bbA)
	r.src.set(pfx(0), bbB, 30, 0, 50)
	r.src.set(pfx(1), bbA, 50, 0, 50)
	r.src.set(pfx(1), bbB, 30, 0, 50)
	delete(r.src.backbones, bbA)
	r.stepExpect(time.Second, pfx(0), bbB) // a recovered, hold-down not over
	r.step(2 * time.Second)
	r.expectSel(pfx(0), bbA)
	r.expectSel(pfx(1), bbB)
	if c := r.o.Counters(); c.Moves[Returned] != 1 || c.Moves[BackboneFailed] != 2 || moves(c) != 3 {
		t.Fatalf("counters: %+v; events:\n%s", c, eventList(r.o.Events(20)))
	}
	// Returned, it is no longer an evacuee: with a unmeasured again it
	// stays where it is.
	r.step(10 * time.Second)
	if n := moves(r.o.Counters()); n != 3 {
		t.Fatalf("%d moves after the return, want 3; events:\n%s", n, eventList(r.o.Events(20)))
	}
}
