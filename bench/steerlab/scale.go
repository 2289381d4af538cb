//go:build linux

package steerlab

import (
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/emu"
)

// The scale scenario: Scenario.Dense prefixes (IPv4 /30s) over the
// backbones, each /24 of them (a "region" of 64 prefixes, which the
// emulators key their delays by) with a latency of its own on every
// backbone, drawn at random and redrawn for a quarter of the regions on
// one backbone every ShiftEvery. The customer's traffic is Pings, skewed
// as real traffic is; the oracle measures one destination per region on
// every backbone.

// regionSize is the prefixes of a region: the /30s of a /24.
const regionSize = 64

// profile is every backbone's delay to every region, as set.
type profile struct {
	rng   *rand.Rand
	delay [][]time.Duration // [backbone][region]
}

// regionDelay draws a region's delay on a backbone: 10 to 70 ms in 5 ms
// steps, so that most shifts move a region's best by more than pnap's
// min_improvement and some by less.
func (p *profile) regionDelay() time.Duration {
	return time.Duration(10+5*p.rng.IntN(13)) * time.Millisecond
}

func newProfile(seed uint64, backbones, regions int) *profile {
	p := &profile{rng: rand.New(rand.NewPCG(seed, 7))}
	for range backbones {
		d := make([]time.Duration, regions)
		for r := range d {
			d[r] = p.regionDelay()
		}
		p.delay = append(p.delay, d)
	}
	return p
}

// table is backbone b's delays as the emulator takes them.
func (p *profile) table(tb testing.TB, b int) *emu.DestDelays {
	m := map[netip.Prefix]time.Duration{}
	for r, d := range p.delay[b] {
		a, _ := dense(r * regionSize)
		m[netip.PrefixFrom(a, 24).Masked()] = d
	}
	t, err := emu.NewDestDelays(m)
	if err != nil {
		tb.Fatal(err)
	}
	return t
}

// best is region r's fastest backbone and its delay.
func (p *profile) best(r int) (int, time.Duration) {
	b := 0
	for i := range p.delay {
		if p.delay[i][r] < p.delay[b][r] {
			b = i
		}
	}
	return b, p.delay[b][r]
}

// shift redraws a quarter of the regions on one backbone and returns it,
// those regions, and the regions whose best backbone was left behind: the
// old best is now worse than the new one by more than pnap's
// min_improvement (5 ms and 10 %), with the backbones good enough now (a
// bit per backbone: those within min_improvement of the best, which pnap
// has no reason to leave).
func (p *profile) shift() (b int, redrawn []int, moved map[int]uint8) {
	b = p.rng.IntN(len(p.delay))
	regions := len(p.delay[b])
	was := make([]int, regions)
	for r := range was {
		was[r], _ = p.best(r)
	}
	redrawn = p.rng.Perm(regions)[:regions/4]
	for _, r := range redrawn {
		p.delay[b][r] = p.regionDelay()
	}
	moved = map[int]uint8{}
	for r := range was {
		_, nd := p.best(r)
		if worth(p.delay[was[r]][r], nd) {
			var good uint8
			for i := range p.delay {
				if !worth(p.delay[i][r], nd) {
					good |= 1 << i
				}
			}
			moved[r] = good
		}
	}
	return b, redrawn, moved
}

// worth is whether pnap moves a prefix from a backbone at from to one at
// to: by min_improvement_ms = 5 and min_improvement_pct = 10 of the lab.
func worth(from, to time.Duration) bool {
	return from-to >= 5*time.Millisecond && float64(from-to) >= 0.1*float64(from)
}

// scaleRun is a scale scenario under way.
type scaleRun struct {
	tb     testing.TB
	sc     Scenario
	l      *Lab
	w      io.Writer
	prof   *profile
	pings  *Pings
	oracle *Oracle
	start  time.Time
	snaps  []snapshot
	shifts []scaleShift
	// touched is when a shift last redrew each region (zero: never).
	touched []time.Time
	res     Result
	flaps   int
	// lastMove is every prefix's last move seen.
	lastMove []move
}

// snapshot is the backbone carrying every prefix (by index; -1 none) at a
// moment.
type snapshot struct {
	at  time.Time
	sel []int8
}

