//go:build linux

package steerlab

import (
	"cmp"
	"fmt"
	"image/color"
	"io"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/emu"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Shift is a change of one emulated backbone at some time into the run:
// its way out (Delay, Jitter, Loss) and its way back (Return). In this lab
// every answer comes back through bb-0 (the Internet's one way home), so
// only bb-0's Return changes what anyone sees, and it changes it for every
// backbone alike.
type Shift struct {
	At     time.Duration
	Index  int // backbone
	Delay  time.Duration
	Jitter time.Duration
	Loss   float64
	Return emu.Params
	Say    string
}

// Second is what the run saw in one second.
type Second struct {
	T        time.Duration
	RTT      map[string]float64 // pnapd's measured median per backbone
	Carried  map[string]int     // served prefixes per backbone
	FlowsRTT time.Duration      // customer's mean RTT that second
	Oracle   []OracleSample     // the oracle's measurement of every backbone then
	// OracleRTT, where set (the scale scenario), is the oracle's cost that
	// second, prefix by prefix; RTT is then each backbone's as the oracle
	// measured it.
	OracleRTT time.Duration
	Resteers  int
	rx        []uint64 // bytes received at the far end of backbones with a commit
	at        time.Time
}

// Result sums up a run.
type Result struct {
	Seconds []Second
	MeanRTT time.Duration // the customer's flows through pnap
	P95RTT  time.Duration
	// StaticRTT is what the flows would have seen had every one stayed on
	// one backbone, OracleRTT on the best backbone at every moment: both
	// from the oracle's measurements at each exchange (see Oracle).
	StaticRTT map[string]time.Duration
	OracleRTT time.Duration
	// ChosenRTT is pnap's choices judged as the oracle's are: the
	// oracle's measurement of the backbone pnap had selected for each
	// exchange's prefix. Against OracleRTT it compares decisions alone,
	// with one instrument; MeanRTT, the flows' own, also carries what the
	// instruments differ by (TCP against UDP echoes, pnap's forwarding).
	ChosenRTT    time.Duration
	Resteers     int
	ResteerAfter []time.Duration // per shift: until ≥ 90 % of prefixes were on the new best; -1 never; 0 when the best did not change
	// ResteerTraffic is ResteerAfter for 90 % of the affected prefixes'
	// traffic (the scale scenario only).
	ResteerTraffic []time.Duration
	Moves          int // selection changes the shifts called for (a prefix's move to a new best)
	Broken         int64
	UDPLost, UDPOf int64
	// SessionDrops, with BGP, is how often a backbone's BGP session went
	// down during the run; -1 without BGP.
	SessionDrops int
	// CommitP95 is, for each backbone with a commit, the 95th percentile
	// of its per-second rate (bits/s) from commitSettle on, measured at its
	// far end; CommitOvershoot how far that is above the commit, in
	// percent (0 when under).
	CommitP95       map[string]float64
	CommitOvershoot map[string]float64
	// flaps, where flapsCounted, are flaps counted move by move (the scale
	// scenario, whose shifts call for moves that pnap need not all make).
	flaps        int
	flapsCounted bool
}

// Flaps are the selection changes beyond those the shifts called for: in
// the scale scenario, moves back to where a prefix just was with nothing
// changed for it in between.
func (r Result) Flaps() int {
	if r.flapsCounted {
		return r.flaps
	}
	return max(0, r.Resteers-r.Moves)
}

// Run drives lab through the shifts for total, printing a line a second to
// w, and returns what happened. The oracle measures every backbone
// meanwhile.
func Run(tb testing.TB, l *Lab, shifts []Shift, total time.Duration, w io.Writer) Result {
	tb.Helper()
	sc := &scenario{tb: tb, l: l, shifts: shifts, w: w, pending: map[int]time.Time{}, say: "start", lastLine: -1}
	for i, d := range l.Opt.Delays {
		sc.out = append(sc.out, emu.Params{Delay: d, Jitter: l.jitter(i)})
	}
	sc.best = sc.bestNow()
	sc.flows = StartFlows(tb, l.X.Source, l.Dests)
	if l.Opt.BulkMbps > 0 {
		sc.flows.StartBulk(tb, l.X.Source, l.Dests, l.Opt.BulkMbps)
	}
	sc.oracle = StartOracle(tb, l, 20*time.Millisecond)
	// The lab warms up before the run is judged: in the first seconds of
	// flows on this VM, probes through the default backbone are answered
	// late (emulators and workers stall 100 ms and more while everything
	// starts) and pnap moves prefixes away and back. Not yet explained;
	// judged runs start once it is over.
	time.Sleep(warmUp)
	decided, _ := l.Decisions()
	dropped := sc.sessionDrops()
	sc.start = time.Now()
	sc.res.ResteerAfter = make([]time.Duration, len(shifts))
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for now := time.Now(); now.Sub(sc.start) < total; now = <-tick.C {
		el := now.Sub(sc.start)
		sc.applyShifts(el)
		carried := sc.carried()
		if sec := el.Truncate(time.Second); sec != sc.lastLine {
			sc.lastLine = sec
			sc.second(now, el, carried)
		}
	}
	// Counted before the flows stop: their traffic gone, a commit has room
	// and pnap rightly fills it (the commit scenario's last 4 moves, which
	// read as flaps).
	sc.res.Resteers, _ = l.Decisions()
	sc.res.Resteers -= decided
	sc.res.SessionDrops = -1
	if l.Opt.BGP {
		sc.res.SessionDrops = sc.sessionDrops() - dropped
	}
	sc.flows.Stop()
	sc.oracle.Stop()
	for i := range shifts {
		if _, ok := sc.pending[i]; ok {
			sc.res.ResteerAfter[i] = -1
		}
	}
	sc.compare()
	sc.commitRates()
	sc.res.Broken = sc.flows.Broken()
	sc.res.UDPLost, sc.res.UDPOf = sc.flows.UDPLost()
	// What the emulators dropped or delayed that their settings did not
	// ask for: the lab's own noise, which pnap measures as the path's.
	for i, bb := range l.X.Backbones {
		st := bb.Emu.Stats()
		fmt.Fprintf(w, "  emulator %s: out %d frames, %d lost as set, %d queue full, %d overrun, %d late (max %v); back %d frames, %d overrun, %d late\n",
			l.Backbone[i], st.AB.Received, st.AB.Lost, st.AB.QueueFull, st.AB.Overrun, st.AB.Late, st.AB.MaxLate, st.BA.Received, st.BA.Overrun, st.BA.Late)
	}
	return sc.res
}

// sessionDrops is the lab's BGP session drops so far, 0 without BGP.
func (sc *scenario) sessionDrops() int {
	if !sc.l.Opt.BGP {
		return 0
	}
	n, err := sc.l.sessionDrops()
	if err != nil {
		sc.tb.Fatal(err)
	}
	return n
}

// warmUp is how long flows and the oracle run before a run is judged.
const warmUp = 8 * time.Second

// scenario is one Run under way.
type scenario struct {
	tb      testing.TB
	l       *Lab
	shifts  []Shift
	w       io.Writer
	flows   *Flows
	oracle  *Oracle
	start   time.Time
	out     []emu.Params // every backbone's way out now
	best    int          // the best backbone by the emulation's settings now
	pending map[int]time.Time
	next    int // the next shift to apply
	// selections is which backbone carried each prefix, every 100 ms.
	selections []selection
	say        string        // the last shift's words, on every line
	lastLine   time.Duration // the second of the last line printed
	res        Result
}

type selection struct {
	at  time.Time
	sel map[netip.Prefix]string
}

// selectedAt is the backbone (index) carrying the prefix of dest at t, as
// last seen before it; -1 before the first look.
func (sc *scenario) selectedAt(dest netip.Addr, t time.Time) int {
	k := sort.Search(len(sc.selections), func(i int) bool { return sc.selections[i].at.After(t) }) - 1
	if k < 0 {
		return -1
	}
	for i, d := range sc.l.Dests {
		if d == dest {
			return slices.Index(sc.l.Backbone, sc.selections[k].sel[sc.l.Prefix[i]])
		}
	}
	return -1
}

// bestNow is the backbone whose way out costs least as set: its delay
// plus its loss at retransmitCost, as the oracle counts.
func (sc *scenario) bestNow() int {
	best, cost := 0, time.Duration(1<<63-1)
	for i, p := range sc.out {
		c := p.Delay + time.Duration(p.Loss*float64(retransmitCost))
		if p.Loss >= 1 {
			c = 1<<63 - 1
		}
		if c < cost {
			best, cost = i, c
		}
	}
	return best
}

// applyShifts applies the shifts due el into the run: the emulator's new
// settings, the new best backbone (whose prefixes are then awaited), and
// a line saying so.
func (sc *scenario) applyShifts(el time.Duration) {
	for sc.next < len(sc.shifts) && el >= sc.shifts[sc.next].At {
		s := sc.shifts[sc.next]
		bb := sc.l.X.Backbones[s.Index]
		sc.out[s.Index] = emu.Params{Delay: s.Delay, Jitter: s.Jitter, Loss: s.Loss}
		if sc.l.Opt.BGP {
			// Beyond the router: its session and routes stay.
			sc.out[s.Index].LossOnly = greyRanges
		}
		if err := bb.Emu.Set(sc.out[s.Index], s.Return); err != nil {
			sc.tb.Fatal(err)
		}
		if b := sc.bestNow(); b != sc.best {
			sc.best = b
			sc.pending[sc.next] = time.Now()
			sc.res.Moves += len(sc.l.Prefix)
		}
		sc.say = s.Say
		fmt.Fprintf(sc.w, "  %5.1fs  >>> %s\n", el.Seconds(), s.Say)
		sc.next++
	}
}

// carried counts the served prefixes each backbone carries now, and ends
// the wait of the pending shifts once 90 % of them are on the best
// backbone.
func (sc *scenario) carried() map[string]int {
	sel, err := sc.l.Selection()
	if err != nil {
		sc.tb.Fatal(err)
	}
	carried := map[string]int{}
	for _, b := range sel {
		carried[b]++
	}
	sc.selections = append(sc.selections, selection{time.Now(), sel})
	for i, at := range sc.pending {
		if carried[sc.l.Backbone[sc.best]] >= len(sc.l.Prefix)*9/10 {
			sc.res.ResteerAfter[i] = time.Since(at)
			delete(sc.pending, i)
		}
	}
	return carried
}

// second records the second el into the run, ending at now, and prints its
// line.
func (sc *scenario) second(now time.Time, el time.Duration, carried map[string]int) {
	rtt, err := sc.l.BackboneRTT()
	if err != nil {
		sc.tb.Fatal(err)
	}
	n, _ := sc.l.Decisions()
	fm, _ := sc.flows.MeanRTT(now.Add(-time.Second), now)
	rx := make([]uint64, len(sc.l.Backbone))
	for i := range sc.l.Opt.CommitMbps {
		if rx[i], err = sc.l.ReceivedBytes(i); err != nil {
			sc.tb.Fatal(err)
		}
	}
	sc.res.Seconds = append(sc.res.Seconds, Second{T: el, RTT: rtt, Carried: carried, FlowsRTT: fm, Resteers: n, rx: rx, at: now})
	var parts []string
	for _, b := range sc.l.Backbone {
		parts = append(parts, fmt.Sprintf("%s %6.1f ms %2d/%d", b, rtt[b], carried[b], len(sc.l.Prefix)))
	}
	fmt.Fprintf(sc.w, "  %5.1fs  %s | flows %6.1f ms | re-steers %3d | %s\n", el.Seconds(), strings.Join(parts, " | "), ms(fm), n, sc.say)
}

// commitSettle is how long a run goes before its commits are judged:
// the optimizer needs traffic measured before it can shed any.
const commitSettle = 10 * time.Second

// commitRates sets CommitP95 and CommitOvershoot from the per-second
// byte counts.
func (sc *scenario) commitRates() {
	sc.res.CommitP95, sc.res.CommitOvershoot = map[string]float64{}, map[string]float64{}
	for i, commit := range sc.l.Opt.CommitMbps {
		if commit <= 0 {
			continue
		}
		var rates []float64
		for k := 1; k < len(sc.res.Seconds); k++ {
			a, b := sc.res.Seconds[k-1], sc.res.Seconds[k]
			if a.T < commitSettle || b.at.Sub(a.at) <= 0 {
				continue
			}
			rates = append(rates, float64(b.rx[i]-a.rx[i])*8/b.at.Sub(a.at).Seconds())
		}
		if len(rates) == 0 {
			continue
		}
		slices.Sort(rates)
		p95 := rates[(len(rates)*95+99)/100-1]
		name := sc.l.Backbone[i]
		sc.res.CommitP95[name] = p95
		sc.res.CommitOvershoot[name] = max(0, 100*(p95/(commit*1e6)-1))
	}
}

// deadCost is what the oracle charges an exchange on a backbone that
// answered nothing around it: TCP would stall; a number keeps the means
// finite.
const deadCost = time.Second

// compare sets what the flows saw, and what they would have seen on each
// static choice and on the oracle's, from the oracle's measurements
// around each exchange (100 ms buckets, each measured over ±500 ms).
func (sc *scenario) compare() {
	const bucket, span = 100 * time.Millisecond, 500 * time.Millisecond
	end := time.Now()
	costs := map[int64][]time.Duration{}
	costAt := func(t time.Time) []time.Duration {
		k := int64(t.Sub(sc.start) / bucket)
		if c, ok := costs[k]; ok {
			return c
		}
		var c []time.Duration
		for _, s := range sc.oracle.At(sc.start.Add(time.Duration(k)*bucket+bucket/2), span, end) {
			c = append(c, min(s.Cost(), deadCost))
		}
		costs[k] = c
		return c
	}
	for i := range sc.res.Seconds {
		sc.res.Seconds[i].Oracle = sc.oracle.At(sc.start.Add(sc.res.Seconds[i].T), span, end)
	}
	sc.res.StaticRTT = map[string]time.Duration{}
	var sum, oracle time.Duration
	static := make([]time.Duration, len(sc.l.Backbone))
	var rtts []FlowRTT
	for _, x := range sc.flows.RTTs() {
		if !x.At.Before(sc.start) {
			rtts = append(rtts, x)
		}
	}
	all := make([]time.Duration, 0, len(rtts))
	shares := sc.commitShares()
	var chosen time.Duration
	chosenN := 0
	for _, x := range rtts {
		c := costAt(x.At)
		sum += x.RTT
		all = append(all, x.RTT)
		oracle += best(c, shares)
		if b := sc.selectedAt(x.Dest, x.At); b >= 0 {
			chosen += c[b]
			chosenN++
		}
		for i := range static {
			static[i] += c[i]
		}
	}
	if n := time.Duration(len(rtts)); n > 0 {
		sc.res.MeanRTT, sc.res.OracleRTT = sum/n, oracle/n
		sc.res.ChosenRTT = chosen / time.Duration(max(chosenN, 1))
		slices.Sort(all)
		sc.res.P95RTT = all[len(all)*95/100]
		for i, b := range sc.l.Backbone {
			sc.res.StaticRTT[b] = static[i] / n
		}
	}
}

// commitShares is the most of the prefixes each backbone can carry under
// its commit, as a fraction: every prefix sends BulkMbps (and its IP and
// UDP headers), so a commit holds whole prefixes up to it. 1 where there
// is no commit.
func (sc *scenario) commitShares() []float64 {
	n := len(sc.l.Prefix)
	shares := make([]float64, len(sc.l.Backbone))
	for i := range shares {
		shares[i] = 1
		if i < len(sc.l.Opt.CommitMbps) && sc.l.Opt.CommitMbps[i] > 0 && sc.l.Opt.BulkMbps > 0 {
			per := sc.l.Opt.BulkMbps * (1200 + 28) / 1200
			shares[i] = min(1, math.Floor(sc.l.Opt.CommitMbps[i]/per)/float64(n))
		}
	}
	return shares
}

// best is what the oracle gets from backbones costing c, each able to
// carry shares of the prefixes: the cheapest filled first.
func best(c []time.Duration, shares []float64) time.Duration {
	order := make([]int, len(c))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(c[a], c[b]) })
	left, sum := 1.0, 0.0
	for _, i := range order {
		f := min(left, shares[i])
		sum += f * float64(c[i])
		if left -= f; left <= 0 {
			break
		}
	}
	return time.Duration(sum)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// Summary prints the result.
