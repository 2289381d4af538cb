//go:build linux

package steerlab

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/emu"
)

// Scenario is one situation pnap is judged in: backbones as they start,
// the shifts of the run, and how long it lasts.
type Scenario struct {
	Name   string
	About  string // one line: what happens and what pnap should do
	Delays []time.Duration
	Jitter time.Duration
	Shifts []Shift
	Total  time.Duration
	// CommitMbps and BulkMbps as in Options.
	CommitMbps []float64
	BulkMbps   float64
	// Dense, if not 0, makes this the scale scenario (see scale.go): that
	// many prefixes, each /24 of them with its own delay on every backbone
	// (drawn from Seed) on top of Delays, a quarter of one backbone's
	// redrawn every ShiftEvery; PingRate echoes a second carry the
	// customer's traffic.
	Dense      int
	Seed       uint64
	ShiftEvery time.Duration
	PingRate   int
	// BGP has the backbones' routers announce the prefixes over BGP (see
	// Options.BGP), and the shifts' losses spare the routers themselves.
	BGP bool
}

// Suite is the scenarios of `make scenarios`, in the order they run. Every
// lab sends its answers home through bb-0 (see Shift), which carries the
// customer's prefixes by default (BGP's choice: all paths are equally long
// here, so preference decides).
func Suite() []Scenario {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	return []Scenario{
		{Name: "steady-jitter", About: "backbones at 20, 30 and 45 ms, each ±10 ms of jitter, nothing changes: pnap should never move",
			Delays: []time.Duration{ms(20), ms(30), ms(45)}, Jitter: ms(10), Total: s(60)},
		{Name: "degrade-recover", About: "bb-0 (20 ms) degrades to 150 ms and 5 % loss at 15 s and recovers at 40 s: off it and back",
			Delays: []time.Duration{ms(20), ms(45), ms(80)}, Total: s(60), Shifts: []Shift{
				{At: s(15), Index: 0, Delay: ms(150), Loss: 0.05, Say: "bb-0 degrades: 20 -> 150 ms, 5 % loss"},
				{At: s(40), Index: 0, Delay: ms(20), Say: "bb-0 recovers: 20 ms"},
			}},
		// bb-1 at 26 ms, not 25: at 25 the way back won exactly the
		// optimizer's 5 ms min_improvement_ms, and whether a prefix
		// returned was a coin flip on 0.05 ms of RTT noise (8 at once,
		// the rest over 11 s, one never), which is the hysteresis' edge
		// rather than the brownout this scenario is about.
		{Name: "brownout", About: "bb-0 (20 ms) starts losing 5 % at 15 s, its latency unchanged, until 40 s; bb-1 is a clean 26 ms",
			Delays: []time.Duration{ms(20), ms(26), ms(80)}, Total: s(60), Shifts: []Shift{
				{At: s(15), Index: 0, Delay: ms(20), Loss: 0.05, Say: "bb-0 browns out: 5 % loss"},
				{At: s(40), Index: 0, Delay: ms(20), Say: "bb-0 is clean again"},
			}},
		{Name: "blackout", About: "bb-0 (20 ms) drops everything sent into it from 15 s to 40 s: off it within a second, no TCP connection broken",
			Delays: []time.Duration{ms(20), ms(45), ms(80)}, Total: s(60), Shifts: []Shift{
				{At: s(15), Index: 0, Delay: ms(20), Loss: 1, Say: "bb-0 blacks out"},
				{At: s(40), Index: 0, Delay: ms(20), Say: "bb-0 is back"},
			}},
		{Name: "grey-failure", About: "bb-0 (20 ms) drops everything past its router from 15 s to 40 s while its BGP session stays up and keeps announcing every prefix (routes from BIRD, not static): off it within a second on measurements alone, no TCP connection broken",
			Delays: []time.Duration{ms(20), ms(45), ms(80)}, Total: s(60), BGP: true, Shifts: []Shift{
				{At: s(15), Index: 0, Delay: ms(20), Loss: 1, Say: "bb-0 fails past its router, BGP up"},
				{At: s(40), Index: 0, Delay: ms(20), Say: "bb-0 forwards again"},
			}},
		{Name: "asymmetric", About: "only the way back degrades (bb-0's, which every answer takes) by 60 ms from 15 s to 40 s: no outbound choice helps, so pnap should not move",
			Delays: []time.Duration{ms(20), ms(45), ms(80)}, Total: s(60), Shifts: []Shift{
				{At: s(15), Index: 0, Delay: ms(20), Return: emu.Params{Delay: ms(60)}, Say: "bb-0's way back: +60 ms"},
				{At: s(40), Index: 0, Delay: ms(20), Say: "bb-0's way back recovers"},
			}},
		{Name: "commit", About: "bb-1 is the fastest (20 ms against bb-0's 45) but commits to 5 Mbit/s of the 16 the prefixes send: pnap fills it and no more",
			Delays: []time.Duration{ms(45), ms(20), ms(80)}, Total: s(60), CommitMbps: []float64{0, 5, 0}, BulkMbps: 1},
		{Name: "scale", About: "10,000 prefixes over 4 backbones, each /24 of them 10-70 ms away on each backbone, a quarter of one backbone's /24s redrawn every 5 s; ICMP echoes at 2,000/s, Zipf-skewed (the busiest tenth of the prefixes sends 84 %): pnap follows the traffic",
			Delays: []time.Duration{ms(2), ms(2), ms(2), ms(2)}, Jitter: ms(2), Total: s(60), Dense: 10000, Seed: 1, ShiftEvery: s(5), PingRate: 2000},
	}
}

