package optimizer

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// Backbones of the test FIB: a is the default wherever it holds a route.
const (
	bbA fib.BackboneID = iota
	bbB
	bbC
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// testOptions are the defaults with the [optimizer] settings the tests are
// written for spelled out, and room for 100 overrides.
func testOptions() Options {
	o := DefaultOptions()
	o.Interval, o.Statistic, o.LossPenaltyMs = time.Second, StatisticP50, 100
	o.MinImprovementMs, o.MinImprovementPct, o.MinSamples = 5, 10, 10
	o.HoldDown, o.MaxOverrides, o.FailureHold = 60*time.Second, 100, 30*time.Second
	return o
}

func pfx(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
}

// newFIB makes a FIB with backbones a, b, c, ... (preferences 100, 110,
// 120, ...) and n prefixes pfx(0..n-1) held by all of them.
func newFIB(t testing.TB, backbones, n int) *fib.FIB {
	t.Helper()
	var bbs []fib.Backbone
	for b := range backbones {
		bbs = append(bbs, fib.Backbone{Name: string(rune('a' + b)), Preference: 100 + 10*b})
	}
	f, err := fib.New(bbs, fib.Options{MaxRoutes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Update(func(tx *fib.Txn) error {
		for i := range n {
			for b := range backbones {
				if err := tx.Add(fib.BackboneID(b), pfx(i), 2); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// fakeSource is a measurement store the test writes directly.
type fakeSource struct {
	prefixes   map[netip.Prefix]*probes.PrefixStats
	backbones  map[fib.BackboneID]probes.BackboneStats
	rounds     map[fib.BackboneID]Round
	prevRounds map[fib.BackboneID]Round
}

func newSource() *fakeSource {
	return &fakeSource{prefixes: map[netip.Prefix]*probes.PrefixStats{}, backbones: map[fib.BackboneID]probes.BackboneStats{}}
}

func (s *fakeSource) Snapshot() probes.Snapshot {
	snap := probes.Snapshot{Backbones: s.backbones}
	for _, ps := range s.prefixes {
		cp := *ps
		cp.Backbones = map[fib.BackboneID]probes.Stats{}
		for k, v := range ps.Backbones {
			cp.Backbones[k] = v
		}
		snap.Prefixes = append(snap.Prefixes, cp)
	}
	// The store sorts busiest first; ties by prefix so runs repeat.
	slices.SortFunc(snap.Prefixes, func(a, b probes.PrefixStats) int {
		if a.Traffic != b.Traffic {
			if a.Traffic > b.Traffic {
				return -1
			}
			return 1
		}
		return a.Prefix.Addr().Compare(b.Prefix.Addr())
	})
	return snap
}

// roundSource adds LastRound and PreviousRound to fakeSource.
type roundSource struct{ *fakeSource }

func (s roundSource) LastRound() map[fib.BackboneID]Round     { return s.rounds }
func (s roundSource) PreviousRound() map[fib.BackboneID]Round { return s.prevRounds }

// set records backbone b's RTT (p50, and min 1 ms lower), loss and sample
// count for prefix p.
func (s *fakeSource) set(p netip.Prefix, b fib.BackboneID, rttMs, loss float64, n uint64) {
	ps := s.prefixes[p]
	if ps == nil {
		ps = &probes.PrefixStats{Prefix: p, Backbones: map[fib.BackboneID]probes.Stats{}}
		s.prefixes[p] = ps
	}
	rtt := time.Duration(rttMs * float64(time.Millisecond))
	st := probes.Stats{Min: rtt - time.Millisecond, P50: rtt, P95: rtt * 2, P99: rtt * 3, Loss: loss, Lost: uint64(loss * float64(n))}
	st.Samples[probes.Active] = n - st.Lost
	ps.Backbones[b] = st
}

// measure records lossless RTTs of 50 samples for prefix p on a, b, c in
// turn, as many as rttMs gives.
func (r *rig) measure(p netip.Prefix, rttMs ...float64) {
	for b, ms := range rttMs {
		r.src.set(p, fib.BackboneID(b), ms, 0, 50)
	}
}

// setProbes sets p's active probes on b that ended in the window: sent,
// lost of them.
func (s *fakeSource) setProbes(p netip.Prefix, b fib.BackboneID, sent, lost uint64) {
	st := s.prefixes[p].Backbones[b]
	st.Sent, st.Lost, st.Loss = sent, lost, float64(lost)/float64(sent)
	s.prefixes[p].Backbones[b] = st
}

// setTraffic sets p's traffic in Mbit/s at the default 1000-byte packets.
func (s *fakeSource) setTraffic(p netip.Prefix, mbps float64) {
	s.prefixes[p].Traffic = mbps * 1e6 / 8000
}

type fakeTraffic map[fib.BackboneID]float64

func (t fakeTraffic) BackboneBps() map[fib.BackboneID]float64 { return t }

// rig is one optimizer under test with its fakes.
type rig struct {
	t   testing.TB
	f   *fib.FIB
	src *fakeSource
	tr  fakeTraffic
	o   *Optimizer
	now time.Time
}

func newRig(t testing.TB, n int, opt Options) *rig {
	t.Helper()
	r := &rig{t: t, f: newFIB(t, 3, n), src: newSource(), tr: fakeTraffic{}, now: t0}
	o, err := New(opt, r.f, r.src, r.tr)
	if err != nil {
		t.Fatal(err)
	}
	r.o = o
	return r
}

// limitRig is newRig of n prefixes with backbone b limited as lim says
// (its Name filled in) over a rate window of 10 samples, and carrying bps.
func limitRig(t testing.TB, n int, b fib.BackboneID, lim Backbone, bps float64) *rig {
	t.Helper()
	opt := testOptions()
	lim.Name = string(rune('a' + b))
	opt.Backbones, opt.RateWindow = []Backbone{lim}, 10
	r := newRig(t, n, opt)
	r.tr[b] = bps
	return r
}

// step advances the clock by d and runs one Step.
func (r *rig) step(d time.Duration) {
	r.now = r.now.Add(d)
	r.o.Step(r.now)
}

// stepExpect advances the clock by d, runs one Step, and expects p
// selected on want.
func (r *rig) stepExpect(d time.Duration, p netip.Prefix, want fib.BackboneID) {
	r.t.Helper()
	r.step(d)
	r.expectSel(p, want)
}

func (r *rig) selected(p netip.Prefix) fib.BackboneID {
	r.t.Helper()
	e, ok := r.f.Route(p)
	if !ok {
		r.t.Fatalf("%v: no route", p)
	}
	return e.Backbone
}

func (r *rig) expectSel(p netip.Prefix, want fib.BackboneID) {
	r.t.Helper()
	if got := r.selected(p); got != want {
		r.t.Fatalf("%v: selected %s, want %s; events:\n%s", p, r.o.bb[got].name, r.o.bb[want].name, eventList(r.o.Events(20)))
	}
}

func eventList(es []Event) string {
	s := ""
	for _, e := range es {
		s += fmt.Sprintf("  %v\n", e)
	}
	return s
}

func moves(c Counters) uint64 {
	var n uint64
	for _, m := range c.Moves {
		n += m
	}
	return n
}
