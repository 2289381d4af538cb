//go:build linux

package bgpbench

import (
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options shape a run.
type Options struct {
	// V4 and V6 are the table every feeder sends.
	V4, V6 []netip.Prefix
	// Flap are the IPv4 prefixes the speaker withdraws and announces again.
	Flap []netip.Prefix
	// FlapRate is the paced flap's rate, prefix changes per second
	// (default 10,000).
	FlapRate float64
	// FlapFor is how long each flap measurement sends (default 5 s).
	FlapFor time.Duration
	// Pnapd is pnapd's binary.
	Pnapd string
	// Poll is how often the receivers are asked for their counts (default
	// 50 ms): the resolution of the convergence time.
	Poll time.Duration
	// Timeout bounds each convergence (default 5 min).
	Timeout time.Duration
	// Receivers are the receivers measured, of Pnapd and BIRD; default
	// both.
	Receivers []string
	// Progress receives a line now and then; nil for none.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.FlapRate == 0 {
		o.FlapRate = 10_000
	}
	if o.FlapFor == 0 {
		o.FlapFor = 5 * time.Second
	}
	if o.Poll == 0 {
		o.Poll = 50 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	if len(o.Receivers) == 0 {
		o.Receivers = []string{Pnapd, BIRD}
	}
}

func (o *Options) progress(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, format+"\n", args...)
	}
}

// The receivers, by the names the report uses.
const (
	Pnapd = "pnapd"
	BIRD  = "bird"
)

// Result is one receiver's figures.
type Result struct {
	Receiver string `json:"receiver"`
	// Target is the routes the receiver holds once converged: every
	// feeder's table, 4 times.
	Target    int  `json:"target_routes"`
	Converged bool `json:"converged"`
	Routes    int  `json:"routes"`
	// ConvergeSec is the time from the first feed session Established
	// (the receiver's own record of it) to the first poll that found
	// every route installed.
	ConvergeSec float64 `json:"converge_seconds"`
	// StartSec is from the receiver's start to that poll.
	StartSec float64 `json:"start_to_converged_seconds"`
	// CPUSec is the receiver's user + system CPU time from its start to
	// that poll.
	CPUSec float64 `json:"cpu_seconds_to_converge"`
	// HWMConverged is VmHWM (peak RSS) once converged, HWMEnd after the
	// flaps; RSSConverged is VmRSS once converged. Bytes.
	HWMConverged int64 `json:"vmhwm_converged_bytes"`
	RSSConverged int64 `json:"vmrss_converged_bytes"`
	HWMEnd       int64 `json:"vmhwm_end_bytes"`
	// TotalLine is what the receiver says it holds, once converged:
	// BIRD's `show route count` Total line, pnapd's FIB prefix counts.
	TotalLine string       `json:"total_line,omitempty"`
	Flaps     []FlapResult `json:"flaps"`
}

// flapMode is one way of flapping.
type flapMode struct {
	name      string
	perUpdate int  // prefixes per UPDATE; 0 as many as fit
	paced     bool // at Options.FlapRate, else as fast as the receiver reads
}

var flapModes = []flapMode{
	{name: "paced", perUpdate: 1, paced: true},
	{name: "packed", perUpdate: 0},
	{name: "single", perUpdate: 1},
}

// FlapResult is one flap measurement of one receiver.
type FlapResult struct {
	Mode      string `json:"mode"`
	PerUpdate int    `json:"prefixes_per_update"` // 0: as many as fit
	// Offered is the paced rate in prefix changes per second; 0 for as fast
	// as the receiver reads.
	Offered float64 `json:"offered_per_second"`
	Sent    uint64  `json:"prefix_changes_sent"`
	// Rate is the prefix changes the receiver took per second while the
	// speaker sent (its first fifth left out); Updates the UPDATEs per
	// second that makes.
	Rate    float64 `json:"prefix_changes_per_second"`
	Updates float64 `json:"updates_per_second"`
	// LagSec is from the speaker's last write to the receiver having
	// counted every change sent.
	LagSec float64 `json:"lag_seconds"`
	// Held is the flapped routes the receiver holds at the end (every
	// cycle ends announcing them all).
	Held int `json:"held_after"`
}