// Row is one scenario's outcome, as bench/results/scenarios.json lists it.
// Times are in milliseconds and seconds; a null resteer_90_s means the
// best backbone never changed, -1 that pnap did not follow it by the end.
// Under a commit, the oracle fills the fastest backbone only as far as its
// commit goes, and a backbone that cannot carry everything is no static
// choice.
type Row struct {
	Name            string  `json:"name"`
	Mode            string  `json:"mode"` // "active" or "passive" probing
	PnapMeanRTTms   float64 `json:"pnap_mean_rtt_ms"`
	PnapP95RTTms    float64 `json:"pnap_p95_rtt_ms"`
	OracleMeanRTTms float64 `json:"oracle_mean_rtt_ms"`
	// PnapChosenMeanRTTms is pnap's choices measured by the oracle's
	// instrument (Result.ChosenRTT); VsOraclePct compares it with the
	// oracle, FlowsVsOraclePct the flows' own RTT.
	PnapChosenMeanRTTms float64            `json:"pnap_chosen_mean_rtt_ms"`
	FlowsVsOraclePct    float64            `json:"flows_vs_oracle_pct"`
	BestStaticMeanRTTms float64            `json:"best_static_mean_rtt_ms"`
	BestStatic          string             `json:"best_static"`
	BGPDefaultMeanRTTms float64            `json:"bgp_default_mean_rtt_ms"`
	StaticMeanRTTms     map[string]float64 `json:"static_mean_rtt_ms"`
	Resteer90s          *float64           `json:"resteer_90_s"`
	// Resteer90Each is every shift's, in order: null where the best
	// backbone did not change, -1 where pnap did not follow by the end.
	Resteer90Each []*float64 `json:"resteer_90_each_s"`
	// ResteerTraffic90s is, in the scale scenario, the worst shift's time
	// until 90 % of the affected prefixes' traffic was on the new best.
	ResteerTraffic90s  *float64 `json:"resteer_90_traffic_s,omitempty"`
	Flaps              int      `json:"flaps"`
	Moves              int      `json:"moves"` // selection changes made, all told
	TCPBroken          int64    `json:"tcp_broken"`
	UDPLossPct         float64  `json:"udp_loss_pct"`
	CommitOvershootPct *float64 `json:"commit_overshoot_pct"`
	// BGPSessionDrops, in a scenario over BGP, is how often a backbone's
	// session went down during the run.
	BGPSessionDrops *int    `json:"bgp_session_drops,omitempty"`
	VsOraclePct     float64 `json:"vs_oracle_pct"`      // pnap's choices over the oracle's, less 1, one instrument
	VsBestStaticPct float64 `json:"vs_best_static_pct"` // pnap's choices over the best static's, less 1
}

