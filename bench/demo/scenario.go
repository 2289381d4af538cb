//go:build linux

package main

import (
	"fmt"
	"image/color"
	"io"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/emu"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Shift is a change of the emulated backbones at some time into the run.
type Shift struct {
	At    time.Duration
	Index int // backbone
	Delay time.Duration
	Loss  float64
	Say   string
}

// Second is what the demo saw in one second of the run.
type Second struct {
	T        time.Duration
	RTT      map[string]float64 // pnapd's measured median per backbone
	Carried  map[string]int     // served prefixes per backbone
	FlowsRTT time.Duration      // customer's mean RTT that second
	Resteers int
}

// Result sums up a run.
type Result struct {
	Seconds        []Second
	MeanRTT        time.Duration            // the customer's flows
	StaticRTT      map[string]time.Duration // had every flow stayed on one backbone
	OracleRTT      time.Duration            // the best backbone at every moment
	Resteers       int
	ResteerAfter   []time.Duration // per shift: until ≥ 90 % of prefixes were on the new best; -1 never
	Broken         int64
	UDPLost, UDPOf int64
}

// Run drives lab through the shifts for total, printing a line a second to
// w, and returns what happened.
func Run(tb testing.TB, l *Lab, shifts []Shift, total time.Duration, w io.Writer) Result {
	tb.Helper()
	delays := append([]time.Duration(nil), l.Opt.Delays...)
	type change struct {
		at     time.Time
		delays []time.Duration
	}
	flows := StartFlows(tb, l.X.Source, l.Dests)
	start := time.Now()
	history := []change{{start, append([]time.Duration(nil), delays...)}}
	var res Result
	res.ResteerAfter = make([]time.Duration, len(shifts))
	pending := map[int]time.Time{} // shift index -> when applied, until re-steered
	next := 0
	say := "start"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastLine := time.Duration(-1)
	for now := time.Now(); now.Sub(start) < total; now = <-tick.C {
		el := now.Sub(start)
		for next < len(shifts) && el >= shifts[next].At {
			s := shifts[next]
			bb := l.X.Backbones[s.Index]
			if err := bb.Emu.Set(emu.Params{Delay: s.Delay, Loss: s.Loss}, emu.Params{}); err != nil {
				tb.Fatal(err)
			}
			delays[s.Index] = s.Delay
			history = append(history, change{time.Now(), append([]time.Duration(nil), delays...)})
			pending[next] = time.Now()
			say = s.Say
			fmt.Fprintf(w, "  %5.1fs  >>> %s\n", el.Seconds(), s.Say)
			next++
		}
		sel, err := l.Selection()
		if err != nil {
			tb.Fatal(err)
		}
		carried := map[string]int{}
		for _, b := range sel {
			carried[b]++
		}
		best := l.Backbone[argmin(delays)]
		for i, at := range pending {
			if carried[best] >= len(l.Prefix)*9/10 {
				res.ResteerAfter[i] = time.Since(at)
				delete(pending, i)
			}
		}
		if sec := el.Truncate(time.Second); sec != lastLine {
			lastLine = sec
			rtt, err := l.BackboneRTT()
			if err != nil {
				tb.Fatal(err)
			}
			n, _ := l.Decisions()
			fm, _ := flows.MeanRTT(now.Add(-time.Second), now)
			s := Second{T: el, RTT: rtt, Carried: carried, FlowsRTT: fm, Resteers: n}
			res.Seconds = append(res.Seconds, s)
			var parts []string
			for _, b := range l.Backbone {
				parts = append(parts, fmt.Sprintf("%s %6.1f ms %2d/%d", b, rtt[b], carried[b], len(l.Prefix)))
			}
			fmt.Fprintf(w, "  %5.1fs  %s | flows %6.1f ms | re-steers %3d | %s\n", el.Seconds(), strings.Join(parts, " | "), ms(fm), n, say)
		}
	}
	end := time.Now()
	flows.Stop()
	for i := range shifts {
		if _, ok := pending[i]; ok {
			res.ResteerAfter[i] = -1
		}
	}

	// What the flows saw, against each static choice and the oracle, from
	// the emulated delays in force at each exchange.
	delayAt := func(t time.Time) []time.Duration {
		d := history[0].delays
		for _, c := range history {
			if !t.Before(c.at) {
				d = c.delays
			}
		}
		return d
	}
	res.StaticRTT = map[string]time.Duration{}
	var sum, oracle time.Duration
	static := make([]time.Duration, len(l.Backbone))
	rtts := flows.RTTs()
	for _, r := range rtts {
		d := delayAt(r.At)
		sum += r.RTT
		oracle += d[argmin(d)]
		for i := range static {
			static[i] += d[i]
		}
	}
	if n := time.Duration(len(rtts)); n > 0 {
		res.MeanRTT, res.OracleRTT = sum/n, oracle/n
		for i, b := range l.Backbone {
			res.StaticRTT[b] = static[i] / n
		}
	}
	res.Resteers, _ = l.Decisions()
	res.Broken = flows.Broken()
	res.UDPLost, res.UDPOf = flows.UDPLost()
	_ = end
	return res
}

func argmin(d []time.Duration) int {
	best := 0
	for i := range d {
		if d[i] < d[best] {
			best = i
		}
	}
	return best
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// Summary prints the result.
func (r Result) Summary(w io.Writer, l *Lab, shifts []Shift) {
	fmt.Fprintf(w, "\nSummary\n")
	fmt.Fprintf(w, "  customer flows, mean RTT:     %6.1f ms (pnap)\n", ms(r.MeanRTT))
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
	p := plot.New()
	p.Title.Text = "pnap demo: RTT per backbone (measured by pnapd) and what the customer got"
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
	return p.Save(9*vg.Inch, 4.5*vg.Inch, path)
}
