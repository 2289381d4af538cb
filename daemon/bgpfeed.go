package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/routes/bgp"
)

// A feed applies its changes to the FIB as one Version per flushRoutes
// changes or per flushEvery, whichever comes first: a full table arrives
// as thousands of Versions rather than a million, and a lone change waits
// at most flushEvery.
const (
	flushRoutes = 4096
	flushEvery  = 5 * time.Millisecond
)

// Why a feed refused a route; the counters and metrics are by these.
const (
	refusedPolicy  = "policy"
	refusedNextHop = "next_hop"
	refusedLimit   = "max_prefixes"
	refusedFIB     = "fib" // the FIB refused it (full); logged once
)

// bgpFeed applies one backbone's BGP routes to the FIB: filtered by the
// import policy and the next-hop rule, bounded by max_prefixes, withdrawn
// in one Version when the session goes down, or kept stale through the
// peer's graceful restart and swept after. It keeps no route of its own:
// the FIB is the RIB. Which of a backbone's routes came from BGP the FIB
// tells by path length: BGP always gives one, static routes never do.
type bgpFeed struct {
	fib    *fib.FIB
	b      fib.BackboneID
	peer   bgpPeerPlan
	onLink []netip.Prefix // where a next hop may be: the gateways and the backbone interface's subnets
	static map[netip.Prefix]bool
	// owns says which families' BGP routes of the backbone are this feed's
	// (IPv4, IPv6): both, or its neighbor's when the backbone has a
	// session per family.
	owns [2]bool
	log  *slog.Logger
	// teardown ends the session when max_prefixes is exceeded and the
	// action is "teardown".
	teardown func(reason string)

	mu      sync.Mutex
	pending []bgp.Change
	st      feedStats
	// stale marks, by RouteID, the routes kept through a graceful restart
	// and not announced again yet; nil when no restart is under way.
	stale      []uint64
	staleTimer *time.Timer
}

// feedStats are a feed's counters, by family (0 IPv4, 1 IPv6).
type feedStats struct {
	Received [2]uint64
	Accepted [2]uint64
	Refused  map[string]uint64
	Held     [2]int
	Limited  [2]bool // max_prefixes reached
	Stale    int     // routes kept through a graceful restart, not refreshed yet
}

func familyOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// changes is the session's OnChanges: it queues and, past flushRoutes,
// applies them, so a fast peer is held back by TCP rather than by memory.
func (f *bgpFeed) changes(ch []bgp.Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range ch {
		f.pending = append(f.pending, bgp.Change{Prefix: c.Prefix, Withdraw: c.Withdraw, PathLen: c.PathLen, NextHop: c.NextHop})
	}
	if len(f.pending) >= flushRoutes {
		f.flushLocked()
	}
}

// run flushes what is pending every flushEvery until done is closed.
func (f *bgpFeed) run(done <-chan struct{}) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			f.flush()
			return
		case <-t.C:
			f.flush()
		}
	}
}

func (f *bgpFeed) flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flushLocked()
}

func (f *bgpFeed) flushLocked() {
	if len(f.pending) == 0 {
		return
	}
	f.fib.Update(func(tx *fib.Txn) error {
		for _, c := range f.pending {
			f.apply(tx, c)
		}
		return nil
	})
	clear(f.pending)
	f.pending = f.pending[:0]
}