// RowOf sums up r, a run of sc in mode, on l.
func RowOf(sc Scenario, mode string, l *Lab, r Result) Row {
	row := Row{Name: sc.Name, Mode: mode, PnapMeanRTTms: ms(r.MeanRTT), PnapP95RTTms: ms(r.P95RTT), OracleMeanRTTms: ms(r.OracleRTT),
		StaticMeanRTTms: map[string]float64{}, Flaps: r.Flaps(), Moves: r.Resteers, TCPBroken: r.Broken,
		UDPLossPct: 100 * float64(r.UDPLost) / float64(max(r.UDPOf, 1))}
	row.BestStaticMeanRTTms = math.Inf(1)
	for i, b := range l.Backbone {
		v := ms(r.StaticRTT[b])
		row.StaticMeanRTTms[b] = v
		// A backbone whose commit cannot carry every prefix is no static
		// choice at all.
		feasible := i >= len(sc.CommitMbps) || sc.CommitMbps[i] <= 0 || sc.CommitMbps[i] >= sc.BulkMbps*float64(len(l.Prefix))
		if feasible && v < row.BestStaticMeanRTTms {
			row.BestStaticMeanRTTms, row.BestStatic = v, b
		}
	}
	row.BGPDefaultMeanRTTms = row.StaticMeanRTTms[l.Backbone[0]]
	if r.SessionDrops >= 0 && sc.BGP {
		row.BGPSessionDrops = &r.SessionDrops
	}
	for _, a := range r.ResteerAfter {
		if a == 0 {
			row.Resteer90Each = append(row.Resteer90Each, nil)
			continue
		}
		v := a.Seconds()
		if a < 0 {
			v = -1
		}
		row.Resteer90Each = append(row.Resteer90Each, &v)
		if row.Resteer90s == nil || v < 0 || (*row.Resteer90s >= 0 && v > *row.Resteer90s) {
			row.Resteer90s = &v
		}
	}
	for _, a := range r.ResteerTraffic {
		v := a.Seconds()
		if a < 0 {
			v = -1
		}
		if row.ResteerTraffic90s == nil || v < 0 || (*row.ResteerTraffic90s >= 0 && v > *row.ResteerTraffic90s) {
			row.ResteerTraffic90s = &v
		}
	}
	for _, v := range r.CommitOvershoot {
		v = math.Round(10*v) / 10
		if row.CommitOvershootPct == nil || v > *row.CommitOvershootPct {
			row.CommitOvershootPct = &v
		}
	}
	row.PnapChosenMeanRTTms = ms(r.ChosenRTT)
	row.VsOraclePct = pct(row.PnapChosenMeanRTTms, row.OracleMeanRTTms)
	row.FlowsVsOraclePct = pct(row.PnapMeanRTTms, row.OracleMeanRTTms)
	row.VsBestStaticPct = pct(row.PnapChosenMeanRTTms, row.BestStaticMeanRTTms)
	return row
}

func pct(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return math.Round(1000*(a/b-1)) / 10
}