func (r Result) Summary(w io.Writer, l *Lab, shifts []Shift) {
	fmt.Fprintf(w, "\nSummary (static choices, the oracle and pnap's choices as measured by the oracle's probes, outside pnap, in this run)\n")
	fmt.Fprintf(w, "  customer flows, mean RTT:     %6.1f ms (through pnap, as the flows measured it)\n", ms(r.MeanRTT))
	fmt.Fprintf(w, "  pnap's choices:               %6.1f ms (the backbone pnap selected, as the oracle measured it)\n", ms(r.ChosenRTT))
	var names []string
	for b := range r.StaticRTT {
		names = append(names, b)
	}
	sort.Strings(names)
	for _, b := range names {
		fmt.Fprintf(w, "  had they all stayed on %s: %6.1f ms\n", b, ms(r.StaticRTT[b]))
	}
	fmt.Fprintf(w, "  hindsight oracle:             %6.1f ms (the best backbone at every moment)\n", ms(r.OracleRTT))
	fmt.Fprintf(w, "  re-steers: %d selection changes\n", r.Resteers)
	for i, s := range shifts {
		if r.ResteerAfter[i] < 0 {
			fmt.Fprintf(w, "  after %q: not re-steered by the end\n", s.Say)
		} else {
			fmt.Fprintf(w, "  after %q: 90 %% of prefixes on the new best backbone in %.1f s\n", s.Say, r.ResteerAfter[i].Seconds())
		}
	}
	fmt.Fprintf(w, "  TCP connections broken: %d; UDP datagrams lost: %d of %d (%.2f %%, the emulated loss included)\n",
		r.Broken, r.UDPLost, r.UDPOf, 100*float64(r.UDPLost)/float64(max(r.UDPOf, 1)))
}