// Run builds the lab and measures pnapd, then the BIRD receiver, one after
// the other against the same feeders, each alone on the CPUs beside them.
// It fails tb when a receiver does not converge or loses flapped routes.
func Run(tb testing.TB, opt Options) []Result {
	tb.Helper()
	opt.defaults()
	l := buildLab(tb, opt)
	opt.progress("  receivers: %s, one after the other; each converges on %d routes (4 feeds × %d), then the speaker flaps %d prefixes",
		strings.Join(opt.Receivers, ", "), l.target(), l.perFeeder, len(opt.Flap))
	var out []Result
	for _, name := range opt.Receivers {
		start := func() receiver { return startPnapd(tb, l, opt.Pnapd) }
		switch name {
		case Pnapd:
		case BIRD:
			start = func() receiver { return startBIRDReceiver(tb, l) }
		default:
			tb.Fatalf("receiver %q: want %s or %s", name, Pnapd, BIRD)
		}
		out = append(out, measure(tb, l, name, start, opt))
	}
	return out
}

// measure starts a receiver, waits for its convergence, flaps, and stops
// it.
func measure(tb testing.TB, l *labLayout, name string, start func() receiver, opt Options) Result {
	tb.Helper()
	res := Result{Receiver: name, Target: l.target()}
	stop := make(chan struct{})
	go l.wakeFeeders(stop)
	stopWaking := sync.OnceFunc(func() { close(stop) })
	defer stopWaking()
	t0 := time.Now()
	r := start()
	defer r.stop()
	s, ok := converge(tb, name, r, res.Target, t0, opt)
	stopWaking()
	if !ok {
		return res
	}
	res.Converged, res.Routes = true, s.Installed
	res.ConvergeSec, res.StartSec = s.At.Sub(s.FirstUp).Seconds(), s.At.Sub(t0).Seconds()
	hwm, rss, cpu, err := procStatus(r.pid())
	if err != nil {
		tb.Errorf("%s: %v", name, err)
	}
	res.HWMConverged, res.RSSConverged, res.CPUSec = hwm, rss, cpu.Seconds()
	res.TotalLine = total(r)
	opt.progress("  %s: converged %.2f s after the first session up (%.2f s after start, %.1f s CPU), VmHWM %.0f MiB; %s",
		name, res.ConvergeSec, res.StartSec, res.CPUSec, mib(hwm), res.TotalLine)

	ss, err := l.speaker.session(r.flapPeer(), time.Minute)
	if err != nil {
		tb.Errorf("%s: %v", name, err)
		return res
	}
	for _, m := range flapModes {
		fr, err := runFlap(r, ss, m, len(opt.Flap), opt)
		if err != nil {
			tb.Errorf("%s: flap %s: %v", name, m.name, err)
			break
		}
		res.Flaps = append(res.Flaps, fr)
		opt.progress("  %s: flap %s (%s): %.0f prefix changes/s, %.0f UPDATEs/s, lag %.3f s", name, m.name, m.describe(fr.Offered), fr.Rate, fr.Updates, fr.LagSec)
	}
	res.HWMEnd, _, _, _ = procStatus(r.pid())
	return res
}

// converge polls r until its feed sessions are up and it holds target
// routes, or opt.Timeout after t0.
func converge(tb testing.TB, name string, r receiver, target int, t0 time.Time, opt Options) (sample, bool) {
	tb.Helper()
	nextLog := time.Now().Add(2 * time.Second)
	for {
		s, err := r.sample()
		if err == nil && s.Up == feeders && s.Installed >= target {
			return s, true
		}
		switch {
		case time.Since(t0) > opt.Timeout:
			tb.Errorf("%s did not converge in %v: %d of %d sessions up, %d of %d routes (last error %v)", name, opt.Timeout, s.Up, feeders, s.Installed, target, err)
			return s, false
		case time.Now().After(nextLog):
			opt.progress("  %s: %d sessions up, %d of %d routes", name, s.Up, s.Installed, target)
			nextLog = nextLog.Add(2 * time.Second)
		}
		time.Sleep(opt.Poll)
	}
}

