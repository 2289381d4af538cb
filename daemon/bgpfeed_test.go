package daemon

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/routes/bgp"
)

var (
	gwA    = netip.MustParseAddr("203.0.113.1")
	gwB    = netip.MustParseAddr("203.0.113.65")
	static = netip.MustParsePrefix("198.51.100.0/24")
)

// newFeed is a feed for backbone 0 ("a") of a two-backbone FIB, whose
// backbone 1 ("b") holds every prefix of shared.
func newFeed(t *testing.T, peer bgpPeerPlan, shared ...netip.Prefix) (*bgpFeed, *fib.FIB) {
	t.Helper()
	f, err := fib.New([]fib.Backbone{{Name: "a", Preference: 100}, {Name: "b", Preference: 110}}, fib.Options{MaxRoutes: 1 << 12})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Add(0, static, -1); err != nil {
		t.Fatal(err)
	}
	for _, p := range shared {
		if err := f.Add(1, p, 3); err != nil {
			t.Fatal(err)
		}
	}
	if peer.Policy == (importPolicy{}) {
		peer.Policy = importPolicy{AllowMartians: true, MaxLen4: 24, MaxLen6: 48}
	}
	peer.GracefulRestart = true
	feed := &bgpFeed{fib: f, b: 0, peer: peer, onLink: []netip.Prefix{netip.PrefixFrom(gwA, 32), netip.MustParsePrefix("2001:db8:ffff::/64")},
		static: map[netip.Prefix]bool{static: true}, owns: [2]bool{true, true}, log: slog.New(slog.DiscardHandler)}
	return feed, f
}

func announce(p string, pathLen int) bgp.Change {
	pfx := netip.MustParsePrefix(p)
	nh := gwA
	if pfx.Addr().Is6() {
		nh = netip.MustParseAddr("2001:db8:ffff::1")
	}
	return bgp.Change{Prefix: pfx, PathLen: pathLen, NextHop: nh}
}

func withdrawal(p string) bgp.Change {
	return bgp.Change{Prefix: netip.MustParsePrefix(p), Withdraw: true}
}

// on says which backbone carries p, or -1.
func on(f *fib.FIB, p string) int {
	e, ok := f.Route(netip.MustParsePrefix(p))
	if !ok {
		return -1
	}
	return int(e.Backbone)
}

// Announcements that pass the rules enter the FIB; the rest are counted by
// reason, and a refused replacement withdraws what it replaced.
func TestFeedImportRules(t *testing.T) {
	feed, f := newFeed(t, bgpPeerPlan{})
	bad := announce("192.0.2.0/24", 2)
	bad.NextHop = gwB // another backbone's router
	feed.changes([]bgp.Change{
		announce("192.0.2.0/24", 2),
		announce("2001:db8:1::/48", 1),
		announce("198.18.0.0/25", 1), // longer than /24
		announce("0.0.0.0/0", 1),     // a default route
	})
	feed.flush()
	if on(f, "192.0.2.0/24") != 0 || on(f, "2001:db8:1::/48") != 0 {
		t.Fatal("accepted routes are not in the FIB")
	}
	if _, ok := f.Route(netip.MustParsePrefix("198.18.0.0/25")); ok {
		t.Fatal("a /25 entered the FIB")
	}
	st := feed.stats()
	if st.Refused[refusedPolicy] != 2 || st.Held != [2]int{1, 1} || st.Accepted != [2]uint64{1, 1} {
		t.Fatalf("stats %+v", st)
	}
	feed.changes([]bgp.Change{bad})
	feed.flush()
	if on(f, "192.0.2.0/24") != -1 || feed.stats().Refused[refusedNextHop] != 1 || feed.stats().Held[0] != 0 {
		t.Fatalf("a replacement with a foreign next hop left the route: on %d, %+v", on(f, "192.0.2.0/24"), feed.stats())
	}
}

// A withdrawal of a prefix the backbone also has a static route for falls
// back to the static route; one the peer never sent changes nothing.
func TestFeedWithdrawKeepsStatic(t *testing.T) {
	feed, f := newFeed(t, bgpPeerPlan{})
	feed.changes([]bgp.Change{announce(static.String(), 4), withdrawal("192.0.2.0/24")})
	feed.flush()
	if l := f.PathLen(routeOf(t, f, static), 0); l != 4 {
		t.Fatalf("path length %d after the announcement, want 4", l)
	}
	feed.changes([]bgp.Change{withdrawal(static.String())})
	feed.flush()
	if on(f, static.String()) != 0 || f.PathLen(routeOf(t, f, static), 0) != -1 {
		t.Fatal("the static route did not come back")
	}
	if st := feed.stats(); st.Held != [2]int{} {
		t.Fatalf("held %v", st.Held)
	}
}