// Plot draws pnapd's measured RTT per backbone over the run and the
// customer's flows' mean RTT (what pnap chose), into path (PNG).
func (r Result) Plot(path string, l *Lab) error {
	return r.PlotTitled(path, "pnap demo", l)
}

// PlotTitled is Plot under a title of its own, with the oracle's best
// backbone at every second (dashed) beside what the customer got.
func (r Result) PlotTitled(path, title string, l *Lab) error {
	p := plot.New()
	p.Title.Text = title + ": RTT per backbone (measured by pnapd) and what the customer got"
	if len(r.Seconds) > 0 && r.Seconds[0].OracleRTT > 0 {
		p.Title.Text = title + ": RTT per backbone (measured by the oracle) and what the customer got"
	}
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "RTT (ms)"
	p.Legend.Top = true
	colors := []color.Color{color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0x8c, 0x56, 0x4b, 0xff}}
	for i, b := range l.Backbone {
		var pts plotter.XYs
		for _, s := range r.Seconds {
			if v, ok := s.RTT[b]; ok && v > 0 {
				pts = append(pts, plotter.XY{X: s.T.Seconds(), Y: v})
			}
		}
		if len(pts) == 0 {
			continue
		}
		ln, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		ln.Color, ln.Width = colors[i%len(colors)], vg.Points(1.5)
		p.Add(ln)
		p.Legend.Add(b+" (measured)", ln)
	}
	var pts plotter.XYs
	for _, s := range r.Seconds {
		if s.FlowsRTT > 0 {
			pts = append(pts, plotter.XY{X: s.T.Seconds(), Y: ms(s.FlowsRTT)})
		}
	}
	if len(pts) > 0 {
		ln, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		ln.Color, ln.Width = color.RGBA{0xd6, 0x27, 0x28, 0xff}, vg.Points(3)
		p.Add(ln)
		p.Legend.Add("customer flows via pnap (chosen)", ln)
	}
	if err := addOracle(p, r); err != nil {
		return err
	}
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}

// addOracle draws the oracle's cheapest backbone each second, its cost
// capped at deadCost.
func addOracle(p *plot.Plot, r Result) error {
	var pts plotter.XYs
	for _, s := range r.Seconds {
		if s.OracleRTT > 0 {
			pts = append(pts, plotter.XY{X: s.T.Seconds(), Y: ms(s.OracleRTT)})
			continue
		}
		if len(s.Oracle) == 0 {
			continue
		}
		best := deadCost
		for _, o := range s.Oracle {
			best = min(best, o.Cost())
		}
		if best < deadCost {
			pts = append(pts, plotter.XY{X: s.T.Seconds(), Y: ms(best)})
		}
	}
	if len(pts) == 0 {
		return nil
	}
	ln, err := plotter.NewLine(pts)
	if err != nil {
		return err
	}
	ln.Color, ln.Width, ln.Dashes = color.Black, vg.Points(1.5), []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(ln)
	p.Legend.Add("oracle: best backbone then (measured outside pnap)", ln)
	return nil
}
