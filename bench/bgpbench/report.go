//go:build linux

package bgpbench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Meta says where and how a report was made.
type Meta struct {
	Date     time.Time `json:"date"`
	Machine  string    `json:"machine"`
	Kernel   string    `json:"kernel"`
	Go       string    `json:"go"`
	Command  string    `json:"command"`
	Table    string    `json:"table"` // what each feeder sends
	LoadAvg  string    `json:"loadavg_before"`
	Duration string    `json:"duration"`
}

// Goals of issue 12.
const (
	goalConverge = 1.0     // pnapd's convergence time ÷ BIRD's, at most
	goalRSS      = 1.0     // pnapd's peak RSS ÷ BIRD's, at most
	goalRate     = 100_000 // prefix changes per second pnapd holds, at least
)

// row is one line of the table: a figure for each receiver.
type row struct {
	what   string
	pnapd  float64
	bird   float64
	format string // for the figures
	ratio  bool   // print pnapd ÷ BIRD
	goal   string
	met    func(p, b float64) bool
	vsBIRD bool // the goal compares with BIRD's figure
}

func rows(res []Result) []row {
	by := map[string]Result{}
	for _, r := range res {
		by[r.Receiver] = r
	}
	p, b := by[Pnapd], by[BIRD]
	rs := []row{
		{what: "routes installed (4 feeds)", pnapd: float64(p.Routes), bird: float64(b.Routes), format: "%.0f"},
		{what: "convergence: first session up → last route installed (s)", pnapd: p.ConvergeSec, bird: b.ConvergeSec, format: "%.2f", ratio: true,
			goal: "≤ 1.00× BIRD", met: func(p, b float64) bool { return p <= goalConverge*b }, vsBIRD: true},
		{what: "receiver start → converged (s)", pnapd: p.StartSec, bird: b.StartSec, format: "%.2f", ratio: true},
		{what: "CPU time to converge (s)", pnapd: p.CPUSec, bird: b.CPUSec, format: "%.2f", ratio: true},
		{what: "peak RSS with 4 full feeds, VmHWM (MiB)", pnapd: mib(p.HWMConverged), bird: mib(b.HWMConverged), format: "%.0f", ratio: true,
			goal: "≤ 1.00× BIRD", met: func(p, b float64) bool { return p <= goalRSS*b }, vsBIRD: true},
		{what: "RSS once converged, VmRSS (MiB)", pnapd: mib(p.RSSConverged), bird: mib(b.RSSConverged), format: "%.0f", ratio: true},
		{what: "peak RSS after the flaps, VmHWM (MiB)", pnapd: mib(p.HWMEnd), bird: mib(b.HWMEnd), format: "%.0f", ratio: true},
	}
	for i, m := range flapModes {
		var pf, bf FlapResult
		if i < len(p.Flaps) {
			pf = p.Flaps[i]
		}
		if i < len(b.Flaps) {
			bf = b.Flaps[i]
		}
		offered := max(pf.Offered, bf.Offered)
		r := row{what: fmt.Sprintf("flap %s (%s): prefix changes/s", m.name, m.describe(offered)), pnapd: pf.Rate, bird: bf.Rate, format: "%.0f", ratio: true}
		switch {
		case m.paced:
			r.goal = fmt.Sprintf("keeps up (%.0f/s)", offered)
			r.met = func(p, _ float64) bool { return p >= 0.95*offered }
		case m.perUpdate == 0:
			r.goal = fmt.Sprintf("≥ %d/s", goalRate)
			r.met = func(p, _ float64) bool { return p >= goalRate }
		}
		rs = append(rs, r)
		if m.perUpdate != 1 {
			rs = append(rs, row{what: fmt.Sprintf("flap %s: UPDATEs/s", m.name), pnapd: pf.Updates, bird: bf.Updates, format: "%.0f", ratio: true})
		}
		rs = append(rs, row{what: fmt.Sprintf("flap %s: lag after the last UPDATE (s)", m.name), pnapd: pf.LagSec, bird: bf.LagSec, format: "%.3f"})
	}
	return rs
}

