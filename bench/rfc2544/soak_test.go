//go:build linux

package rfc2544

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/internal/shareddata"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	soakFor  = flag.Duration("soak", 0, "TestSoak: run the soak for this long (make soak: 10m); 0 skips it")
	soakRate = flag.Float64("soak.rate", 0, "TestSoak: offer this many frames/s instead of 80 % of the zero-loss rate")
)

// TestSoak is `make soak` (root, not in CI): pnapd with the full tables on
// three backbones carries 64 B IPv4 traffic at 80 % of its zero-loss rate
// for 10 minutes while a prefix moves every 250 ms and the route sets
// reload every 30 s. Nothing may be dropped inside pnapd, and its RSS and
// goroutine count stay within 5 % after the first minute.
func TestSoak(t *testing.T) {
	if *soakFor == 0 {
		t.Skip("the soak runs only when asked: make soak, or -args -soak 10m")
	}
	lab.RequireRoot(t)
	start := time.Now()
	res := Soak(t, SoakOptions{
		Duration: *soakFor, Rate: *soakRate,
		RouteFiles: []string{shareddata.File(t, shareddata.IPv4Full), shareddata.File(t, shareddata.IPv6Full)},
		Pnapd:      topo.BuildPnapd(t, t.TempDir()), Progress: testWriter{t},
	})
	if *reportDir != "" {
		if err := writeSoakReport(*reportDir, res, time.Since(start)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range soakProblems(res, time.Minute) {
		t.Error(p)
	}
}

// soakProblems is what the soak's bar finds wrong with res: drops inside
// pnapd, RSS or goroutines that grow by more than 5 % after warmUp (see
// below), no moves or no reloads.
func soakProblems(res SoakResult, warmUp time.Duration) []string {
	var out []string
	if len(res.Samples) < 3 {
		return []string{fmt.Sprintf("%d samples: too few to judge", len(res.Samples))}
	}
	last := res.Samples[len(res.Samples)-1]
	if last.PnapDrops != 0 {
		out = append(out, fmt.Sprintf("pnapd dropped %d frames: %v", last.PnapDrops, res.Drops))
	}
	if last.Moves == 0 || last.Reloads == 0 {
		out = append(out, fmt.Sprintf("%d moves and %d reloads: the churn did not run", last.Moves, last.Reloads))
	}
	// Flat: the median of the last minute no more than 5 % above the
	// median of the first minute after warm-up. Medians, since single
	// samples move by the API's own connections (a goroutine or two of
	// twenty); only growth, since the Go runtime returns freed memory to
	// the kernel minutes later, in steps (RSS fell by 30 % in the soak).
	for _, c := range []struct {
		name string
		v    func(SoakSample) float64
	}{{"RSS", func(s SoakSample) float64 { return s.RSSMiB }}, {"goroutines", func(s SoakSample) float64 { return float64(s.Goroutines) }}} {
		var first, final []float64
		end := last.Seconds
		for _, s := range res.Samples {
			switch {
			case s.Seconds >= warmUp.Seconds() && s.Seconds < warmUp.Seconds()+60:
				first = append(first, c.v(s))
			case s.Seconds > end-60 && s.Seconds >= warmUp.Seconds()+60:
				final = append(final, c.v(s))
			}
		}
		if len(first) == 0 || len(final) == 0 {
			continue
		}
		if a, b := median(first), median(final); b > a*1.05 {
			out = append(out, fmt.Sprintf("%s: median %.1f in the first minute after warm-up, %.1f in the last: grew by more than 5 %%", c.name, a, b))
		}
	}
	return out
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

// TestSoakProblems holds soakProblems to runs that must fail it.
func TestSoakProblems(t *testing.T) {
	flat := func() SoakResult {
		var r SoakResult
		for i := range 20 {
			r.Samples = append(r.Samples, SoakSample{Seconds: float64(i * 10), RSSMiB: 100, Goroutines: 40 + i%2, Moves: i + 1, Reloads: i/3 + 1})
		}
		return r
	}
	if p := soakProblems(flat(), 30*time.Second); len(p) != 0 {
		t.Errorf("a flat run: %q", p)
	}
	leak := flat()
	for i := range leak.Samples {
		leak.Samples[i].RSSMiB += float64(i)
	}
	drops := flat()
	drops.Samples[19].PnapDrops = 1
	idle := flat()
	idle.Samples[19].Reloads = 0
	warm := flat()
	warm.Samples[0].Goroutines = 80 // before warm-up: allowed
	for name, c := range map[string]struct {
		r    SoakResult
		want string
	}{"leak": {leak, "grew"}, "drops": {drops, "dropped"}, "idle": {idle, "churn"}, "warm": {warm, ""}} {
		p := soakProblems(c.r, 30*time.Second)
		if c.want == "" && len(p) != 0 || c.want != "" && (len(p) != 1 || !strings.Contains(p[0], c.want)) {
			t.Errorf("%s: %q, want one problem about %q", name, p, c.want)
		}
	}
}

// writeSoakReport writes soak.json, soak.md and soak.png into dir.
func writeSoakReport(dir string, res SoakResult, took time.Duration) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "soak.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := writeSoakPlot(filepath.Join(dir, "soak.png"), res); err != nil {
		return err
	}
	meta := MachineMeta()
	var md strings.Builder
	fmt.Fprintf(&md, "# Soak\n\n- Date: %s; took %v\n- Machine: %s; kernel %s; %s\n- Command: `make soak`, commit %s\n",
		meta.Date.Format("2006-01-02 15:04 UTC"), took.Round(time.Second), meta.Machine, meta.Kernel, meta.Go, GitDescribe())
	fmt.Fprintf(&md, "- Load: 64 B IPv4 to 1024 destinations at %.0f frames/s (80 %% of the zero-loss rate, %.0f, found first); backbones 0 to 2 hold the full tables (%d prefixes); a traffic prefix pinned to one of them every 250 ms (at most 64 pins); backbone 3's 20,000 routes reloaded every 30 s (SIGHUP: 10,000 withdrawn, 10,000 added); socket rings of 2048 frames (this VM's vCPU stalls overflow 256)\n\n",
		res.RatePPS, res.ZeroLossPPS, res.Routes)
	fmt.Fprintf(&md, "| t (s) | offered pps | delivered pps | lost | pnap drops | RSS MiB | goroutines | moves | reloads |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range res.Samples {
		fmt.Fprintf(&md, "| %.0f | %.0f | %.0f | %d | %d | %.1f | %d | %d | %d |\n", s.Seconds, s.OfferedPPS, s.DeliveredPPS, s.Lost, s.PnapDrops, s.RSSMiB, s.Goroutines, s.Moves, s.Reloads)
	}
	fmt.Fprintf(&md, "\n![soak](soak.png)\n")
	return os.WriteFile(filepath.Join(dir, "soak.md"), []byte(md.String()), 0o644)
}

// writeSoakPlot draws delivered rate, RSS and goroutines over time, one
// panel each.
func writeSoakPlot(path string, res SoakResult) error {
	panels := []struct {
		title, unit string
		y           func(SoakSample) float64
	}{
		{"Delivered", "frames/s", func(s SoakSample) float64 { return s.DeliveredPPS }},
		{"pnapd RSS", "MiB", func(s SoakSample) float64 { return s.RSSMiB }},
		{"pnapd goroutines", "count", func(s SoakSample) float64 { return float64(s.Goroutines) }},
	}
	rows := make([][]*plot.Plot, len(panels))
	for i, pn := range panels {
		p := plot.New()
		p.Title.Text, p.Y.Label.Text = pn.title, pn.unit
		p.X.Label.Text = "time (s)"
		p.Y.Min = 0
		var pts plotter.XYs
		for _, s := range res.Samples {
			pts = append(pts, plotter.XY{X: s.Seconds, Y: pn.y(s)})
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		l.Color, l.Width = palette[i%len(palette)], vg.Points(1.5)
		p.Add(l)
		rows[i] = []*plot.Plot{p}
	}
	img := vgimg.New(7*vg.Inch, 8*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(rows), Cols: 1, PadY: vg.Millimeter * 4, PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(rows, tiles, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