// RunScenario builds a lab for sc (probing actively or not), runs it, and
// returns its result and lab. Lines go to w as the run goes.
func RunScenario(tb testing.TB, sc Scenario, pnapd string, passive bool, w io.Writer) (Result, *Lab) {
	tb.Helper()
	if sc.Dense > 0 {
		return runScale(tb, sc, pnapd, passive, w)
	}
	// Every forwarded packet is a traffic sample: the quietest prefixes
	// send 3 or 4 packets a second, which 1 in 64 (the default) notices
	// once in 16 s, and a prefix not yet noticed is not probed: it sat on
	// a browning-out backbone for seconds after the others had left.
	l := Build(tb, Options{
		Prefixes: 8, Delays: sc.Delays, Jitter: sc.Jitter, Pnapd: pnapd, Passive: passive, CommitMbps: sc.CommitMbps, BulkMbps: sc.BulkMbps,
		Window: 2 * time.Second, ProbeInterval: 250 * time.Millisecond, OptimizerInterval: 250 * time.Millisecond, HoldDown: 3 * time.Second,
		TrafficSampleEvery: 1, BGP: sc.BGP,
	})
	fmt.Fprintf(w, "%s: %s\n", sc.Name, sc.About)
	return Run(tb, l, sc.Shifts, sc.Total, w), l
}

// Markdown is the rows as bench/results/scenarios.md shows them: one
// table of every scenario and mode, then per scenario what each choice
// would have given.
func Markdown(rows []Row, scenarios []Scenario) string {
	var b strings.Builder
	b.WriteString("| scenario | probing | flows via pnap, mean (p95) ms | pnap's choices ms | oracle ms | choices vs oracle | flows vs oracle | best static ms | choices vs best static | BGP default ms | re-steer 90 % s | flaps | TCP broken | UDP loss % | commit overshoot % |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %.1f (%.1f) | %.1f | %.1f | %+.1f %% | %+.1f %% | %.1f (%s) | %+.1f %% | %.1f | %s | %d | %d | %.2f | %s |\n",
			r.Name, r.Mode, r.PnapMeanRTTms, r.PnapP95RTTms, r.PnapChosenMeanRTTms, r.OracleMeanRTTms, r.VsOraclePct, r.FlowsVsOraclePct, r.BestStaticMeanRTTms, r.BestStatic,
			r.VsBestStaticPct, r.BGPDefaultMeanRTTms, optional(r.Resteer90s, "%.1f"), r.Flaps, r.TCPBroken, r.UDPLossPct, optional(r.CommitOvershootPct, "%.1f"))
	}
	for _, sc := range scenarios {
		fmt.Fprintf(&b, "\n## %s\n\n%s.\n\n| probing | pnap's choices | oracle |", sc.Name, sc.About)
		var names []string
		for _, r := range rows {
			if r.Name == sc.Name {
				for n := range r.StaticMeanRTTms {
					names = append(names, n)
				}
				break
			}
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(&b, " %s static |", n)
		}
		b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(names)) + "\n")
		for _, r := range rows {
			if r.Name != sc.Name {
				continue
			}
			fmt.Fprintf(&b, "| %s | %.1f ms | %.1f ms |", r.Mode, r.PnapChosenMeanRTTms, r.OracleMeanRTTms)
			for _, n := range names {
				fmt.Fprintf(&b, " %.1f ms |", r.StaticMeanRTTms[n])
			}
			b.WriteString("\n")
		}
		for _, r := range rows {
			if r.Name == sc.Name && r.BGPSessionDrops != nil {
				fmt.Fprintf(&b, "\nBGP sessions dropped during the run (%s): %d.\n", r.Mode, *r.BGPSessionDrops)
			}
		}
		fmt.Fprintf(&b, "\n![%s](scenario-%s.png)\n", sc.Name, sc.Name)
	}
	return b.String()
}

// Optional is v as the tables show it: "—" for none, "never" for -1.
func Optional(v *float64) string { return optional(v, "%.2f") }

func optional(v *float64, format string) string {
	if v == nil {
		return "—"
	}
	if *v < 0 {
		return "never"
	}
	return fmt.Sprintf(format, *v)
}