// scaleShift is one redraw and the prefixes it moved: the backbones good
// enough for them now, until 90 % of them (and of their traffic) were on
// one.
type scaleShift struct {
	at              time.Time
	target          map[int]uint8 // prefix -> good backbones, a bit each
	weight          float64
	done, doneTraff time.Duration // 0: not yet; -1: not before the next shift
	// lastN and lastW are how many of the prefixes, and what share of
	// their traffic, were on a good backbone at the last look.
	lastN int
	lastW float64
}

// runScale runs sc, a scale scenario, and returns its result and lab.
func runScale(tb testing.TB, sc Scenario, pnapd string, passive bool, w io.Writer) (Result, *Lab) {
	tb.Helper()
	regions := (sc.Dense + regionSize - 1) / regionSize
	s := &scaleRun{tb: tb, sc: sc, w: w, prof: newProfile(sc.Seed, len(sc.Delays), regions), touched: make([]time.Time, regions)}
	var tables []*emu.DestDelays
	for b := range sc.Delays {
		tables = append(tables, s.prof.table(tb, b))
	}
	// Probes: every second the busiest 250 prefixes on every backbone and
	// 250 more in turn, so each is measured every 40 s or so. More loads
	// this 2-core VM past what it forwards without loss: at 2,000 and
	// 3,000 a second the oracle itself got slower, and flaps went from 8
	// to 1,649 and 3,333. So the budget is spent on fresher measurements
	// rather than surer ones: min_samples 2, a turn of one round (two
	// probes a backbone), where 4 took two rounds and swept the prefixes
	// every 80 s (+15-17 % over the oracle against +9-12 % in targeted
	// runs; 2-29 flaps either way once background loss stopped moving
	// prefixes). The lab's jitter is 2 ms, far below min_improvement.
	// Every packet is sampled for the traffic ranking: at 2,000 a second,
	// 1 in 64 would leave all but the busiest few dozen prefixes unranked.
	s.l = Build(tb, Options{Dense: sc.Dense, Delays: sc.Delays, Jitter: sc.Jitter, DestDelay: tables, Pnapd: pnapd, Passive: passive, ProbeRate: 1000, TrafficSampleEvery: 1,
		Window: 10 * time.Second, ProbeInterval: time.Second, OptimizerInterval: 250 * time.Millisecond, HoldDown: 3 * time.Second, MinSamples: 2})
	fmt.Fprintf(w, "%s: %s\n", sc.Name, sc.About)
	s.pings = StartPings(tb, s.l.X.Source, s.l.Dests, sc.PingRate, sc.Seed)
	s.oracle = StartOracle(tb, s.l, 2*time.Millisecond)
	// Long enough for every prefix's turn to come twice: until then the
	// cold ones have been measured on their default backbone only.
	time.Sleep(scaleWarmUp)
	s.start = time.Now()
	s.loop()
	s.pings.Stop()
	s.oracle.Stop()
	s.finish()
	return s.res, s.l
}

// scaleWarmUp is how long the scale lab runs before it is judged.
const scaleWarmUp = 20 * time.Second

func (s *scaleRun) loop() {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	nextShift := s.sc.ShiftEvery
	for now := time.Now(); now.Sub(s.start) < s.sc.Total; now = <-tick.C {
		el := now.Sub(s.start)
		if el >= nextShift {
			s.shift(el)
			nextShift += s.sc.ShiftEvery
		}
		s.snap()
		if len(s.snaps)%2 == 0 {
			s.line(el)
		}
	}
	for i := range s.shifts {
		sh := &s.shifts[i]
		if sh.done == 0 {
			sh.done = -1
		}
		if sh.doneTraff == 0 {
			sh.doneTraff = -1
		}
	}
}