func routeOf(t *testing.T, f *fib.FIB, p netip.Prefix) fib.RouteID {
	t.Helper()
	e, ok := f.Route(p)
	if !ok {
		t.Fatalf("%v not in the FIB", p)
	}
	return e.Route
}

// Past max_prefixes new prefixes are refused and known ones still update.
func TestFeedMaxPrefixes(t *testing.T) {
	torn := ""
	feed, f := newFeed(t, bgpPeerPlan{MaxPrefixes: [2]int{2, 0}})
	feed.teardown = func(reason string) { torn = reason }
	feed.changes([]bgp.Change{announce("198.18.0.0/24", 1), announce("198.18.1.0/24", 1), announce("198.18.2.0/24", 1), announce("198.18.0.0/24", 5)})
	feed.flush()
	st := feed.stats()
	if st.Held[0] != 2 || !st.Limited[0] || st.Refused[refusedLimit] != 1 || on(f, "198.18.2.0/24") != -1 {
		t.Fatalf("stats %+v", st)
	}
	if f.PathLen(routeOf(t, f, netip.MustParsePrefix("198.18.0.0/24")), 0) != 5 {
		t.Fatal("a known prefix was not updated past the limit")
	}
	if torn != "" {
		t.Fatal("torn down with action stop")
	}
	feed.peer.Teardown = true
	feed.st.Limited[0] = false
	feed.changes([]bgp.Change{announce("198.18.3.0/24", 1)})
	feed.flush()
	if torn == "" {
		t.Fatal("not torn down with action teardown")
	}
}

// A session lost without graceful restart withdraws the backbone's BGP
// routes in one Version: a prefix another backbone holds moves to it in
// that Version, the static route stays.
func TestFeedDownWithdrawsInOneVersion(t *testing.T) {
	shared := netip.MustParsePrefix("192.0.2.0/24")
	feed, f := newFeed(t, bgpPeerPlan{}, shared)
	feed.changes([]bgp.Change{announce("192.0.2.0/24", 1), announce("198.18.0.0/24", 1), announce("2001:db8:1::/48", 1)})
	feed.flush()
	if on(f, "192.0.2.0/24") != 0 {
		t.Fatal("the shorter AS path did not win")
	}
	gen := f.Load().Generation()
	feed.down(false, 0)
	if g := f.Load().Generation(); g != gen+1 {
		t.Fatalf("generation %d → %d: the withdrawal was not one Version", gen, g)
	}
	if on(f, "192.0.2.0/24") != 1 || on(f, "198.18.0.0/24") != -1 || on(f, "2001:db8:1::/48") != -1 || on(f, static.String()) != 0 {
		t.Fatal("after the session went down the FIB is not as it should be")
	}
	if st := feed.stats(); st.Held != [2]int{} {
		t.Fatalf("held %v", st.Held)
	}
}

// Through a graceful restart the routes stay; End-of-RIB of a family
// removes that family's routes the peer did not send again, and the
// restart time removes the rest.
func TestFeedGracefulRestart(t *testing.T) {
	feed, f := newFeed(t, bgpPeerPlan{})
	feed.changes([]bgp.Change{announce("192.0.2.0/24", 1), announce("198.18.0.0/24", 1), announce("2001:db8:1::/48", 1), announce("2001:db8:2::/48", 1)})
	feed.flush()
	feed.down(true, time.Hour)
	if st := feed.stats(); st.Stale != 4 || on(f, "192.0.2.0/24") != 0 {
		t.Fatalf("after the loss: %+v", st)
	}
	feed.changes([]bgp.Change{announce("192.0.2.0/24", 2), announce("2001:db8:1::/48", 2)})
	feed.endOfRIB(bgp.IPv4Unicast)
	if on(f, "192.0.2.0/24") != 0 || on(f, "198.18.0.0/24") != -1 {
		t.Fatal("End-of-RIB for IPv4 did not keep the refreshed route and drop the other")
	}
	if on(f, "2001:db8:2::/48") != 0 || feed.stats().Stale != 1 {
		t.Fatalf("End-of-RIB for IPv4 touched IPv6: stale %d", feed.stats().Stale)
	}
	feed.sweepStale("test", func(netip.Prefix) bool { return true })
	if on(f, "2001:db8:2::/48") != -1 || on(f, "2001:db8:1::/48") != 0 || feed.stats().Stale != 0 || feed.stale != nil {
		t.Fatal("the sweep did not end the restart")
	}
	if st := feed.stats(); st.Held != [2]int{1, 1} {
		t.Fatalf("held %v", st.Held)
	}
}

