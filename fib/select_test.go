package fib

import (
	"net/netip"
	"testing"
)

// Selections counts each live route once, on its selected backbone, and
// tells overrides apart; Generation grows with route changes only.
func TestSelectionsAndGeneration(t *testing.T) {
	f, err := New([]Backbone{{Name: "a", Preference: 1}, {Name: "b", Preference: 2}}, Options{MaxRoutes: 64})
	if err != nil {
		t.Fatal(err)
	}
	g0 := f.Load().Generation()
	for _, p := range []string{"192.0.2.0/24", "198.51.100.0/24", "2001:db8::/32"} {
		for b := BackboneID(0); b < 2; b++ {
			if err := f.Add(b, netip.MustParsePrefix(p), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Add(1, netip.MustParsePrefix("203.0.113.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	g1 := f.Load().Generation()
	if g1 <= g0 {
		t.Fatalf("generation %d after adds, was %d", g1, g0)
	}
	if err := f.Select(netip.MustParsePrefix("2001:db8::/32"), 1); err != nil {
		t.Fatal(err)
	}
	if f.Load().Generation() != g1 {
		t.Fatal("a selection change published a Version")
	}
	sel, over := f.Selections()
	if sel[0] != 2 || sel[1] != 2 || over != 1 {
		t.Fatalf("selections %v, overrides %d; want [2 2], 1", sel, over)
	}
	if _, err := f.Withdraw(1, netip.MustParsePrefix("203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if sel, _ := f.Selections(); sel[1] != 1 {
		t.Fatalf("after withdrawing b's only route: %v", sel)
	}
}

// DefaultAmong follows the default rule: preference, then AS path length.
func TestDefaultAmong(t *testing.T) {
	f, err := New([]Backbone{{Name: "a", Preference: 1}, {Name: "b", Preference: 1}, {Name: "c", Preference: 0}}, Options{MaxRoutes: 16})
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("192.0.2.0/24")
	for b, l := range []int{5, 3, 9} {
		if err := f.Add(BackboneID(b), p, l); err != nil {
			t.Fatal(err)
		}
	}
	e, _ := f.Route(p)
	if got := f.DefaultAmong(e.Route, e.Holders); got != 2 {
		t.Fatalf("default among all: %d, want c (lowest preference)", got)
	}
	if got := f.DefaultAmong(e.Route, e.Holders&^(1<<2)); got != 1 {
		t.Fatalf("default among a and b: %d, want b (shorter path)", got)
	}
}

// Overrides lists what Select moved and nothing the default rule placed;
// EachSelected lists every route where it is.
func TestOverrides(t *testing.T) {
	f, err := New([]Backbone{{Name: "a"}, {Name: "b"}}, Options{MaxRoutes: 16})
	if err != nil {
		t.Fatal(err)
	}
	moved, stays := netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")
	for _, p := range []netip.Prefix{moved, stays} {
		for b := range 2 {
			if err := f.Add(BackboneID(b), p, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := f.Select(moved, 1); err != nil {
		t.Fatal(err)
	}
	got := map[netip.Prefix]BackboneID{}
	f.Overrides(func(p netip.Prefix, b BackboneID) bool { got[p] = b; return true })
	if len(got) != 1 || got[moved] != 1 {
		t.Fatalf("overrides %v, want only %v on b", got, moved)
	}
	clear(got)
	f.EachSelected(func(p netip.Prefix, b BackboneID) bool { got[p] = b; return true })
	if len(got) != 2 || got[moved] != 1 || got[stays] != 0 {
		t.Fatalf("selected %v", got)
	}
	if err := f.ResetSelection(moved); err != nil {
		t.Fatal(err)
	}
	n := 0
	f.Overrides(func(netip.Prefix, BackboneID) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d overrides after the reset", n)
	}
}
