package optimizer

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/probes"
)

// A pinned prefix stays where the operator put it, through a clear RTT win
// and through its backbone failing; Unpin hands it back to the default and
// to the optimizer, which then moves it as usual.
func TestPinHoldsAgainstOptimizer(t *testing.T) {
	r := newRig(t, 2, testConfig(), nil, Options{})
	p, q := pfx(0), pfx(1)
	r.src.set(p, bbA, 50, 0, 50)
	r.src.set(p, bbB, 10, 0, 50)
	r.src.set(p, bbC, 60, 0, 50)
	r.src.set(q, bbA, 50, 0, 50)
	r.src.set(q, bbB, 10, 0, 50)
	if err := r.o.Pin(p, bbC); err != nil {
		t.Fatal(err)
	}
	r.expectSel(p, bbC)
	r.step(time.Second)
	r.expectSel(p, bbC) // b is 50 ms better, but p is pinned
	r.expectSel(q, bbB) // q is not: it moves

	// c fails: every other prefix would leave it; the pinned one stays.
	r.src.backbones[bbC] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 90, Loss: 0.9}
	r.step(time.Second)
	r.expectSel(p, bbC)
	if pins := r.o.Pins(); len(pins) != 1 || pins[0].Prefix != p || pins[0].Name != "c" {
		t.Fatalf("pins %+v", pins)
	}

	delete(r.src.backbones, bbC)
	if ok, err := r.o.Unpin(p); !ok || err != nil {
		t.Fatalf("unpin: %v %v", ok, err)
	}
	r.expectSel(p, bbA) // back to the default at once
	r.step(time.Second)
	r.expectSel(p, bbB) // and the optimizer's again
	if ok, _ := r.o.Unpin(p); ok {
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
	r := newRig(t, 1, testConfig(), nil, Options{})
	only := pfx(7)
	if err := r.f.Add(bbA, only, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.o.Pin(only, bbB); err == nil {
		t.Fatal("pinned to a backbone without a route")
	}
	if len(r.o.Pins()) != 0 {
		t.Fatal("a refused pin was kept")
	}
}

// A reloaded cost changes the next decision: b's 10 ms win over a
// disappears under a 20 ms cost.
func TestSetBackbonesAppliesCost(t *testing.T) {
	r := newRig(t, 1, testConfig(), nil, Options{})
	p := pfx(0)
	r.src.set(p, bbA, 30, 0, 50)
	r.src.set(p, bbB, 10, 0, 50)
	if err := r.o.SetBackbones([]configs.Backbone{{Name: "b", Cost: 25}}); err != nil {
		t.Fatal(err)
	}
	r.step(time.Second)
	r.expectSel(p, bbA)
	if err := r.o.SetBackbones([]configs.Backbone{{Name: "b", Cost: 0}}); err != nil {
		t.Fatal(err)
	}
	r.step(time.Second)
	r.expectSel(p, bbB)
	if err := r.o.SetBackbones([]configs.Backbone{{Name: "nope"}}); err == nil {
		t.Fatal("an unknown backbone was accepted")
	}
}
