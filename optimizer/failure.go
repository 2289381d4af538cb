package optimizer

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// detectFailures marks backbones failed from the backbone totals: loss of
// at least FailLoss over at least FailMinProbes probes in the store's
// window, the customer's traffic on it going unanswered
// (BackboneStats.SilentSince, which passive samples alone give), or a
// whole lost round (RoundSource), unless the last round was answered
// whole. A failed backbone stays excluded for its hold (see strike) after
// the last Step that saw it failing.
func (o *Optimizer) detectFailures(now time.Time, snap *probes.Snapshot, rounds map[fib.BackboneID]Round) {
	for i := range o.bb {
		b := &o.bb[i]
		id := fib.BackboneID(i)
		failing := false
		bs, ok := snap.Backbones[id]
		if ok && bs.ProbesSent >= o.opt.FailMinProbes {
			loss := max(bs.Loss, float64(bs.ProbesLost)/float64(bs.ProbesSent))
			failing = loss >= o.opt.FailLoss
		}
		failing = failing || !bs.SilentSince.IsZero()
		if r, ok := rounds[id]; ok && r.Sent >= o.opt.FailRoundMin {
			switch r.Lost {
			case r.Sent:
				failing = true
			case 0:
				// A whole round answered: the window's loss is the past,
				// which would keep a recovered backbone failing for up to a
				// window more.
				failing = false
			}
		}
		if failing && !b.failed(now) {
			o.pending.Failures++
			b.strike(now, o.cfg.failureHold)
		}
		b.failing = failing
		if failing {
			b.failedUntil = now.Add(b.hold(o.cfg.failureHold))
		}
		o.logFailure(now, b, snap.Backbones[id], rounds[id])
	}
}

// A backbone's failures are damped as BGP damps flapping routes: the
// first failure in a while keeps it out no longer than it fails (a whole
// round answered ends it), a second soon after for half of FailureHold, a
// third and more for all of it. A backbone that failed once and came back
// clean is worth returning to at once (a blackout scenario lost a quarter
// of its run waiting out a fixed 10 s hold, and 2.5 s with a quarter of
// it); one that keeps failing is not.
const maxStrikes = 3

// strike counts a new failure starting at now: a strike more if the last
// one ended less than 4 FailureHold ago, else the first.
func (b *backbone) strike(now time.Time, hold time.Duration) {
	if b.strikes > 0 && now.Sub(b.failedUntil) < 4*hold {
		b.strikes = min(b.strikes+1, maxStrikes)
	} else {
		b.strikes = 1
	}
}

// hold is how long b stays excluded after its last failing Step.
func (b *backbone) hold(full time.Duration) time.Duration {
	if b.strikes <= 1 {
		return 0
	}
	return full >> (maxStrikes - b.strikes)
}

// logFailure logs a backbone's failure and its recovery, once each.
func (o *Optimizer) logFailure(now time.Time, b *backbone, bs probes.BackboneStats, r Round) {
	if o.log == nil || b.failed(now) == b.reported {
		return
	}
	b.reported = !b.reported
	if b.reported {
		o.log.Warn("backbone failed", "backbone", b.name, "probes_sent", bs.ProbesSent, "probes_lost", bs.ProbesLost, "loss", math.Round(bs.Loss*1000)/1000,
			"round_sent", r.Sent, "round_lost", r.Lost, "traffic_unanswered", !bs.SilentSince.IsZero(), "hold", b.hold(o.cfg.failureHold), "strikes", b.strikes)
		return
	}
	o.log.Info("backbone recovered", "backbone", b.name, "probes_sent", bs.ProbesSent, "probes_lost", bs.ProbesLost)
}

// evacuate moves every prefix selected on a failed backbone, measured or
// not, to the best other holder: by score where the snapshot has one,
// else by the default order among the holders left. It ignores hysteresis,
// hold-down, MaxOverrides and the commit and capacity checks: traffic left
// on a failed backbone is lost, which is worse than any of them.
//
// While the backbone stays failed it is checked every Step, because the
// fib selects it again by default for routes it announces meanwhile: a
// count of its selections (fib.Selections, ~1 ms a million routes) first,
// and only when that is not zero a sweep, one fib.Route per route the
// backbone holds (see BenchmarkEvacuate).
func (o *Optimizer) evacuate(now time.Time, snap *probes.Snapshot) {
	var failed fib.HolderSet
	for i := range o.bb {
		if o.bb[i].failed(now) {
			failed |= 1 << i
		}
	}
	if failed == 0 {
		return
	}
	clear(o.snapIdx)
	for i := range snap.Prefixes {
		o.snapIdx[snap.Prefixes[i].Prefix] = i
	}
	selected, _ := o.fib.Selections()
	for _, b := range failed.IDs() {
		if selected[b] == 0 {
			continue
		}
		o.sweep = o.sweep[:0]
		moved := map[string]int{} // by the backbone they went to
		// Collect first: Routes holds the fib's writer lock, which Route
		// and ResetSelection take too.
		o.fib.Routes(b, func(p netip.Prefix, _ int) bool {
			o.sweep = append(o.sweep, p)
			return true
		})
		for _, p := range o.sweep {
			e, ok := o.fib.Route(p)
			if !ok || e.Backbone != b || o.pins.Has(p) {
				continue
			}
			others := e.Holders &^ failed
			if others == 0 {
				o.pending.Stranded++
				continue
			}
			from := Choice{Backbone: b, Name: o.bb[b].name}
			var to Choice
			var bps float64
			if i, ok := o.snapIdx[p]; ok {
				ps := &snap.Prefixes[i]
				from, bps = o.measure(ps, b), ps.Traffic*o.cfg.bitsPerPacket
				for c := range o.bb {
					if !others.Has(fib.BackboneID(c)) {
						continue
					}
					if m := o.measure(ps, fib.BackboneID(c)); m.Measured && (!to.Measured || m.Score < to.Score) {
						to = m
					}
				}
			}
			if !to.Measured {
				d := o.fib.DefaultAmong(e.Route, others)
				to = Choice{Backbone: d, Name: o.bb[d].name}
			}
			if o.move(now, p, e, o.fib.DefaultAmong(e.Route, e.Holders), from, to, BackboneFailed) {
				o.shift(b, to.Backbone, bps)
				moved[to.Name]++
			}
		}
		if o.log != nil && len(moved) > 0 {
			o.log.Warn("evacuated", "backbone", o.bb[b].name, "prefixes", sum(moved), "to", fmt.Sprint(moved), "stranded", o.pending.Stranded)
		}
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