// apply makes one change. An announcement that is refused withdraws what
// the peer announced for the prefix before (RFC 4271 9: it replaces it).
func (f *bgpFeed) apply(tx *fib.Txn, c bgp.Change) {
	fam := familyOf(c.Prefix)
	f.st.Received[fam]++
	if c.Withdraw {
		f.withdraw(tx, c.Prefix)
		return
	}
	if reason := f.refuse(c); reason != "" {
		f.count(reason)
		f.withdraw(tx, c.Prefix)
		return
	}
	_, pl, held := tx.Held(f.b, c.Prefix)
	isNew := !held || pl < 0
	if isNew && f.peer.MaxPrefixes[fam] > 0 && f.st.Held[fam] >= f.peer.MaxPrefixes[fam] {
		f.limit(fam)
		f.count(refusedLimit)
		return
	}
	if err := tx.Add(f.b, c.Prefix, max(c.PathLen, 0)); err != nil {
		if f.st.Refused[refusedFIB] == 0 {
			f.log.Error("BGP route not installed", "backbone", f.peer.Backbone, "neighbor", f.peer.Neighbor, "prefix", c.Prefix, "error", err)
		}
		f.count(refusedFIB)
		return
	}
	f.st.Accepted[fam]++
	if isNew {
		f.st.Held[fam]++
	}
	if f.stale != nil {
		if r, _, ok := tx.Held(f.b, c.Prefix); ok {
			f.unstale(r)
		}
	}
}

// refuse says why the import rules turn c away, or "".
func (f *bgpFeed) refuse(c bgp.Change) string {
	if ok, _ := f.peer.Policy.accept(c.Prefix); !ok {
		return refusedPolicy
	}
	for _, p := range f.onLink {
		if p.Contains(c.NextHop) {
			return ""
		}
	}
	// A route whose next hop is not the backbone's router (or on its
	// link) would be sent to the gateway anyway, past what the peer meant.
	return refusedNextHop
}

// withdraw removes the BGP route of p, falling back to the backbone's
// static route for p where it has one.
func (f *bgpFeed) withdraw(tx *fib.Txn, p netip.Prefix) {
	r, pl, held := tx.Held(f.b, p)
	if !held || pl < 0 {
		return // not BGP's
	}
	if f.static[p] {
		tx.Add(f.b, p, -1)
	} else {
		tx.Withdraw(f.b, p)
	}
	f.st.Held[familyOf(p)]--
	if f.stale != nil {
		f.unstale(r)
	}
}

func (f *bgpFeed) count(reason string) {
	if f.st.Refused == nil {
		f.st.Refused = map[string]uint64{}
	}
	f.st.Refused[reason]++
}

// limit acts on max_prefixes being reached for family fam, once.
func (f *bgpFeed) limit(fam int) {
	if f.st.Limited[fam] {
		return
	}
	f.st.Limited[fam] = true
	fams := [2]string{"ipv4", "ipv6"}
	f.log.Warn("BGP max_prefixes reached", "backbone", f.peer.Backbone, "neighbor", f.peer.Neighbor, "family", fams[fam], "max_prefixes", f.peer.MaxPrefixes[fam], "action", map[bool]string{true: "teardown", false: "stop accepting"}[f.peer.Teardown])
	if f.peer.Teardown && f.teardown != nil {
		f.teardown(fmt.Sprintf("max_prefixes %d reached for %s", f.peer.MaxPrefixes[fam], fams[fam]))
	}
}

// down handles the session leaving Established. Without a graceful
// restart every BGP route of the backbone is withdrawn in one Version:
// prefixes another backbone holds move to it in that Version, the rest
// fall back to their covering route. With one, the routes stay, marked
// stale, until the peer sends them again and End-of-RIB, or until its
// restart time runs out.
func (f *bgpFeed) down(graceful bool, restart time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.pending)
	f.pending = f.pending[:0]
	f.st.Limited = [2]bool{}
	if !graceful || restart <= 0 || !f.peer.GracefulRestart {
		f.sweepLocked(func(fib.RouteID, netip.Prefix) bool { return true })
		f.stale, f.st.Stale = nil, 0
		if f.staleTimer != nil {
			f.staleTimer.Stop()
			f.staleTimer = nil
		}
		return
	}
	if f.stale != nil {
		return // still restarting: the first restart's timer stands
	}
	f.stale = []uint64{}
	f.fib.Update(func(tx *fib.Txn) error {
		tx.Routes(f.b, func(r fib.RouteID, p netip.Prefix, pl int) bool {
			if pl >= 0 && f.owns[familyOf(p)] {
				f.markStale(r)
			}
			return true
		})
		return nil
	})
	f.log.Info("BGP graceful restart: routes kept as stale", "backbone", f.peer.Backbone, "neighbor", f.peer.Neighbor, "routes", f.st.Stale, "restart_time", restart)
	f.staleTimer = time.AfterFunc(restart, func() {
		f.sweepStale("restart time ran out", func(netip.Prefix) bool { return true })
	})
}

