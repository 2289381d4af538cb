package optimizer

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// measure scores backbone b for one prefix. Lost probes count toward
// MinSamples: a backbone that answers nothing for a prefix has no RTT but
// plenty of evidence, and its 100 % loss penalty must be able to move the
// prefix.
func (o *Optimizer) measure(ps *probes.PrefixStats, b fib.BackboneID) Choice {
	c := Choice{Backbone: b, Name: o.bb[b].name}
	st, ok := ps.Backbones[b]
	if !ok {
		return c
	}
	rttN := st.RTTSamples()
	c.Samples, c.Loss = rttN+st.Lost, o.pairLoss(st, b)
	if rttN > 0 {
		c.RTT = st.P50
		if o.cfg.useMin {
			c.RTT = st.Min
		}
		var shifted bool
		if c.RTT, shifted = o.levelShift(st, c.RTT); shifted && o.bb[b].lossSent.Before(st.Recent.Since) {
			// A new path, which has lost nothing since it showed: the
			// window's losses were the old one's (a prefix waited out a
			// window to return to a backbone back from 150 ms and 5 %
			// loss). A loss from now on counts again at once.
			c.Loss = 0
		}
	}
	if c.Samples < o.cfg.minSamples {
		return c
	}
	c.Measured = true
	c.Score = ms(c.RTT) + o.cfg.lossPenalty*c.Loss*100 + o.bb[b].cost
	return c
}

// levelShift is the RTT to score a backbone by: rtt, the window's figure,
// unless the latest samples all lie beyond it by twice what a move must
// win, which is a path that changed rather than noise (jitter scatters the
// samples to both sides). Then it is their median, and it reports the
// shift. The window's median
// follows a step only once half its samples are new, a second or more
// after the change; four fresh samples come within a few hundred ms.
func (o *Optimizer) levelShift(st probes.Stats, rtt time.Duration) (time.Duration, bool) {
	r := st.Recent
	if r.N < probes.RecentSamples {
		return rtt, false
	}
	thr := o.shiftThreshold(rtt)
	if ms(r.Lo)-ms(rtt) > thr || ms(rtt)-ms(r.Hi) > thr {
		return r.P50, true
	}
	return rtt, false
}

// shiftThreshold is how far beyond a window's rtt samples must lie to
// show a path that changed: twice what a move must win.
func (o *Optimizer) shiftThreshold(rtt time.Duration) float64 {
	return 2 * max(o.cfg.minImpMs, o.cfg.minImpFrac*ms(rtt))
}

