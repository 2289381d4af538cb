package fib

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/pnap-project/pnap/routes"
)

func TestReplaceBackboneTable(t *testing.T) {
	f := mustFIB(t, 2)
	mustAdd(t, f, 0, "10.0.0.0/8", 2)
	mustAdd(t, f, 0, "10.1.0.0/16", 2)
	mustAdd(t, f, 1, "10.1.0.0/16", 2)
	mustAdd(t, f, 0, "192.0.2.0/24", 2)
	if err := f.Select(netip.MustParsePrefix("10.1.0.0/16"), 1); err != nil {
		t.Fatal(err)
	}
	before, _ := f.Route(netip.MustParsePrefix("10.1.0.0/16"))
	v := f.Load()
	added, withdrawn, err := f.Replace(0, routes.PathLens([]routes.Route{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), PathLen: 1},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), PathLen: 1},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if added != 1 || withdrawn != 2 {
		t.Fatalf("added %d withdrawn %d, want 1 and 2", added, withdrawn)
	}
	expect(t, f, "10.1.2.3", "10.1.0.0/16", 1) // kept its ID and explicit selection
	expect(t, f, "10.2.0.1", "", 0)
	expect(t, f, "192.0.2.1", "", 0)
	expect(t, f, "198.51.100.1", "198.51.100.0/24", 0)
	after, _ := f.Route(netip.MustParsePrefix("10.1.0.0/16"))
	if after.Route != before.Route {
		t.Fatalf("route id changed from %d to %d across a reload", before.Route, after.Route)
	}
	// A Version loaded before the reload still answers with the old table.
	if e, ok := v.Lookup(netip.MustParseAddr("192.0.2.1")); !ok || e.Backbone != 0 {
		t.Fatalf("old version lost its route: %v %v", e, ok)
	}
	if st := f.Stats(); st.Held[0] != 2 || st.Held[1] != 1 {
		t.Fatalf("held counts %v, want [2 1]", st.Held)
	}
	var got []netip.Prefix
	f.Routes(0, func(p netip.Prefix, pathLen int) bool {
		got = append(got, p)
		return true
	})
	if len(got) != 2 {
		t.Fatalf("backbone 0 routes %v, want 2", got)
	}
	if p, ok := f.LookupBackbone(netip.MustParseAddr("10.1.2.3"), 0); !ok || p != netip.MustParsePrefix("10.1.0.0/16") {
		t.Fatalf("LookupBackbone = %v %v", p, ok)
	}
	if _, ok := f.LookupBackbone(netip.MustParseAddr("192.0.2.1"), 1); ok {
		t.Fatal("LookupBackbone found a route backbone 1 never had")
	}
}

// A route the FIB refuses is named by its position in the sequence, and the
// backbone keeps its old routes: nothing is withdrawn before every route is in.
func TestReplaceNamesFailingRoute(t *testing.T) {
	f := mustFIB(t, 1)
	mustAdd(t, f, 0, "192.0.2.0/24", 2)
	_, withdrawn, err := f.Replace(0, routes.PathLens([]routes.Route{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), PathLen: 1},
		{Prefix: netip.MustParsePrefix("203.0.113.1/24"), PathLen: 1},
	}))
	if err == nil || !strings.Contains(err.Error(), "route 1 (203.0.113.1/24)") {
		t.Fatalf("err = %v, want one naming route 1 (203.0.113.1/24)", err)
	}
	if withdrawn != 0 {
		t.Fatalf("withdrawn %d before the error, want 0", withdrawn)
	}
	expect(t, f, "192.0.2.1", "192.0.2.0/24", 0)
}

// Held tells a backbone's routes apart by path length, and Routes may
// withdraw what it visits: how a BGP feed withdraws its own routes of a
// backbone and keeps the static ones.
func TestTxnHeldAndRoutes(t *testing.T) {
	f, err := New([]Backbone{{Name: "a"}, {Name: "b"}}, Options{MaxRoutes: 64})
	if err != nil {
		t.Fatal(err)
	}
	static := netip.MustParsePrefix("192.0.2.0/24")
	learned := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	err = f.Update(func(tx *Txn) error {
		if err := tx.Add(0, static, -1); err != nil {
			return err
		}
		for _, p := range learned {
			if err := tx.Add(0, p, 2); err != nil {
				return err
			}
		}
		return tx.Add(1, learned[0], 3)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Update(func(tx *Txn) error {
		if _, l, ok := tx.Held(0, static); !ok || l != -1 {
			t.Errorf("static: held %v, path length %d", ok, l)
		}
		if r, l, ok := tx.Held(0, learned[0]); !ok || l != 2 || r == 0 {
			t.Errorf("learned: held %v, route %d, path length %d", ok, r, l)
		}
		if _, _, ok := tx.Held(1, static); ok {
			t.Error("b holds the static route of a")
		}
		n := 0
		tx.Routes(0, func(r RouteID, p netip.Prefix, pathLen int) bool {
			n++
			if pathLen >= 0 {
				if _, err := tx.Withdraw(0, p); err != nil {
					t.Error(err)
				}
			}
			return true
		})
		if n != 3 {
			t.Errorf("visited %d routes of a, want 3", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range learned {
		if e, ok := f.Route(p); ok && e.Holders.Has(0) {
			t.Errorf("%v still held by a", p)
		}
	}
	if e, ok := f.Route(learned[0]); !ok || e.Backbone != 1 {
		t.Errorf("%v: %+v, %v; want it on b", learned[0], e, ok)
	}
	if e, ok := f.Route(static); !ok || !e.Holders.Has(0) {
		t.Error("the static route went too")
	}
}
