package optimizer

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// A pinned prefix stays where the operator put it, through a clear RTT win
// and through its backbone failing; Unpin hands it back to the default and
// to the optimizer, which then moves it as usual.
func TestPinHoldsAgainstOptimizer(t *testing.T) {
	r := newRig(t, 2, testOptions())
	p, q := pfx(0), pfx(1)
	r.measure(p, 50, 10, 60)
	r.measure(q, 50, 10)
	if err := r.o.Pins().Pin(p, bbC); err != nil {
		t.Fatal(err)
	}
	r.expectSel(p, bbC)
	r.step(time.Second)
	r.expectSel(p, bbC) // b is 50 ms better, but p is pinned
	r.expectSel(q, bbB) // q is not: it moves

	// c fails: every other prefix would leave it; the pinned one stays.
	r.src.backbones[bbC] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 90, Loss: 0.9}
	r.stepExpect(time.Second, p, bbC)
	if pins := r.o.Pins().List(); len(pins) != 1 || pins[0].Prefix != p || pins[0].Name != "c" {
		t.Fatalf("pins %+v", pins)
	}

	delete(r.src.backbones, bbC)
	if ok, err := r.o.Pins().Unpin(p); !ok || err != nil {
		t.Fatalf("unpin: %v %v", ok, err)
	}
	r.expectSel(p, bbA)               // back to the default at once
	r.stepExpect(time.Second, p, bbB) // and the optimizer's again
	if ok, _ := r.o.Pins().Unpin(p); ok {
		t.Fatal("unpinned twice")
	}
	var reasons []Reason
	for _, e := range r.o.Events(100) {
		if e.Prefix == p {
			reasons = append(reasons, e.Reason)
		}
	}
	if len(reasons) < 3 || reasons[0] != Pinned || reasons[1] != Unpinned {
		t.Fatalf("events for the pinned prefix: %v", reasons)
	}
}

// Pinning to a backbone that holds no route for the prefix is refused and
// leaves nothing pinned.
func TestPinRefusesNonHolder(t *testing.T) {
	r := newRig(t, 1, testOptions())
	only := pfx(7)
	if err := r.f.Add(bbA, only, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.o.Pins().Pin(only, bbB); err == nil {
		t.Fatal("pinned to a backbone without a route")
	}
	if len(r.o.Pins().List()) != 0 {
		t.Fatal("a refused pin was kept")
	}
}

// A reloaded cost changes the next decision: b's 10 ms win over a
// disappears under a 20 ms cost.
func TestSetBackbonesAppliesCost(t *testing.T) {
	r := newRig(t, 1, testOptions())
	p := pfx(0)
	r.measure(p, 30, 10)
	if err := r.o.SetBackbones([]Backbone{{Name: "b", Cost: 25}}); err != nil {
		t.Fatal(err)
	}
	r.stepExpect(time.Second, p, bbA)
	if err := r.o.SetBackbones([]Backbone{{Name: "b", Cost: 0}}); err != nil {
		t.Fatal(err)
	}
	r.stepExpect(time.Second, p, bbB)
	if err := r.o.SetBackbones([]Backbone{{Name: "nope"}}); err == nil {
		t.Fatal("an unknown backbone was accepted")
	}
}

// Without an optimizer, Pins alone select and reset in the FIB, and list
// in prefix order, not string order: 9.0.0.0/8 before 10.0.0.0/8.
func TestPinsWithoutOptimizer(t *testing.T) {
	f := newFIB(t, 3, 0)
	var want []netip.Prefix
	for _, s := range []string{"9.0.0.0/8", "10.0.0.0/8", "10.0.0.0/16", "2001:db8::/32"} {
		want = append(want, netip.MustParsePrefix(s))
	}
	for _, p := range want {
		for _, b := range []fib.BackboneID{bbA, bbB} {
			if err := f.Add(b, p, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	pins := NewPins(f)
	for _, i := range []int{3, 1, 2, 0} {
		if err := pins.Pin(want[i], bbB); err != nil {
			t.Fatal(err)
		}
	}
	var got []netip.Prefix
	for _, p := range pins.List() {
		got = append(got, p.Prefix)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("pins listed %v, want %v", got, want)
	}
	if e, _ := f.Route(want[1]); e.Backbone != bbB || !pins.Has(want[1]) {
		t.Fatalf("pinned %v is on %d", want[1], e.Backbone)
	}
	if ok, err := pins.Unpin(want[1]); !ok || err != nil {
		t.Fatalf("unpin: %v %v", ok, err)
	}
	if e, _ := f.Route(want[1]); e.Backbone != bbA || pins.Has(want[1]) {
		t.Fatalf("unpinned %v is on %d, pinned %v", want[1], e.Backbone, pins.Has(want[1]))
	}
}
