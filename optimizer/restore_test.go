package optimizer

import (
	"net/netip"
	"testing"
	"time"
)

// A restart restores the optimizer's moves where they were, with their
// hold-downs running from the original move, and leaves pins to the pins.
func TestRestoreKeepsMovesAndHoldDown(t *testing.T) {
	r := newRig(t, 3, testOptions()) // hold_down 60 s
	p0, p1, p2 := pfx(0), pfx(1), pfx(2)
	r.measure(p0, 50, 30, 60)
	r.measure(p1, 50, 60, 30)
	r.stepExpect(time.Second, p0, bbB)
	r.expectSel(p1, bbC)
	if err := r.o.Pins().Pin(p2, bbC); err != nil {
		t.Fatal(err)
	}
	steers := r.o.Steers()
	if len(steers) != 2 || steers[0].Prefix != p0 || steers[0].Backbone != "b" || !steers[0].Moved.Equal(r.now) || steers[1].Backbone != "c" {
		t.Fatalf("steers %+v, want %v on b and %v on c, moved at %v", steers, p0, p1, r.now)
	}

	// A restart: a new FIB and optimizer, every prefix on its default.
	r2 := newRig(t, 3, testOptions())
	r2.now = r.now
	r2.expectSel(p0, bbA)
	bad := []Steer{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Backbone: "b", Moved: r.now},
		{Prefix: p2, Backbone: "z", Moved: r.now},
	}
	n, errs := r2.o.Restore(append(steers, bad...))
	if n != 2 || len(errs) != 2 {
		t.Fatalf("restored %d, errors %v; want 2 restored and 2 refused", n, errs)
	}
	r2.expectSel(p0, bbB)
	r2.expectSel(p1, bbC)
	if r2.o.Overrides() != 2 {
		t.Fatalf("%d overrides after the restore, want 2", r2.o.Overrides())
	}
	// a is now best for p0, but the hold-down runs from the first move.
	r2.measure(p0, 20, 30, 60)
	r2.measure(p1, 50, 60, 30)
	r2.stepExpect(50*time.Second, p0, bbB)
	r2.stepExpect(10*time.Second, p0, bbA)
	r2.expectSel(p1, bbC)
}
