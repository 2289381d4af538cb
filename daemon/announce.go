package daemon

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/routes/bgp"
)

// announceEvery is how often the announcer compares the FIB's choices with
// what it told the routers: well inside the second in which a router is to
// follow a move, and a few milliseconds of work for 10,000 overrides.
const announceEvery = 200 * time.Millisecond

// announcer tells the network's own routers pnapd's choices: for every
// prefix the optimizer or a pin moved off its default backbone (or every
// selected prefix, with all_selected), a route with the chosen backbone's
// gateway as next hop; withdrawn when the choice ends. The session re-sends
// what it holds after a new session comes up.
type announcer struct {
	fib      *fib.FIB
	plan     announcePlan
	session  *bgp.Session
	gateways [][2]netip.Addr // by backbone: IPv4 and IPv6 gateway
	told     map[netip.Prefix]netip.Addr
	log      *slog.Logger
	lastErr  string // logged once, not every announceEvery
}

// run compares and announces every announceEvery until done is closed.
func (a *announcer) run(done <-chan struct{}) {
	t := time.NewTicker(announceEvery)
	defer t.Stop()
	for {
		a.sync()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// sync announces what changed since the last call and withdraws what
// ended.
func (a *announcer) sync() {
	want := a.wanted()
	var add []bgp.Route
	var gone []netip.Prefix
	for p, nh := range want {
		if a.told[p] != nh {
			add = append(add, bgp.Route{Prefix: p, NextHop: nh, LocalPref: a.plan.LocalPref, Communities: a.plan.Communities})
		}
	}
	for p := range a.told {
		if _, ok := want[p]; !ok {
			gone = append(gone, p)
		}
	}
	if len(gone) > 0 {
		a.session.Withdraw(gone)
	}
	if len(add) > 0 {
		if err := a.session.Announce(add); err != nil {
			// Nothing was changed: try again next time, and say why once.
			if err.Error() != a.lastErr {
				a.log.Error("announce", "session", a.plan.Name, "error", err)
				a.lastErr = err.Error()
			}
			for _, r := range add {
				delete(want, r.Prefix)
			}
		}
	}
	a.told = want
}

// wanted is every route to announce now, with its next hop: the gateway,
// of the prefix's family, of the backbone it is on. A backbone without a
// gateway of that family has nothing to announce for it.
func (a *announcer) wanted() map[netip.Prefix]netip.Addr {
	out := make(map[netip.Prefix]netip.Addr, len(a.told))
	each := a.fib.Overrides
	if a.plan.AllSelected {
		each = a.fib.EachSelected
	}
	each(func(p netip.Prefix, b fib.BackboneID) bool {
		if int(b) >= len(a.gateways) {
			return true
		}
		nh := a.gateways[b][familyOf(p)]
		if nh.IsValid() {
			out[p] = nh
		}
		return true
	})
	return out
}
