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