// total is what the receiver says it holds in all.
func total(r receiver) string {
	switch r := r.(type) {
	case *birdReceiver:
		_, line, err := r.b.routeCount()
		if err != nil {
			return err.Error()
		}
		return "show route count: " + line
	case *pnapdReceiver:
		var st struct {
			V4 int `json:"ipv4_routes"`
			V6 int `json:"ipv6_routes"`
		}
		if err := r.get("/v1/status", &st); err != nil {
			return err.Error()
		}
		return fmt.Sprintf("/v1/status: %d IPv4 + %d IPv6 prefixes in the FIB", st.V4, st.V6)
	}
	return ""
}

func (m flapMode) describe(offered float64) string {
	per := "1 prefix per UPDATE"
	if m.perUpdate == 0 {
		per = "UPDATEs packed full"
	} else if m.perUpdate > 1 {
		per = fmt.Sprintf("%d prefixes per UPDATE", m.perUpdate)
	}
	if m.paced {
		return fmt.Sprintf("paced %.0f/s, %s", offered, per)
	}
	return "as fast as it reads, " + per
}

// runFlap runs one flap measurement on an established speaker session.
func runFlap(r receiver, ss *speakerSession, m flapMode, n int, opt Options) (FlapResult, error) {
	fc, err := ss.encodeCycle(m.perUpdate)
	if err != nil {
		return FlapResult{}, err
	}
	fr := FlapResult{Mode: m.name, PerUpdate: m.perUpdate}
	if m.paced {
		fr.Offered = opt.FlapRate
	}
	// The flap session must be up on the receiver's side too, and quiet.
	base, err := waitSample(r, opt.Timeout, func(s sample) bool { return s.FlapUp })
	if err != nil {
		return fr, fmt.Errorf("flap session not up: %w", err)
	}
	type point struct {
		at time.Time
		n  uint64
	}
	type sent struct {
		n    uint64
		last time.Time
		err  error
	}
	start := time.Now()
	done := make(chan sent, 1)
	go func() {
		n, last, err := ss.flap(fc, fr.Offered, opt.FlapFor)
		done <- sent{n, last, err}
	}()
	var pts []point
	var out sent
	for polling := true; polling; {
		select {
		case out = <-done:
			polling = false
		case <-time.After(opt.Poll):
			if s, err := r.sample(); err == nil {
				pts = append(pts, point{s.At, s.FlapChanges - base.FlapChanges})
			}
		}
	}
	if out.err != nil {
		return fr, out.err
	}
	fr.Sent = out.n
	end, err := waitSample(r, 2*time.Minute, func(s sample) bool { return s.FlapChanges-base.FlapChanges >= out.n })
	if err != nil {
		return fr, fmt.Errorf("%d prefix changes sent, not all counted: %w", out.n, err)
	}
	fr.LagSec = max(0, end.At.Sub(out.last).Seconds())
	if end, err = waitSample(r, 10*time.Second, func(s sample) bool { return s.FlapHeld == n }); err != nil {
		return fr, fmt.Errorf("the flapped routes are not all held after the last announcement: %w", err)
	}
	fr.Held = end.FlapHeld
	// The rate while the speaker sent, its first fifth left out (TCP
	// buffers fill, the receiver's counters start).
	from, to := -1, -1
	for i, p := range pts {
		if from < 0 && p.at.After(start.Add(opt.FlapFor/5)) {
			from = i
		}
		if !p.at.After(out.last) {
			to = i
		}
	}
	if from >= 0 && to > from {
		fr.Rate = float64(pts[to].n-pts[from].n) / pts[to].at.Sub(pts[from].at).Seconds()
	} else {
		fr.Rate = float64(out.n) / end.At.Sub(start).Seconds()
	}
	fr.Updates = fr.Rate * float64(len(fc.ends)) / float64(fc.total)
	return fr, nil
}

// waitSample polls r until ok says yes, at most timeout; it returns that
// sample.
func waitSample(r receiver, timeout time.Duration, ok func(sample) bool) (sample, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := r.sample()
		if err == nil && ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("last: %+v", s)
			}
			return s, fmt.Errorf("not within %v: %w", timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
