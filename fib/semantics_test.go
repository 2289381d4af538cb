package fib

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func mustFIB(t *testing.T, n int) *FIB {
	t.Helper()
	f, err := New(testBackbones(n), Options{MaxRoutes: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustAdd(t *testing.T, f *FIB, b BackboneID, p string, pathLen int) {
	t.Helper()
	if err := f.Add(b, netip.MustParsePrefix(p), pathLen); err != nil {
		t.Fatal(err)
	}
}

// expect checks that a resolves to prefix want via backbone sel.
func expect(t *testing.T, f *FIB, a, want string, sel BackboneID) {
	t.Helper()
	v := f.Load()
	e, ok := v.Lookup(netip.MustParseAddr(a))
	if want == "" {
		if ok {
			t.Fatalf("%s: got %v, want no route", a, f.Prefix(e.Route))
		}
		return
	}
	if !ok {
		t.Fatalf("%s: no route, want %s", a, want)
	}
	if got := f.Prefix(e.Route); got != netip.MustParsePrefix(want) {
		t.Fatalf("%s: got %v, want %s", a, got, want)
	}
	if e.Backbone != sel {
		t.Fatalf("%s (%s): selected %d, want %d", a, want, e.Backbone, sel)
	}
	id, bb, ok := v.Forward(netip.MustParseAddr(a))
	if !ok || id != e.Route || bb != sel {
		t.Fatalf("%s: Forward gives (%d,%d,%v), Lookup gives (%d,%d)", a, id, bb, ok, e.Route, e.Backbone)
	}
}

func TestLongestMatchAcrossBackbones(t *testing.T) {
	f := mustFIB(t, 3)
	mustAdd(t, f, 0, "10.0.0.0/8", 3)
	mustAdd(t, f, 1, "10.1.0.0/16", 3)
	mustAdd(t, f, 2, "10.1.2.0/24", 3)
	mustAdd(t, f, 0, "10.1.2.128/25", 3)
	mustAdd(t, f, 1, "2001:db8::/32", 2)
	mustAdd(t, f, 2, "2001:db8:1::/48", 2)
	expect(t, f, "10.9.9.9", "10.0.0.0/8", 0)
	expect(t, f, "10.1.9.9", "10.1.0.0/16", 1)
	expect(t, f, "10.1.2.3", "10.1.2.0/24", 2)
	expect(t, f, "10.1.2.200", "10.1.2.128/25", 0)
	expect(t, f, "11.0.0.1", "", 0)
	expect(t, f, "2001:db8:2::1", "2001:db8::/32", 1)
	expect(t, f, "2001:db8:1::1", "2001:db8:1::/48", 2)
	expect(t, f, "2001:db9::1", "", 0)
	e, ok := f.Route(netip.MustParsePrefix("10.1.2.0/24"))
	if !ok || e.Holders != 1<<2 {
		t.Fatalf("10.1.2.0/24 holders %b, want only backbone 2", e.Holders)
	}
}

func TestDefaultSelectionOrder(t *testing.T) {
	f, err := New([]Backbone{{Name: "a", Preference: 200}, {Name: "b", Preference: 100}, {Name: "c", Preference: 100}}, Options{MaxRoutes: 64})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, f, 0, "192.0.2.0/24", 1)
	expect(t, f, "192.0.2.1", "192.0.2.0/24", 0)
	mustAdd(t, f, 2, "192.0.2.0/24", 5) // better preference than a
	expect(t, f, "192.0.2.1", "192.0.2.0/24", 2)
	mustAdd(t, f, 1, "192.0.2.0/24", 3) // same preference as c, shorter path
	expect(t, f, "192.0.2.1", "192.0.2.0/24", 1)
	mustAdd(t, f, 1, "192.0.2.0/24", -1) // path unknown now: ranks after c's known path
	expect(t, f, "192.0.2.1", "192.0.2.0/24", 2)
}

func TestSelectRefusesNonHolder(t *testing.T) {
	f := mustFIB(t, 3)
	mustAdd(t, f, 0, "198.51.100.0/24", 2)
	mustAdd(t, f, 1, "198.51.100.0/24", 2)
	mustAdd(t, f, 2, "198.51.0.0/16", 2) // covers, but not the exact prefix
	err := f.Select(netip.MustParsePrefix("198.51.100.0/24"), 2)
	if !errors.Is(err, ErrNotHeld) {
		t.Fatalf("select via a backbone without the exact prefix: err = %v, want ErrNotHeld", err)
	}
	expect(t, f, "198.51.100.1", "198.51.100.0/24", 0)
	if err := f.Select(netip.MustParsePrefix("198.51.100.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	expect(t, f, "198.51.100.1", "198.51.100.0/24", 1)
	if err := f.Select(netip.MustParsePrefix("203.0.113.0/24"), 1); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("select of an absent prefix: err = %v, want ErrNoRoute", err)
	}
	// An explicit selection survives another backbone adding the route...
	mustAdd(t, f, 2, "198.51.100.0/24", 1)
	expect(t, f, "198.51.100.1", "198.51.100.0/24", 1)
	// ...and ResetSelection hands the choice back to the default order.
	if err := f.ResetSelection(netip.MustParsePrefix("198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	expect(t, f, "198.51.100.1", "198.51.100.0/24", 0)
}

func TestWithdrawSelectedMovesToAnotherHolder(t *testing.T) {
	f := mustFIB(t, 3)
	p := netip.MustParsePrefix("203.0.113.0/24")
	for b := BackboneID(0); b < 3; b++ {
		mustAdd(t, f, b, p.String(), 2)
	}
	mustAdd(t, f, 0, "203.0.0.0/16", 2)
	if err := f.Select(p, 2); err != nil {
		t.Fatal(err)
	}
	expect(t, f, "203.0.113.9", p.String(), 2)
	if ok, err := f.Withdraw(2, p); !ok || err != nil {
		t.Fatalf("withdraw: %v %v", ok, err)
	}
	expect(t, f, "203.0.113.9", p.String(), 0) // default order among those left
	if err := f.Select(p, 1); err != nil {
		t.Fatal(err)
	}
	if ok, _ := f.Withdraw(1, p); !ok {
		t.Fatal("withdraw reported nothing removed")
	}
	expect(t, f, "203.0.113.9", p.String(), 0)
	if ok, _ := f.Withdraw(1, p); ok {
		t.Fatal("second withdraw of the same route reported a removal")
	}
	if ok, _ := f.Withdraw(0, p); !ok {
		t.Fatal("withdraw reported nothing removed")
	}
	// The last holder gone, the covering /16 answers: no blackhole.
	expect(t, f, "203.0.113.9", "203.0.0.0/16", 0)
	if _, ok := f.Route(p); ok {
		t.Fatal("withdrawn prefix still in the FIB")
	}
}

func TestDefaultRoutes(t *testing.T) {
	f := mustFIB(t, 2)
	mustAdd(t, f, 0, "0.0.0.0/0", 1)
	mustAdd(t, f, 1, "::/0", 1)
	mustAdd(t, f, 1, "192.0.2.0/24", 1)
	expect(t, f, "8.8.8.8", "0.0.0.0/0", 0)
	expect(t, f, "255.255.255.255", "0.0.0.0/0", 0)
	expect(t, f, "192.0.2.7", "192.0.2.0/24", 1)
	expect(t, f, "2001:db8::1", "::/0", 1)
	expect(t, f, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0", 1)
	if _, err := f.Withdraw(0, netip.MustParsePrefix("0.0.0.0/0")); err != nil {
		t.Fatal(err)
	}
	expect(t, f, "8.8.8.8", "", 0)
	expect(t, f, "192.0.2.7", "192.0.2.0/24", 1)
}

func TestHostRoutes(t *testing.T) {
	f := mustFIB(t, 2)
	mustAdd(t, f, 0, "198.18.0.0/15", 1)
	mustAdd(t, f, 1, "198.18.7.7/32", 1)
	mustAdd(t, f, 0, "2001:2::/48", 1)
	mustAdd(t, f, 1, "2001:2::7/128", 1)
	mustAdd(t, f, 0, "2001:2::6/127", 1)
	expect(t, f, "198.18.7.7", "198.18.7.7/32", 1)
	expect(t, f, "198.18.7.6", "198.18.0.0/15", 0)
	expect(t, f, "198.18.7.8", "198.18.0.0/15", 0)
	expect(t, f, "2001:2::7", "2001:2::7/128", 1)
	expect(t, f, "2001:2::6", "2001:2::6/127", 0)
	expect(t, f, "2001:2::8", "2001:2::/48", 0)
}

// IPv4-mapped IPv6 addresses are IPv6 addresses to the FIB: they never match
// an IPv4 route, and a mapped prefix cannot be added.
func TestIPv4MappedIsIPv6(t *testing.T) {
	f := mustFIB(t, 2)
	mustAdd(t, f, 0, "10.0.0.0/8", 1)
	expect(t, f, "::ffff:10.1.2.3", "", 0)
	mustAdd(t, f, 1, "::/0", 1)
	expect(t, f, "::ffff:10.1.2.3", "::/0", 1)
	expect(t, f, "10.1.2.3", "10.0.0.0/8", 0)
	if err := f.Add(0, netip.MustParsePrefix("::ffff:10.0.0.0/104"), 1); err == nil {
		t.Fatal("adding an IPv4-mapped prefix succeeded")
	}
	if err := f.Add(0, netip.MustParsePrefix("10.0.0.1/8"), 1); err == nil {
		t.Fatal("adding a prefix with host bits succeeded")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	f := mustFIB(t, 2)
	mustAdd(t, f, 0, "10.0.0.0/8", 1)
	mustAdd(t, f, 1, "10.1.2.0/24", 1)
	mustAdd(t, f, 1, "2001:db8::/32", 1)
	mustAdd(t, f, 0, "2001:db8:0:1::/64", 1)
	v := f.Load()
	a4, a6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8:0:1::9")
	allocs := testing.AllocsPerRun(1000, func() {
		v.Lookup(a4)
		v.Lookup(a6)
		v.Forward(a4)
		v.Forward(a6)
		v.Forward4(0x0a010203)
		v.Forward6(0x20010db800000001, 9)
	})
	if allocs != 0 {
		t.Fatalf("lookups allocate %.1f times per run", allocs)
	}
	if id, _, ok := v.Forward6(0x20010db800000001, 9); !ok || f.Prefix(id) != netip.MustParsePrefix("2001:db8:0:1::/64") {
		t.Fatalf("Forward6 found %v", f.Prefix(id))
	}
}

func TestFull(t *testing.T) {
	f, err := New(testBackbones(1), Options{MaxRoutes: 2})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, f, 0, "10.0.0.0/8", 1)
	mustAdd(t, f, 0, "11.0.0.0/8", 1)
	if err := f.Add(0, netip.MustParsePrefix("12.0.0.0/8"), 1); err == nil {
		t.Fatal("adding past MaxRoutes succeeded")
	}
	expect(t, f, "11.1.1.1", "11.0.0.0/8", 0)
}

// The grace period of a withdrawn RouteID starts when the Version without it
// is published, not when Withdraw runs inside a long Update.
func TestRouteIDGraceStartsAtPublish(t *testing.T) {
	f, err := New(testBackbones(1), Options{MaxRoutes: 16, Grace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, f, 0, "10.0.0.0/8", 1)
	var old *Version
	err = f.Update(func(tx *Txn) error {
		if _, err := tx.Withdraw(0, netip.MustParsePrefix("10.0.0.0/8")); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // a long transaction
		old = f.Load()                     // the last Version that has 10/8
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustAdd(t, f, 0, "192.168.0.0/16", 1)
	e, ok := old.Lookup(netip.MustParseAddr("10.1.2.3"))
	if !ok {
		t.Fatal("old version lost its route")
	}
	if got, _ := f.Route(netip.MustParsePrefix("192.168.0.0/16")); got.Route == e.Route {
		t.Fatalf("route id %d reused within the grace period of the Version still naming it", e.Route)
	}
}

func TestWithdrawnRouteRefusesSelection(t *testing.T) {
	f := mustFIB(t, 2)
	mustAdd(t, f, 0, "10.0.0.0/8", 1)
	e, _ := f.Route(netip.MustParsePrefix("10.0.0.0/8"))
	if _, err := f.Withdraw(0, netip.MustParsePrefix("10.0.0.0/8")); err != nil {
		t.Fatal(err)
	}
	if err := f.SelectRoute(e.Route, 0); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("SelectRoute on a withdrawn route: %v, want ErrNoRoute", err)
	}
	if pl := f.PathLen(e.Route, 0); pl != -1 {
		t.Fatalf("PathLen of a withdrawn route = %d, want -1", pl)
	}
}

func TestUpdateSurvivesPanicAndStaleTxn(t *testing.T) {
	f := mustFIB(t, 1)
	var stale *Txn
	func() {
		defer func() { recover() }()
		f.Update(func(tx *Txn) error {
			stale = tx
			if err := tx.Add(0, netip.MustParsePrefix("10.0.0.0/8"), 1); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	done := make(chan struct{})
	go func() {
		mustAdd(t, f, 0, "11.0.0.0/8", 1)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("FIB still locked after a panic inside Update")
	}
	expect(t, f, "10.1.1.1", "10.0.0.0/8", 0) // what fn did before panicking is published
	if err := stale.Add(0, netip.MustParsePrefix("12.0.0.0/8"), 1); err == nil {
		t.Fatal("a Txn used after its Update succeeded")
	}
}