// Back from a graceful restart, the peer's OPEN says which families'
// forwarding state it preserved: the stale routes of the others go at once
// (RFC 4724 4.2), all of them when it no longer advertises the capability.
func TestFeedUpWithoutForwardingState(t *testing.T) {
	for _, c := range []struct {
		name   string
		gr     bgp.GracefulRestart
		v4, v6 bool // still there
	}{
		{"both preserved", bgp.GracefulRestart{Advertised: true, Restarted: true, Preserved: []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast}}, true, true},
		{"IPv6 preserved", bgp.GracefulRestart{Advertised: true, Restarted: true, Preserved: []bgp.Family{bgp.IPv6Unicast}}, false, true},
		{"none preserved", bgp.GracefulRestart{Advertised: true, Restarted: true}, false, false},
		{"capability gone", bgp.GracefulRestart{}, false, false},
	} {
		feed, f := newFeed(t, bgpPeerPlan{})
		feed.changes([]bgp.Change{announce("192.0.2.0/24", 1), announce("2001:db8:1::/48", 1)})
		feed.flush()
		feed.down(true, time.Hour)
		feed.up(c.gr)
		if (on(f, "192.0.2.0/24") == 0) != c.v4 || (on(f, "2001:db8:1::/48") == 0) != c.v6 {
			t.Errorf("%s: IPv4 route on %d, IPv6 route on %d", c.name, on(f, "192.0.2.0/24"), on(f, "2001:db8:1::/48"))
		}
	}
}

// The restart time running out sweeps what is still stale.
func TestFeedRestartTimeRunsOut(t *testing.T) {
	feed, f := newFeed(t, bgpPeerPlan{})
	feed.changes([]bgp.Change{announce("192.0.2.0/24", 1)})
	feed.flush()
	feed.down(true, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for on(f, "192.0.2.0/24") != -1 {
		if time.Now().After(deadline) {
			t.Fatal("the stale route outlived the restart time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The announcer wants a route for each override, via the gateway of the
// backbone it is on; with all_selected, for every prefix.
func TestAnnouncerWants(t *testing.T) {
	shared := netip.MustParsePrefix("192.0.2.0/24")
	_, f := newFeed(t, bgpPeerPlan{}, shared)
	if err := f.Add(0, shared, 1); err != nil {
		t.Fatal(err)
	}
	v6 := netip.MustParsePrefix("2001:db8::/32")
	for b := range 2 {
		if err := f.Add(fib.BackboneID(b), v6, 1); err != nil {
			t.Fatal(err)
		}
	}
	gw6b := netip.MustParseAddr("2001:db8:ffff::b")
	a := &announcer{fib: f, gateways: [][2]netip.Addr{{gwA, {}}, {gwB, gw6b}}}
	if w := a.wanted(); len(w) != 0 {
		t.Fatalf("nothing is moved, yet it wants %v", w)
	}
	if err := f.Select(shared, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Select(v6, 1); err != nil {
		t.Fatal(err)
	}
	if w := a.wanted(); len(w) != 2 || w[shared] != gwB || w[v6] != gw6b {
		t.Fatalf("wants %v", w)
	}
	a.plan.AllSelected = true
	if w := a.wanted(); len(w) != 3 || w[static] != gwA || w[shared] != gwB {
		t.Fatalf("all selected: %v", w)
	}
	if err := f.ResetSelection(v6); err != nil {
		t.Fatal(err)
	}
	a.plan.AllSelected = false
	if w := a.wanted(); len(w) != 1 {
		// v6 is back on a, which has no IPv6 gateway: nothing to say.
		t.Fatalf("after the reset: %v", w)
	}
}

// A reload's static routes change the backbone's static routes and leave
// what BGP gave alone.
func TestApplyStatics(t *testing.T) {
	feed, f := newFeed(t, bgpPeerPlan{})
	learned := netip.MustParsePrefix("192.0.2.0/24")
	feed.changes([]bgp.Change{announce(learned.String(), 2)})
	feed.flush()
	newStatic := netip.MustParsePrefix("198.18.0.0/24")
	a, w := applyStatics(f, 0, map[netip.Prefix]bool{static: true}, map[netip.Prefix]bool{newStatic: true, learned: true})
	if a != 1 || w != 1 {
		t.Fatalf("added %d, withdrawn %d; want 1, 1", a, w)
	}
	if on(f, static.String()) != -1 || on(f, newStatic.String()) != 0 {
		t.Fatal("the static routes did not change")
	}
	if f.PathLen(routeOf(t, f, learned), 0) != 2 {
		t.Fatal("the BGP route became static")
	}
}

// With a session per family, one going down takes only its family's
// routes.
func TestFeedDownTakesOnlyItsFamily(t *testing.T) {
	feed, f := newFeed(t, bgpPeerPlan{})
	feed.changes([]bgp.Change{announce("192.0.2.0/24", 1), announce("2001:db8:1::/48", 1)})
	feed.flush()
	feed.owns = [2]bool{true, false} // the IPv4 session's feed
	feed.down(false, 0)
	if on(f, "192.0.2.0/24") != -1 || on(f, "2001:db8:1::/48") != 0 {
		t.Fatal("the IPv4 session's loss did not take exactly the IPv4 routes")
	}
}
