package rfc2544

import (
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// Meta says where and how a report was made.
type Meta struct {
	Date     time.Time
	Machine  string // CPU model and count
	Kernel   string
	Go       string
	Command  string
	Trial    time.Duration
	Steps    int
	Loss     float64 // tolerance
	Routes   string  // what the backbones held
	Duration time.Duration
}

// MachineMeta fills in the machine, kernel and Go version.
func MachineMeta() Meta {
	m := Meta{Date: time.Now().UTC(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	m.Machine = fmt.Sprintf("%s, %d CPUs", model, runtime.NumCPU())
	return m
}

// WriteJSON writes the rows as rfc2544.json's list.
func WriteJSON(path string, rows []Row) error {
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// key identifies a row's place in the tables: family and size.
type key struct {
	family string
	size   int
	imix   bool
}

func byKey(rows []Row) (map[key]map[string]Row, []key, []string) {
	m := map[key]map[string]Row{}
	var keys []key
	var fwds []string
	seenF := map[string]bool{}
	for _, r := range rows {
		k := key{r.Family, r.FrameBytes, r.IMIX}
		if m[k] == nil {
			m[k] = map[string]Row{}
			keys = append(keys, k)
		}
		m[k][r.Forwarder] = r
		if !seenF[r.Forwarder] {
			seenF[r.Forwarder] = true
			fwds = append(fwds, r.Forwarder)
		}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		if keys[i].family != keys[j].family {
			return keys[i].family < keys[j].family
		}
		if keys[i].imix != keys[j].imix {
			return !keys[i].imix
		}
		return keys[i].size < keys[j].size
	})
	return m, keys, fwds
}

// WriteMarkdown writes the report: how it was made, the throughput and
// latency table, pnap's ratios to each peer, what arrived when flooded and
// at peak, the frames that took the wrong backbone, and the plots (written
// next to it by WritePlots).
func WriteMarkdown(path string, meta Meta, rows []Row, plots []string) error {
	var b strings.Builder
	m, keys, fwds := byKey(rows)
	writeMethod(&b, meta)
	writeThroughput(&b, m, keys, fwds)
	writeTable(&b, "Latency at the zero-loss rate, p50 / p99 (µs, one way)", "", m, keys, fwds,
		func(r Row) string { return fmt.Sprintf("%.0f / %.0f", r.P50us, r.P99us) })
	writeTable(&b, "Latency at half the kernel's zero-loss rate, p50 / p99 (µs, one way)", "Every forwarder under the same load: half of what Linux forwarding carried without loss at that family and size, in this run.", m, keys, fwds,
		func(r Row) string { return fmt.Sprintf("%.0f / %.0f", r.HalfP50us, r.HalfP99us) })
	writeHalfRatios(&b, m, keys)
	writeTable(&b, "Flooded (generator unpaced), frames/s delivered", "", m, keys, fwds,
		func(r Row) string { return fmt.Sprintf("%.0f", r.FloodPPS) })
	writeTable(&b, "Peak, frames/s delivered", "The most delivered per second in any trial of the search or the flood, whatever its loss.", m, keys, fwds,
		func(r Row) string { return fmt.Sprintf("%.0f", r.PeakPPS) })
	writeTable(&b, "Flood ÷ peak", "What a forwarder delivers when flooded over the most it delivered at any offered load: 1 means it holds its peak under overload, well below 1 that it livelocks.", m, keys, fwds,
		func(r Row) string {
			if r.PeakPPS <= 0 {
				return "–"
			}
			return fmt.Sprintf("%.2f", r.FloodPPS/r.PeakPPS)
		})
	writeTable(&b, "Frames on the wrong backbone", "Summed over every trial of the row (the flood, the search's trials and their reruns; not the warm-up); each also counts as lost. Anything but 0 is a forwarding bug.", m, keys, fwds,
		func(r Row) string { return fmt.Sprint(r.WrongPath) })
	if len(plots) > 0 {
		fmt.Fprintf(&b, "\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// writeHalfRatios writes pnap's latency over the kernel's at half the
// kernel's zero-loss rate.
func writeHalfRatios(b *strings.Builder, m map[key]map[string]Row, keys []key) {
	fmt.Fprintf(b, "\n## pnap ÷ kernel latency at half the kernel's zero-loss rate\n\n| family | frame | offered pps | p50 | p99 |\n|---|---|---:|---:|---:|\n")
	for _, k := range keys {
		p, okp := m[k][Pnap]
		l, okl := m[k][Kernel]
		if !okp || !okl || l.HalfP50us <= 0 || l.HalfP99us <= 0 {
			continue
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %.2f | %.2f |\n", p.Family, sizeName(p), l.HalfKernelPPS, p.HalfP50us/l.HalfP50us, p.HalfP99us/l.HalfP99us)
	}
}

// writeMethod writes the report's head: when, where, how.
func writeMethod(b *strings.Builder, meta Meta) {
	fmt.Fprintf(b, "# RFC 2544 throughput and latency\n\n")
	fmt.Fprintf(b, "- Date: %s; took %v\n", meta.Date.Format("2006-01-02 15:04 UTC"), meta.Duration.Round(time.Second))
	fmt.Fprintf(b, "- Machine: %s; kernel %s; %s\n", meta.Machine, meta.Kernel, meta.Go)
	fmt.Fprintf(b, "- Command: `%s`\n", meta.Command)
	fmt.Fprintf(b, "- Topology: generator namespace → device under test → 4 backbone namespaces, one-queue veths; the generator (XDP live frames, bench/traffic) on CPU 0, the forwarder and its receive NAPI thread on CPU 1; receivers are XDP programs on the backbones' ends counting sequence numbers, one-way latency and frames that arrived on the wrong backbone.\n")
	fmt.Fprintf(b, "- Routes: %s\n", meta.Routes)
	fmt.Fprintf(b, "- Paths: the backbones share the routes out, the k-th distinct prefix on backbone k mod 4, so pnap and the kernel spread the destinations over all four. Each frame carries the backbone where it must arrive: the one holding its destination's longest matching prefix across all backbones (computed by the harness with gaissmai/bart), or backbone 0 for afxdp-bounce and xdp-redirect, which look nothing up and send everything there by design. A frame that arrives elsewhere counts as lost.\n")
	fmt.Fprintf(b, "- Search: the rate doubles from 25 kpps until a trial fails, then %d halvings between the best pass and the first failure; trials of %v; a trial passes with at most %.2g %% loss, and a trial that lost less than 2 %% runs once more (this VM stalls its vCPUs for 1–5 ms several times a second, and one stall overflows the 256-frame veth rings whoever forwards). Rates are what the generator achieved in the best passing trial. (Climbing from below matters: a user-space forwarder flooded beyond its rate livelocks and carries far less than its zero-loss rate, see flood ÷ peak.)\n\n", meta.Steps, meta.Trial, meta.Loss*100)
	fmt.Fprintf(b, "Forwarders: **pnap** (pnapd, AF_XDP, full FIB lookup, TTL and checksum, MAC rewrite); **kernel** (Linux forwarding with the same routes loaded); **afxdp-bounce** (Go AF_XDP port to port through pnap's ports, no lookup, MAC rewrite only: the ceiling of Go + AF_XDP here); **xdp-redirect** (native XDP redirect in the kernel, no lookup: the ceiling of the path).\n\n")
}

// writeThroughput writes the zero-loss table with pnap's ratio to each peer.
func writeThroughput(b *strings.Builder, m map[key]map[string]Row, keys []key, fwds []string) {
	fmt.Fprintf(b, "## Zero-loss throughput (frames/s) and pnap's ratio to each peer\n\n| family | frame | ")
	for _, f := range fwds {
		fmt.Fprintf(b, "%s | ", f)
	}
	var peers []string
	for _, f := range fwds {
		if f != Pnap {
			peers = append(peers, f)
		}
	}
	for _, p := range peers {
		fmt.Fprintf(b, "pnap ÷ %s | ", p)
	}
	fmt.Fprintf(b, "\n|---|---|%s%s\n", strings.Repeat("---:|", len(fwds)), strings.Repeat("---:|", len(peers)))
	for _, k := range keys {
		fmt.Fprintf(b, "| %s | %s | ", k.family, sizeName(Row{FrameBytes: k.size, IMIX: k.imix}))
		for _, f := range fwds {
			fmt.Fprintf(b, "%s | ", cell(m[k], f, func(r Row) string { return fmt.Sprintf("%.0f", r.ZeroLossPPS) }))
		}
		for _, p := range peers {
			pn, okp := m[k][Pnap]
			pr, okr := m[k][p]
			if okp && okr && pr.ZeroLossPPS > 0 {
				fmt.Fprintf(b, "%.2f | ", pn.ZeroLossPPS/pr.ZeroLossPPS)
			} else {
				fmt.Fprintf(b, "– | ")
			}
		}
		fmt.Fprintf(b, "\n")
	}
}

// writeTable writes a section with one row per family and size and one
// column per forwarder, each cell format of that forwarder's row.
func writeTable(b *strings.Builder, title, note string, m map[key]map[string]Row, keys []key, fwds []string, format func(Row) string) {
	fmt.Fprintf(b, "\n## %s\n\n", title)
	if note != "" {
		fmt.Fprintf(b, "%s\n\n", note)
	}
	fmt.Fprintf(b, "| family | frame | %s|\n|---|---|%s\n", strings.Join(fwds, " | ")+" ", strings.Repeat("---:|", len(fwds)))
	for _, k := range keys {
		fmt.Fprintf(b, "| %s | %s | ", k.family, sizeName(Row{FrameBytes: k.size, IMIX: k.imix}))
		for _, f := range fwds {
			fmt.Fprintf(b, "%s | ", cell(m[k], f, format))
		}
		fmt.Fprintf(b, "\n")
	}
}

func cell(m map[string]Row, f string, format func(Row) string) string {
	r, ok := m[f]
	if !ok {
		return "–"
	}
	return format(r)
}

var palette = []color.Color{
	color.RGBA{0xd6, 0x27, 0x28, 0xff}, // pnap
	color.RGBA{0x1f, 0x77, 0xb4, 0xff},
	color.RGBA{0x2c, 0xa0, 0x2c, 0xff},
	color.RGBA{0x94, 0x67, 0xbd, 0xff},
}

// WritePlots writes, per family, a throughput-versus-frame-size plot and a
// latency CDF into dir and returns the file names.
func WritePlots(dir string, rows []Row) ([]string, error) {
	m, keys, fwds := byKey(rows)
	var names []string
	for _, fam := range []string{"ipv4", "ipv6"} {
		p := plot.New()
		p.Title.Text = "Zero-loss throughput, " + fam
		p.X.Label.Text = "frame size (bytes)"
		p.Y.Label.Text = "frames/s"
		p.Legend.Top = true
		any := false
		for i, f := range fwds {
			var pts plotter.XYs
			for _, k := range keys {
				if r, ok := m[k][f]; ok && k.family == fam && !k.imix {
					pts = append(pts, plotter.XY{X: float64(k.size), Y: r.ZeroLossPPS})
				}
			}
			if len(pts) == 0 {
				continue
			}
			any = true
			l, s, err := plotter.NewLinePoints(pts)
			if err != nil {
				return nil, err
			}
			l.Color, s.Color = palette[i%len(palette)], palette[i%len(palette)]
			l.Width = vg.Points(1.5)
			p.Add(l, s)
			p.Legend.Add(f, l, s)
		}
		if !any {
			continue
		}
		name := "rfc2544-throughput-" + fam + ".png"
		if err := p.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	cdfs, err := writeCDFPlots(dir, rows)
	return append(names, cdfs...), err
}

// writeCDFPlots draws, per family, the latency distribution of each
// forwarder at the zero-loss rate for the smallest frame size measured.
func writeCDFPlots(dir string, rows []Row) ([]string, error) {
	var names []string
	for _, fam := range []string{"ipv4", "ipv6"} {
		small := 0
		for _, r := range rows {
			if r.Family == fam && !r.IMIX && (small == 0 || r.FrameBytes < small) {
				small = r.FrameBytes
			}
		}
		p := plot.New()
		p.Title.Text = fmt.Sprintf("One-way latency at the zero-loss rate, %s, %d B frames", fam, small)
		p.X.Label.Text = "latency (µs, log scale)"
		p.Y.Label.Text = "share of frames arrived"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = true, true
		n := 0
		for _, r := range rows {
			if r.Family != fam || r.IMIX || r.FrameBytes != small || len(r.CDF) == 0 {
				continue
			}
			var pts plotter.XYs
			for _, c := range r.CDF {
				pts = append(pts, plotter.XY{X: max(us(c.Latency), 0.1), Y: c.Fraction})
			}
			l, err := plotter.NewLine(pts)
			if err != nil {
				return nil, err
			}
			l.Color = palette[n%len(palette)]
			l.Width = vg.Points(1.5)
			p.Add(l)
			p.Legend.Add(r.Forwarder, l)
			n++
		}
		if n == 0 {
			continue
		}
		name := "rfc2544-latency-cdf-" + fam + ".png"
		if err := p.Save(7*vg.Inch, 4*vg.Inch, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

// GitDescribe is the commit the report was made from, for the command line.
func GitDescribe() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