// rising reports whether a holder's latest samples are half way through a
// rise: their median beyond the window's rtt by a shift's threshold, the
// lowest not yet. No prefix moves onto it until the rise settles and
// levelShift scores its new level. A rise that shows on the current
// backbone and is starting on the others is common to every path (the
// way back, the customer's side): in the asymmetric scenario, prefixes
// moved to a backbone whose window still held its old level, and came
// back a hold-down later.
func (o *Optimizer) rising(st probes.Stats, rtt time.Duration) bool {
	r := st.Recent
	if r.N < probes.RecentSamples {
		return false
	}
	thr := o.shiftThreshold(rtt)
	return ms(r.P50)-ms(rtt) > thr && ms(r.Lo)-ms(rtt) <= thr
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// clearWin is the hysteresis: a move must win by MinImprovementMs and by
// MinImprovementPct of the current score, so two backbones within noise of
// each other never trade a prefix back and forth.
func (o *Optimizer) clearWin(win, curScore float64) bool {
	return win > 0 && win >= o.cfg.minImpMs && win >= o.cfg.minImpFrac*curScore
}

type fit uint8

const (
	fitOK fit = iota
	fitCommit
	fitCapacity
)

// fits checks that bps more traffic on b keeps it under its capacity
// (always) and under its commit (unless the move wins at least
// CommitWinMs). Load is the busiest sample of the last recentSpan, plus
// what this Step already moved. Not the p95: a sample at or under the
// commit cannot raise a p95 that is over it, and one over it raises it
// whatever the p95 was, so the p95 only delays a backbone's refilling
// after it shed load, by as long as its window (minutes) remembers the
// overshoot (the commit scenario in bench/steerlab kept every prefix off
// the fastest backbone for the rest of its run). Not the last sample
// alone: one quiet Step would let moves pile on. Under a commit, moves
// stop commitHeadroom short of it, while shedding (overCommit) starts only
// above it: without that band, rate noise around the commit moved prefixes
// on and off it every few seconds (106 moves in a minute in the commit
// scenario).
func (o *Optimizer) fits(b fib.BackboneID, bps, win float64) fit {
	bb := &o.bb[b]
	load := bb.recent + bb.delta + bps
	if bb.capacityBps > 0 && load > bb.capacityBps {
		return fitCapacity
	}
	if bb.commitBps > 0 && load > bb.commitBps*(1-commitHeadroom) && win < o.cfg.commitWinMs {
		return fitCommit
	}
	return fitOK
}

// commitHeadroom is the share of a commit that moves onto its backbone
// leave free.
const commitHeadroom = 0.1

func (o *Optimizer) countBlocked(f fit) {
	switch f {
	case fitCommit:
		o.pending.BlockedCommit++
	case fitCapacity:
		o.pending.BlockedCapacity++
	}
}

// overCommit: b's p95 is above its commit and it still carries more than
// the commit after this Step's moves. Both, so that shedding stops as soon
// as the current rate is back under, not minutes later when the p95 is.
func (o *Optimizer) overCommit(b fib.BackboneID) bool {
	bb := &o.bb[b]
	return bb.commitBps > 0 && bb.p95 > bb.commitBps && bb.last+bb.delta > bb.commitBps
}

func (o *Optimizer) shift(from, to fib.BackboneID, bps float64) {
	o.bb[from].delta -= bps
	o.bb[to].delta += bps
}

// move is one change through the fib: SelectRoute for an override,
// ResetSelection for a return to the default (so the fib's override flag,
// and our count, stay right). It reports whether the swap happened.
func (o *Optimizer) move(now time.Time, p netip.Prefix, e fib.Entry, def fib.BackboneID, from, to Choice, r Reason) bool {
	var err error
	if to.Backbone == def {
		err = o.fib.ResetSelection(p)
	} else {
		err = o.fib.SelectRoute(e.Route, to.Backbone)
	}
	switch {
	case err == nil:
	case errors.Is(err, fib.ErrNoRoute):
		o.pending.Gone++
		return false
	case errors.Is(err, fib.ErrNotHeld):
		o.pending.NotHeld++
		return false
	default:
		o.pending.SwapErrors++
		return false
	}
	st := o.tracked[p]
	o.setOverride(&st, to.Backbone != def)
	st.lastMove, st.seen = now.UnixNano(), o.gen
	if from.Measured || to.Measured {
		st.measured = st.lastMove
	}
	st.evacuated, st.evacFrom = r == BackboneFailed, from.Backbone
	o.tracked[p] = st
	o.record(Event{Time: now, Prefix: p, From: from, To: to, Reason: r})
	return true
}

func (o *Optimizer) setOverride(st *pstate, v bool) {
	if st.override != v {
		st.override = v
		if v {
			o.overrides.Add(1)
		} else {
			o.overrides.Add(-1)
		}
	}
}

// reason attributes a win to its largest component.
func (o *Optimizer) reason(from, to Choice) Reason {
	dRTT := ms(from.RTT) - ms(to.RTT)
	dLoss := o.cfg.lossPenalty * (from.Loss - to.Loss) * 100
	dCost := o.bb[from.Backbone].cost - o.bb[to.Backbone].cost
	switch {
	case dLoss > dRTT && dLoss >= dCost:
		return LowerLoss
	case dCost > dRTT && dCost > dLoss:
		return LowerCost
	}
	return BetterRTT
}

// proposal is a move that would create a new override; it waits for
// resolveCap, its traffic already shifted so later checks in the Step see it.
type proposal struct {
	p        netip.Prefix
	e        fib.Entry
	def      fib.BackboneID
	from, to Choice
	bps, win float64
	reason   Reason
}

// evictable is an override that could go back to its default to make room:
// keep is what it would lose, in ms of score.
type evictable struct {
	p        netip.Prefix
	e        fib.Entry
	cur, def Choice
	bps      float64
	keep     float64
}

// decision is one measured prefix being decided.
type decision struct {
	p       netip.Prefix
	e       fib.Entry // e.Backbone is where it is
	def     fib.BackboneID
	st      pstate // valid when tracked
	tracked bool
	// The scores of where it is and of its default, and the measured
	// holders that have not failed, best first, less any other than where
	// it is that is rising (Optimizer.cands).
	curC, defC Choice
	cands      []Choice
	bps        float64 // its traffic
}

// decide handles one measured prefix: a clear win moves it (new overrides
// wait for resolveCap), otherwise a prefix on a backbone above its commit
// is shed to one not much worse. The way back to the default is a clear
// win like any other: returning whenever the default merely scored no
// worse would undo every noise-driven move one hold-down later.
func (o *Optimizer) decide(now time.Time, ps *probes.PrefixStats) {
	var d decision
	if !o.admit(now, ps.Prefix, &d) || o.returnUnmeasured(now, ps, &d) || !o.score(now, ps, &d) {
		return
	}
	if c, win, ok := o.clearWinner(&d); ok {
		o.moveOrPropose(now, &d, c, win, o.reason(d.curC, c))
		return
	}
	if c, ok := o.shedTarget(&d); ok {
		o.moveOrPropose(now, &d, c, d.curC.Score-c.Score, CommitExceeded)
		return
	}
	if d.e.Backbone != d.def && d.defC.Measured {
		o.evictable = append(o.evictable, evictable{p: d.p, e: d.e, cur: d.curC, def: d.defC, bps: d.bps, keep: d.defC.Score - d.curC.Score})
	}
}

// returnUnmeasured moves d's prefix back to the backbone it was evacuated
// from once that has recovered, if nothing measures the prefix there, and
// reports whether it did. Scoring cannot: passive measurement sees a
// backbone only through the traffic it carries, so an evacuated prefix
// would stay on the evacuation's target for good however much better the
// backbone it left (the passive blackout scenario spent its last 20 s on a
// backbone 10 ms slower). Going back is the measurement: if the backbone
// is still dead its traffic goes unanswered again, and it fails again, for
// longer each time (strike). Active probing measures it, and scoring
// decides.
func (o *Optimizer) returnUnmeasured(now time.Time, ps *probes.PrefixStats, d *decision) bool {
	back := d.st.evacFrom
	if !d.tracked || !d.st.evacuated || d.e.Backbone == back || !d.e.Holders.Has(back) || o.bb[back].failed(now) ||
		o.measure(ps, back).Measured {
		return false
	}
	bps := o.bps(ps)
	if f := o.fits(back, bps, 0); f != fitOK {
		o.countBlocked(f)
		return false
	}
	from := o.measure(ps, d.e.Backbone)
	to := Choice{Backbone: back, Name: o.bb[back].name}
	if !o.move(now, d.p, d.e, d.def, from, to, Returned) {
		return false
	}
	o.shift(d.e.Backbone, back, bps)
	return true
}

// admit fills in d for prefix p and reports whether p is the optimizer's to
// decide now: not pinned, still routed, with a choice of holders, not
// moved already this Step, and neither stranded on a failed backbone nor
// in hold-down. It brings p's remembered state up to date on the way.
func (o *Optimizer) admit(now time.Time, p netip.Prefix, d *decision) bool {
	if o.pins.Has(p) {
		return false
	}
	e, ok := o.fib.Route(p)
	if !ok {
		o.pending.Gone++
		return false
	}
	st, tracked := o.tracked[p]
	if e.Holders.Len() < 2 && !tracked {
		return false // nothing to choose from
	}
	cur := e.Backbone
	def := o.fib.DefaultAmong(e.Route, e.Holders)
	if cur != def && !tracked {
		// Overridden by someone else (the API) or before a restart: it
		// takes a slot like ours.
		st, tracked = pstate{}, true
	}
	if tracked {
		if st.seen == o.gen {
			return false // moved already this Step (evacuated)
		}
		o.setOverride(&st, cur != def)
		st.seen = o.gen
	}
	// A prefix still on a failed backbone is stranded: evacuate found
	// nowhere to go.
	if o.bb[cur].failed(now) || tracked && st.lastMove != 0 && now.UnixNano()-st.lastMove < int64(o.cfg.holdDown) {
		if tracked {
			o.tracked[p] = st
		}
		return false
	}
	*d = decision{p: p, e: e, def: def, st: st, tracked: tracked}
	return true
}

// score measures d's holders that have not failed and sorts the measured
// ones best first, leaving out others that are rising. It reports whether
// where the prefix is has a score: without one there is no clear win to
// see, and only failure moves it.
func (o *Optimizer) score(now time.Time, ps *probes.PrefixStats, d *decision) bool {
	cur := d.e.Backbone
	d.cands = o.cands[:0]
	for b := range o.bb {
		id := fib.BackboneID(b)
		if !d.e.Holders.Has(id) || o.bb[b].failed(now) {
			continue
		}
		c := o.measure(ps, id)
		switch id {
		case cur:
			d.curC = c
		case d.def:
			d.defC = c
		}
		if c.Measured && (id == cur || !o.rising(ps.Backbones[id], c.RTT)) {
			d.cands = append(d.cands, c)
		}
	}
	if d.tracked {
		if d.curC.Measured {
			d.st.measured = now.UnixNano()
		}
		o.tracked[d.p] = d.st // before any move, which updates it
	}
	if !d.curC.Measured {
		return false
	}
	// Best first; on a tie the current backbone, then the default, so that
	// equal scores never move anything.
	rank := func(c Choice) int {
		switch c.Backbone {
		case cur:
			return 0
		case d.def:
			return 1
		}
		return 2
	}
	slices.SortFunc(d.cands, func(a, b Choice) int {
		if c := cmp.Compare(a.Score, b.Score); c != 0 {
			return c
		}
		return cmp.Or(rank(a)-rank(b), int(a.Backbone)-int(b.Backbone))
	})
	d.bps = o.bps(ps)
	return true
}

// bps is ps's traffic in bits/s: from its packets' lengths, or without
// them at a mean packet size.
func (o *Optimizer) bps(ps *probes.PrefixStats) float64 {
	if ps.TrafficBps != 0 {
		return ps.TrafficBps
	}
	return ps.Traffic * o.cfg.bitsPerPacket
}

// clearWinner returns the best holder that wins clearly over where d's
// prefix is and fits its limits, and its win, counting the better ones
// that do not fit.
func (o *Optimizer) clearWinner(d *decision) (Choice, float64, bool) {
	for _, c := range d.cands {
		win := d.curC.Score - c.Score
		if c.Backbone == d.e.Backbone || !o.clearWin(win, d.curC.Score) {
			break // sorted: nothing further wins more
		}
		if f := o.fits(c.Backbone, d.bps, win); f != fitOK {
			o.countBlocked(f)
			continue
		}
		if d.bps <= 0 && o.bb[c.Backbone].commitBps > 0 && win < o.cfg.commitWinMs {
			// Traffic not measured yet (the first second of a prefix): it
			// may be anything, and a commit would pay for the guess (the
			// commit scenario moved 5 Mbit/s onto a 5 Mbit/s commit at
			// start, then shed it again).
			o.countBlocked(fitCommit)
			continue
		}
		return c, win, true
	}
	return Choice{}, 0, false
}

// shedTarget returns where to shed d's prefix when its backbone runs above
// its commit: the best other holder less than CommitWinMs worse that
// stays strictly under its own commit, so that shedding does not just move
// the overage elsewhere.
func (o *Optimizer) shedTarget(d *decision) (Choice, bool) {
	if !o.overCommit(d.e.Backbone) || d.bps <= 0 {
		return Choice{}, false
	}
	for _, c := range d.cands {
		if c.Backbone == d.e.Backbone {
			continue
		}
		if c.Score-d.curC.Score >= o.cfg.commitWinMs {
			break
		}
		if o.fits(c.Backbone, d.bps, 0) == fitOK {
			return c, true
		}
	}
	return Choice{}, false
}

// moveOrPropose takes d's prefix to c. A new override (off the default)
// waits for resolveCap, which applies the Step's largest wins within
// MaxOverrides; its traffic is shifted now so that later checks in the
// Step see it. Any other move (back to the default, or from one override
// to another) takes no new slot and is made at once.
func (o *Optimizer) moveOrPropose(now time.Time, d *decision, c Choice, win float64, r Reason) {
	cur := d.e.Backbone
	if cur == d.def && c.Backbone != d.def {
		o.shift(cur, c.Backbone, d.bps)
		o.proposals = append(o.proposals, proposal{p: d.p, e: d.e, def: d.def, from: d.curC, to: c, bps: d.bps, win: win, reason: r})
		return
	}
	if o.move(now, d.p, d.e, d.def, d.curC, c, r) {
		o.shift(cur, c.Backbone, d.bps)
	}
}

// resolveCap applies the Step's new overrides, largest win first, while
// fewer than MaxOverrides prefixes are overridden. Past the cap a new
// override may still displace the existing one that wins least, when it
// wins at least MinImprovementMs more: so the slots end up with the
// largest wins without trading near-equal ones back and forth. Moves that
// return a prefix to its default or replace an override are never capped
// (decide makes them at once).
func (o *Optimizer) resolveCap(now time.Time) {
	if len(o.proposals) == 0 {
		return
	}
	// Largest win first, smallest kept win first; by prefix on a tie, so
	// that runs repeat.
	slices.SortFunc(o.proposals, func(a, b proposal) int {
		return cmp.Or(cmp.Compare(b.win, a.win), a.p.Addr().Compare(b.p.Addr()))
	})
	slices.SortFunc(o.evictable, func(a, b evictable) int {
		return cmp.Or(cmp.Compare(a.keep, b.keep), a.p.Addr().Compare(b.p.Addr()))
	})
	ev := o.evictable
	for _, pr := range o.proposals {
		if o.Overrides() >= o.cfg.maxOverrides {
			made := false
			for len(ev) > 0 && pr.win >= ev[0].keep+o.cfg.minImpMs {
				x := ev[0]
				ev = ev[1:]
				if o.fits(x.def.Backbone, x.bps, 0) != fitOK {
					continue
				}
				if o.move(now, x.p, x.e, x.def.Backbone, x.cur, x.def, Displaced) {
					o.shift(x.cur.Backbone, x.def.Backbone, x.bps)
					made = true
					break
				}
			}
			if !made {
				o.shift(pr.to.Backbone, pr.from.Backbone, pr.bps) // undo the reservation
				o.pending.BlockedCap++
				continue
			}
		}
		if !o.move(now, pr.p, pr.e, pr.def, pr.from, pr.to, pr.reason) {
			o.shift(pr.to.Backbone, pr.from.Backbone, pr.bps)
		}
	}
}

// reconcile revisits the prefixes the optimizer remembers but did not see
// this Step: their routes may have changed under it, their evacuation may
// be over, their override may have gone stale. It also forgets prefixes
// that no longer need remembering.
func (o *Optimizer) reconcile(now time.Time) {
	nowNs := now.UnixNano()
	for p, st := range o.tracked {
		if o.pins.Has(p) {
			delete(o.tracked, p) // the operator's now; counted again after Unpin
			continue
		}
		held := st.lastMove != 0 && nowNs-st.lastMove < int64(o.cfg.holdDown)
		if st.seen == o.gen {
			if !st.override && !held {
				delete(o.tracked, p)
			}
			continue
		}
		if st.evacuated && o.bb[st.evacFrom].failed(now) {
			continue // nothing to do until it recovers; skip the fib lookup
		}
		e, ok := o.fib.Route(p)
		if !ok {
			o.setOverride(&st, false)
			delete(o.tracked, p)
			continue
		}
		def := o.fib.DefaultAmong(e.Route, e.Holders)
		o.setOverride(&st, e.Backbone != def)
		st.seen = o.gen
		if !st.override {
			if held {
				o.tracked[p] = st
			} else {
				delete(o.tracked, p)
			}
			continue
		}
		stale := st.measured != 0 && nowNs-st.measured >= int64(o.opt.StaleAfter) ||
			st.measured == 0 && st.lastMove != 0 && nowNs-st.lastMove >= int64(o.opt.StaleAfter)
		if held || o.bb[def].failed(now) || !st.evacuated && !stale {
			o.tracked[p] = st
			continue
		}
		// Unmeasured: the default order is the only score there is.
		from := Choice{Backbone: e.Backbone, Name: o.bb[e.Backbone].name}
		to := Choice{Backbone: def, Name: o.bb[def].name}
		if f := o.fits(def, 0, 0); f != fitOK {
			o.countBlocked(f)
			o.tracked[p] = st
			continue
		}
		if !o.move(now, p, e, def, from, to, ResetToDefault) {
			o.tracked[p] = st
		}
	}
}