// shift redraws a quarter of one backbone's regions and sets its emulator.
func (s *scaleRun) shift(el time.Duration) {
	b, redrawn, moved := s.prof.shift()
	out := emu.Params{Delay: s.sc.Delays[b], Jitter: s.l.jitter(b), DestDelay: s.prof.table(s.tb, b)}
	if err := s.l.X.Backbones[b].Emu.Set(out, emu.Params{}); err != nil {
		s.tb.Fatal(err)
	}
	now := time.Now()
	for i := range s.shifts {
		// A shift still awaited is cut short: the next changes its targets.
		if sh := &s.shifts[i]; sh.done == 0 || sh.doneTraff == 0 {
			fmt.Fprintf(s.w, "  %5.1fs  (the last shift: after %.1f s, %d of %d prefixes and %.0f %% of their traffic on a good backbone)\n",
				el.Seconds(), now.Sub(sh.at).Seconds(), sh.lastN, len(sh.target), 100*sh.lastW/max(sh.weight, 1e-9))
			if sh.done == 0 {
				sh.done = -1
			}
			if sh.doneTraff == 0 {
				sh.doneTraff = -1
			}
		}
	}
	sh := scaleShift{at: now, target: map[int]uint8{}}
	for r, good := range moved {
		for k := r * regionSize; k < min((r+1)*regionSize, s.sc.Dense); k++ {
			sh.target[k] = good
			sh.weight += s.pings.Weight[k]
		}
	}
	for _, r := range redrawn {
		s.touched[r] = now
	}
	if len(sh.target) == 0 {
		sh.done, sh.doneTraff = -2, -2 // nothing to follow
	}
	s.shifts = append(s.shifts, sh)
	fmt.Fprintf(s.w, "  %5.1fs  >>> %s: a quarter of its regions redrawn; %d regions (%d prefixes, %.1f %% of the traffic) must move\n",
		el.Seconds(), s.l.Backbone[b], len(moved), len(sh.target), 100*sh.weight)
}

// snap records which backbone carries every prefix now, and ends the wait
// of the shifts whose prefixes are 90 % on their new best.
func (s *scaleRun) snap() {
	sel, err := s.l.Selection()
	if err != nil {
		s.tb.Fatal(err)
	}
	now := time.Now()
	sn := snapshot{at: now, sel: make([]int8, len(s.l.Prefix))}
	for k, p := range s.l.Prefix {
		sn.sel[k] = int8(slices.Index(s.l.Backbone, sel[p]))
	}
	if len(s.snaps) > 0 {
		s.countMoves(s.snaps[len(s.snaps)-1], sn)
	}
	s.snaps = append(s.snaps, sn)
	for i := range s.shifts {
		sh := &s.shifts[i]
		if sh.done != 0 && sh.doneTraff != 0 {
			continue
		}
		n, wt := 0, 0.0
		for k, good := range sh.target {
			if b := sn.sel[k]; b >= 0 && good&(1<<b) != 0 {
				n++
				wt += s.pings.Weight[k]
			}
		}
		sh.lastN, sh.lastW = n, wt
		if sh.done == 0 && n*10 >= len(sh.target)*9 {
			sh.done = now.Sub(sh.at)
		}
		if sh.doneTraff == 0 && wt >= 0.9*sh.weight {
			sh.doneTraff = now.Sub(sh.at)
		}
	}
}

// countMoves counts the moves between two snapshots, and as flaps the
// moves back to where a prefix was before its last move when no shift
// came in between (nothing changed, pnap went and came back).
func (s *scaleRun) countMoves(a, b snapshot) {
	if s.lastMove == nil {
		s.lastMove = make([]move, len(a.sel))
	}
	for k := range b.sel {
		if a.sel[k] == b.sel[k] {
			continue
		}
		s.res.Resteers++
		r := k / regionSize
		if m := s.lastMove[k]; !m.at.IsZero() && m.from == b.sel[k] && !s.touched[r].After(m.at) {
			s.flaps++
		}
		s.lastMove[k] = move{at: b.at, from: a.sel[k]}
	}
}

// line prints what the run sees now.
func (s *scaleRun) line(el time.Duration) {
	sn := s.snaps[len(s.snaps)-1]
	carried := make([]int, len(s.l.Backbone))
	for _, b := range sn.sel {
		if b >= 0 {
			carried[b]++
		}
	}
	var parts []string
	for i, b := range s.l.Backbone {
		parts = append(parts, fmt.Sprintf("%s %5d", b, carried[i]))
	}
	fmt.Fprintf(s.w, "  %5.1fs  prefixes carried: %s | moves %d\n", el.Seconds(), strings.Join(parts, " | "), s.res.Resteers)
}

// move is a prefix's last move: when, and from which backbone.
type move struct {
	at   time.Time
	from int8
}