// WriteTable writes the figures as one Markdown table: both receivers,
// pnapd ÷ BIRD, the goal and whether pnapd meets it. A receiver
// not measured (or not converged) shows "–".
func WriteTable(w io.Writer, res []Result) {
	var havePnapd, haveBIRD bool
	for _, r := range res {
		havePnapd = havePnapd || r.Receiver == Pnapd && r.Converged
		haveBIRD = haveBIRD || r.Receiver == BIRD && r.Converged
	}
	figure := func(have bool, format string, v float64) string {
		if !have {
			return "–"
		}
		return fmt.Sprintf(format, v)
	}
	fmt.Fprintln(w, "| measure | pnapd | BIRD | pnapd ÷ BIRD | goal | pnapd |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---|")
	for _, r := range rows(res) {
		ratio := ""
		if r.ratio && havePnapd && haveBIRD && r.bird > 0 {
			ratio = fmt.Sprintf("%.2f", r.pnapd/r.bird)
		}
		verdict := ""
		if r.met != nil && havePnapd && (haveBIRD || !r.vsBIRD) {
			verdict = "missed"
			if r.met(r.pnapd, r.bird) {
				verdict = "met"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.what, figure(havePnapd, r.format, r.pnapd), figure(haveBIRD, r.format, r.bird), ratio, r.goal, verdict)
	}
}

// WriteMarkdown writes the report: how it was made, the table, what was
// measured how.
func WriteMarkdown(path string, meta Meta, res []Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# BGP: pnapd and BIRD receiving the same feeds\n\n")
	fmt.Fprintf(&b, "- Date: %s; took %s\n", meta.Date.Format("2006-01-02 15:04 UTC"), meta.Duration)
	fmt.Fprintf(&b, "- Machine: %s; kernel %s; %s\n", meta.Machine, meta.Kernel, meta.Go)
	fmt.Fprintf(&b, "- Command: `%s`\n", meta.Command)
	fmt.Fprintf(&b, "- Load average before the run: %s\n", meta.LoadAvg)
	fmt.Fprintf(&b, "- Each feeder sends: %s\n\n", meta.Table)
	b.WriteString(`Lab: 4 BIRD 2 feeders, each in a backbone namespace, hold the table as static routes and send
it over eBGP (one session per feeder carrying IPv4 and IPv6) to pnapd, which runs in the device
under test's namespace with an AF_XDP port per backbone, its 4 backbones learning their routes
from those sessions (import policy opened to the whole table), and to a BIRD receiver in a
namespace of its own (import all, no kernel protocol: its table is the counterpart of pnapd's
FIB). The receivers run one after the other, each alone beside the same running feeders; a fifth
session comes from a test speaker made of GoBGP's message codec, which flaps 10,000 IPv4 prefixes
of the table (withdraw all, announce all, repeated).

- Convergence: from the first feed session Established, as the receiver records it (pnapd:
  /v1/bgp uptime; BIRD: ` + "`show protocols`" + ` since, in ms), to the first poll (every 50 ms) that
  finds every route installed (pnapd: the feed sessions' held counts, routes in the FIB; BIRD:
  the imported counts of its feed channels, routes in its table).
- Peak RSS: VmHWM of the receiver's process once converged, and again after the flaps.
- Flap rate: prefix changes the receiver counted per second (pnapd: /v1/bgp received +
  withdrawn; BIRD: import updates + withdraws received) while the speaker sent, the first fifth
  left out. "Paced" sends at a fixed rate; the others as fast as the receiver reads (TCP holds
  the speaker back), with UPDATEs packed full (about 1,000 prefixes each) or one prefix per
  UPDATE. Lag: from the speaker's last write until the receiver had counted every change.

`)
	WriteTable(&b, res)
	b.WriteString("\nWhat each receiver said it held once converged:\n\n")
	for _, r := range res {
		fmt.Fprintf(&b, "- %s: %s\n", r.Receiver, r.TotalLine)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// WriteJSON writes the meta and the results.
func WriteJSON(path string, meta Meta, res []Result) error {
	b, err := json.MarshalIndent(struct {
		Meta    Meta     `json:"meta"`
		Results []Result `json:"results"`
	}{meta, res}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