// up handles the session coming back up. After a graceful restart, the
// stale routes of a family whose forwarding state the peer's new OPEN
// does not say it preserved (F bit), or of every family when it no longer
// advertises graceful restart, are withdrawn at once (RFC 4724 4.2): the
// router lost them, and traffic sent to it for them is lost. The others
// wait for End-of-RIB.
func (f *bgpFeed) up(gr bgp.GracefulRestart) {
	var keep [2]bool
	if gr.Advertised {
		for _, fam := range gr.Preserved {
			if fam == bgp.IPv6Unicast {
				keep[1] = true
			} else {
				keep[0] = true
			}
		}
	}
	if keep[0] && keep[1] {
		return
	}
	f.sweepStale("forwarding state not preserved", func(p netip.Prefix) bool { return !keep[familyOf(p)] })
}

// endOfRIB is the session's OnEndOfRIB: after a graceful restart, what the
// peer did not send again of that family is gone.
func (f *bgpFeed) endOfRIB(fam bgp.Family) {
	f.flush()
	v4 := fam == bgp.IPv4Unicast
	f.sweepStale("End-of-RIB", func(p netip.Prefix) bool { return p.Addr().Is4() == v4 })
}

// sweepStale withdraws the stale routes of the prefixes in scope; the
// graceful restart is over when none is left.
func (f *bgpFeed) sweepStale(why string, scope func(netip.Prefix) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stale == nil {
		return
	}
	n := f.st.Stale
	f.sweepLocked(func(r fib.RouteID, p netip.Prefix) bool { return f.isStale(r) && scope(p) })
	f.log.Info("BGP graceful restart: stale routes withdrawn", "backbone", f.peer.Backbone, "neighbor", f.peer.Neighbor, "why", why, "withdrawn", n-f.st.Stale, "still_stale", f.st.Stale)
	if f.st.Stale > 0 {
		return
	}
	f.stale = nil
	if f.staleTimer != nil {
		f.staleTimer.Stop()
		f.staleTimer = nil
	}
}

// sweepLocked withdraws, in one Version, the feed's BGP routes of the
// backbone that which selects.
func (f *bgpFeed) sweepLocked(which func(fib.RouteID, netip.Prefix) bool) {
	f.fib.Update(func(tx *fib.Txn) error {
		tx.Routes(f.b, func(r fib.RouteID, p netip.Prefix, pl int) bool {
			if pl >= 0 && f.owns[familyOf(p)] && which(r, p) {
				f.withdraw(tx, p)
			}
			return true
		})
		return nil
	})
}

func (f *bgpFeed) markStale(r fib.RouteID) {
	w := int(r) / 64
	for len(f.stale) <= w {
		f.stale = append(f.stale, 0)
	}
	if f.stale[w]&(1<<(r%64)) == 0 {
		f.stale[w] |= 1 << (r % 64)
		f.st.Stale++
	}
}

func (f *bgpFeed) unstale(r fib.RouteID) {
	if w := int(r) / 64; w < len(f.stale) && f.stale[w]&(1<<(r%64)) != 0 {
		f.stale[w] &^= 1 << (r % 64)
		f.st.Stale--
	}
}

func (f *bgpFeed) isStale(r fib.RouteID) bool {
	w := int(r) / 64
	return w < len(f.stale) && f.stale[w]&(1<<(r%64)) != 0
}

// stats copies the counters.
func (f *bgpFeed) stats() feedStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st
	st.Refused = make(map[string]uint64, len(f.st.Refused))
	for k, v := range f.st.Refused {
		st.Refused[k] = v
	}
	return st
}