// selectedAt is the backbone carrying prefix k at t, as last seen before
// it; -1 before the first snapshot.
func (s *scaleRun) selectedAt(k int, t time.Time) int {
	i := sort.Search(len(s.snaps), func(i int) bool { return s.snaps[i].at.After(t) }) - 1
	if i < 0 {
		return -1
	}
	return int(s.snaps[i].sel[k])
}

// finish judges the run: every answered echo against what the oracle
// measured to its region on every backbone around it.
func (s *scaleRun) finish() {
	const bucket, span = 100 * time.Millisecond, 500 * time.Millisecond
	end := time.Now()
	type key struct {
		region int
		bucket int64
	}
	costs := map[key][]time.Duration{}
	costAt := func(r int, t time.Time) []time.Duration {
		k := key{r, int64(t.Sub(s.start) / bucket)}
		if c, ok := costs[k]; ok {
			return c
		}
		var c []time.Duration
		for _, o := range s.oracle.AtDest(r, s.start.Add(time.Duration(k.bucket)*bucket+bucket/2), span, end) {
			c = append(c, min(o.Cost(), deadCost))
		}
		costs[k] = c
		return c
	}
	nb := len(s.l.Backbone)
	var sum, oracle, chosen time.Duration
	static := make([]time.Duration, nb)
	var all []time.Duration
	perSec := map[int64]*secondSums{}
	for _, p := range s.pings.RTTs() {
		t := s.pings.start.Add(p.At)
		if t.Before(s.start) {
			continue
		}
		c := costAt(int(p.Dest)/regionSize, t)
		b := s.selectedAt(int(p.Dest), t)
		if b < 0 {
			continue
		}
		o := slices.Min(c)
		sum, oracle, chosen = sum+p.RTT, oracle+o, chosen+c[b]
		all = append(all, p.RTT)
		ps := perSec[int64(t.Sub(s.start)/time.Second)]
		if ps == nil {
			ps = &secondSums{static: make([]time.Duration, nb)}
			perSec[int64(t.Sub(s.start)/time.Second)] = ps
		}
		ps.n++
		ps.flows, ps.oracle = ps.flows+p.RTT, ps.oracle+o
		for i := range static {
			static[i] += c[i]
			ps.static[i] += c[i]
		}
	}
	s.res.StaticRTT = map[string]time.Duration{}
	if n := time.Duration(len(all)); n > 0 {
		s.res.MeanRTT, s.res.OracleRTT, s.res.ChosenRTT = sum/n, oracle/n, chosen/n
		slices.Sort(all)
		s.res.P95RTT = all[len(all)*95/100]
		for i, b := range s.l.Backbone {
			s.res.StaticRTT[b] = static[i] / n
		}
	}
	s.res.Seconds = secondsOf(perSec, s.l.Backbone)
	for _, sh := range s.shifts {
		if sh.done == -2 {
			continue // the shift called for no move
		}
		s.res.ResteerAfter = append(s.res.ResteerAfter, sh.done)
		s.res.ResteerTraffic = append(s.res.ResteerTraffic, sh.doneTraff)
		s.res.Moves += len(sh.target)
	}
	s.res.flaps, s.res.flapsCounted = s.flaps, true
	s.res.UDPLost, s.res.UDPOf = s.pings.Lost()
}

// secondSums adds up one second's echoes: through pnap, the oracle's and
// each static backbone's, as the oracle measured them.
type secondSums struct {
	n             int
	flows, oracle time.Duration
	static        []time.Duration
}

// secondsOf turns per-second sums into Result.Seconds: the flows' mean,
// the oracle's and each backbone's (in RTT, as measured by the oracle).
func secondsOf(perSec map[int64]*secondSums, backbones []string) []Second {
	var out []Second
	for _, k := range slices.Sorted(maps.Keys(perSec)) {
		ps := perSec[k]
		n := time.Duration(ps.n)
		sec := Second{T: time.Duration(k) * time.Second, FlowsRTT: ps.flows / n, OracleRTT: ps.oracle / n, RTT: map[string]float64{}}
		for i, b := range backbones {
			sec.RTT[b] = ms(ps.static[i] / n)
		}
		out = append(out, sec)
	}
	return out
}
