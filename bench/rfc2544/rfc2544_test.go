//go:build linux

package rfc2544

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/internal/shareddata"
)

var (
	reportDir = flag.String("report", "", "BenchmarkRFC2544: write rfc2544.{md,json} and plots into this directory")
	trialLen  = flag.Duration("trial", 500*time.Millisecond, "BenchmarkRFC2544: length of one trial (60s for a full RFC 2544 report)")
	steps     = flag.Int("steps", 5, "BenchmarkRFC2544: binary search halvings after the doubling phase")
	tolerance = flag.Float64("loss", 0.001, "BenchmarkRFC2544: loss share a passing trial may have")
	only      = flag.String("forwarders", "", "BenchmarkRFC2544: comma-separated subset of pnap,kernel,afxdp-bounce,xdp-redirect")
	sizes     = flag.String("sizes", "", "BenchmarkRFC2544: comma-separated frame sizes (0 = IMIX); default all")
	families  = flag.String("families", "", "BenchmarkRFC2544: 4, 6 or 4,6 (default)")
)

// TestQuick is the harness's smoke run, part of `make test`: every
// forwarder, IPv4 and IPv6 at 64 B, short trials, 20,000 routes of each
// full table shared out over 4 backbones. It checks the harness end to end
// (topology, forwarders, generator, receivers, search, report) and that
// every forwarder forwards: each passes a trial at quickFloor or above and
// sends no frame to the wrong backbone (see checkQuick). It measures no
// performance.
func TestQuick(t *testing.T) {
	lab.RequireRoot(t)
	dir := t.TempDir()
	files := sampleTables(t, dir, 20_000)
	start := time.Now()
	opt := Options{
		Families: []int{4, 6}, Sizes: []int{64}, Trial: 150 * time.Millisecond, Steps: 2,
		Tolerance: 0.02, RouteFiles: files, Pnapd: topo.BuildPnapd(t, dir), Dests: 1024,
		Progress: testWriter{t},
	}
	rows := Run(t, opt)
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 4 forwarders × 2 families", len(rows))
	}
	checkQuick(t, opt, rows)
	meta := MachineMeta()
	meta.Duration, meta.Command, meta.Routes = time.Since(start), "go test -run TestQuick ./bench/rfc2544/", "20,000 prefixes of each full table"
	plots, err := WritePlots(dir, rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteMarkdown(filepath.Join(dir, "rfc2544.md"), meta, rows, plots); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(filepath.Join(dir, "rfc2544.json"), rows); err != nil {
		t.Fatal(err)
	}
	var back []map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "rfc2544.json"))
	if err := json.Unmarshal(b, &back); err != nil || len(back) != len(rows) {
		t.Fatalf("JSON report: %v, %d rows", err, len(back))
	}
	for _, k := range []string{"forwarder", "family", "frame_bytes", "zero_loss_pps", "latency_p50_us", "latency_p99_us", "flood_pps", "peak_pps", "wrong_path"} {
		if _, ok := back[0][k]; !ok {
			t.Errorf("JSON row lacks %q: %v", k, back[0])
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "rfc2544.md"))
	if !strings.Contains(string(md), "pnap ÷ kernel") || !strings.Contains(string(md), "Flood ÷ peak") || !strings.Contains(string(md), "wrong backbone") || len(plots) != 4 {
		t.Errorf("markdown report or plots missing: %d plots\n%s", len(plots), md)
	}
	for _, p := range plots {
		if st, err := os.Stat(filepath.Join(dir, p)); err != nil || st.Size() < 1000 {
			t.Errorf("plot %s: %v", p, err)
		}
	}
}

// quickFloor is the least zero-loss rate TestQuick accepts: the search's
// first rate, so at least one trial of the search passed. Any working
// forwarder clears it with margin on an idle machine of this kind (zero-loss
// rates here are 25-200 kpps and more, bounded by vCPU stalls), while one
// that gets warm-up's 10 kpps through but loses more than the tolerance
// beyond, or drops at random, does not.
const quickFloor = searchStart

// checkQuick fails t for every problem of TestQuick's rows. A row below
// the floor is measured once more and fails the floor only if it is below
// it again: other work on this 2-CPU VM (another build beside the test)
// can take the forwarder's CPU for tens of ms and make a 150 ms trial lose
// 10-50 % at any rate. While work outside the test kept 17-38 % of the CPUs
// busy, 6 runs of 10 here had a row below the floor (pnap, afxdp-bounce,
// once the kernel), 2 of them again on the rerun; on the idle machine none
// of 13 did. A forwarder that cannot carry the floor fails both times.
func checkQuick(t *testing.T, opt Options, rows []Row) {
	t.Helper()
	for _, r := range rows {
		for _, p := range rowProblems(r, opt.Tolerance) {
			t.Errorf("%s %s: %s", r.Forwarder, r.Family, p)
		}
		p := floorProblem(r)
		if p == "" {
			continue
		}
		t.Logf("%s %s: %s; measuring it again", r.Forwarder, r.Family, p)
		fam, _ := strconv.Atoi(strings.TrimPrefix(r.Family, "ipv"))
		again := opt
		again.Forwarders, again.Families = []string{r.Forwarder}, []int{fam}
		for _, r2 := range Run(t, again) {
			for _, p := range rowProblems(r2, opt.Tolerance) {
				t.Errorf("%s %s, measured again: %s", r.Forwarder, r.Family, p)
			}
			if p := floorProblem(r2); p != "" {
				t.Errorf("%s %s, twice: %s", r.Forwarder, r.Family, p)
			}
		}
	}
}

// floorProblem says whether a row passed no trial at quickFloor or above
// (less 10 %: a vCPU stall can make the generator fall that short of the
// asked rate, see traffic.Sent.Stalled); "" if it did.
func floorProblem(r Row) string {
	if r.ZeroLossPPS >= 0.9*quickFloor {
		return ""
	}
	return fmt.Sprintf("zero-loss rate %.0f pps, below the floor of %d: no trial at or above it passed", r.ZeroLossPPS, quickFloor)
}

// rowProblems is what else is wrong with a row of TestQuick: the flood got
// through, the search ran, the reported rate and latencies are a passing
// trial's, the peak is no less than the flood, and no frame took the wrong
// backbone (for the no-lookup peers, all belong on backbone 0).
func rowProblems(r Row, tolerance float64) []string {
	var out []string
	if r.FloodPPS < 1000 || len(r.Trials) == 0 {
		return append(out, fmt.Sprintf("flooded %.0f pps, %d trials", r.FloodPPS, len(r.Trials)))
	}
	found := false
	for _, tr := range r.Trials {
		if tr.Offered == r.ZeroLossPPS && tr.LossRatio() <= tolerance && us(tr.P50) == r.P50us {
			found = true
		}
	}
	if r.ZeroLossPPS > 0 && (!found || r.P99us < r.P50us) {
		out = append(out, fmt.Sprintf("reported %.0f pps (p50 %.1f µs, p99 %.1f µs) is not a passing trial's", r.ZeroLossPPS, r.P50us, r.P99us))
	}
	if r.PeakPPS < r.FloodPPS {
		out = append(out, fmt.Sprintf("peak %.0f pps below the flood's %.0f", r.PeakPPS, r.FloodPPS))
	}
	if r.WrongPath != 0 {
		out = append(out, fmt.Sprintf("%d frames arrived on the wrong backbone", r.WrongPath))
	}
	return out
}

// TestRowProblems holds TestQuick's checks (floorProblem, rowProblems) to
// rows of forwarders that must fail them, and one that must pass.
func TestRowProblems(t *testing.T) {
	pass := func(rate float64) Trial {
		return Trial{Asked: rate, Offered: rate, Sent: 3750, Received: 3750, P50: 20 * time.Microsecond, P99: 40 * time.Microsecond}
	}
	fail := func(rate float64, lost uint64) Trial {
		tr := pass(rate)
		tr.Received, tr.Lost = tr.Sent-lost, lost
		return tr
	}
	good := Row{Forwarder: "good", ZeroLossPPS: 50_000, P50us: 20, P99us: 40, FloodPPS: 60_000, PeakPPS: 70_000,
		Trials: []Trial{pass(25_000), pass(50_000), fail(100_000, 2000), fail(75_000, 500), fail(62_500, 100)}}
	if p := append(rowProblems(good, 0.02), floorProblem(good)); len(p) != 1 || p[0] != "" {
		t.Errorf("a good row: %q", p)
	}
	// Gets warm-up's 10 kpps through, then loses 3 % at every rate:
	// nothing passes, which the old check only logged.
	lossy := Row{Forwarder: "lossy", FloodPPS: 50_000, PeakPPS: 50_000,
		Trials: []Trial{fail(25_000, 113), fail(12_500, 113), fail(6_250, 113)}}
	// Carries 15 kpps: passes only the halvings below the first rate.
	slow := Row{Forwarder: "slow", ZeroLossPPS: 12_500, P50us: 20, P99us: 40, FloodPPS: 15_000, PeakPPS: 15_000,
		Trials: []Trial{fail(25_000, 1500), pass(12_500), fail(18_750, 750)}}
	// Drops everything after warm-up.
	dead := Row{Forwarder: "dead", Trials: []Trial{fail(25_000, 3750)}}
	misrouting := good
	misrouting.WrongPath = 3
	misrouting.Forwarder = "misrouting"
	for _, c := range []struct {
		r     Row
		floor bool   // below the floor
		want  string // rowProblems' one problem, if any
	}{{lossy, true, ""}, {slow, true, ""}, {dead, true, "flooded 0 pps"}, {misrouting, false, "wrong backbone"}} {
		if f := floorProblem(c.r); (f != "") != c.floor {
			t.Errorf("%s: floor problem %q, want one: %v", c.r.Forwarder, f, c.floor)
		}
		p := rowProblems(c.r, 0.02)
		if c.want == "" && len(p) != 0 || c.want != "" && (len(p) != 1 || !strings.Contains(p[0], c.want)) {
			t.Errorf("%s: problems %q, want %q", c.r.Forwarder, p, c.want)
		}
	}
}

// BenchmarkRFC2544 is the full measurement (`make bench`): 4 forwarders,
// IPv4 and IPv6, RFC 2544's frame sizes and IMIX, the full IPv4 and IPv6
// tables shared out over 4 backbones. With -report DIR it writes the report.
func BenchmarkRFC2544(b *testing.B) {
	lab.RequireRoot(b)
	start := time.Now()
	opt := Options{
		Trial: *trialLen, Steps: *steps, Tolerance: *tolerance,
		RouteFiles: []string{shareddata.File(b, shareddata.IPv4Full), shareddata.File(b, shareddata.IPv6Full)},
		Pnapd:      topo.BuildPnapd(b, b.TempDir()), Progress: os.Stderr,
	}
	if *only != "" {
		opt.Forwarders = strings.Split(*only, ",")
	}
	opt.Sizes = intList(b, *sizes)
	opt.Families = intList(b, *families)
	var rows []Row
	for range b.N {
		rows = Run(b, opt)
	}
	for _, r := range rows {
		if r.Forwarder == Pnap && r.Family == "ipv4" && r.FrameBytes == 64 {
			b.ReportMetric(r.ZeroLossPPS, "pnap-v4-64B-pps")
		}
	}
	if *reportDir == "" {
		return
	}
	meta := MachineMeta()
	meta.Duration, meta.Trial, meta.Steps, meta.Loss = time.Since(start), opt.Trial, opt.Steps, opt.Tolerance
	meta.Command = "make bench (go test -run '^$' -bench RFC2544 -benchtime 1x ./bench/rfc2544/ -args -report bench/results -trial " + opt.Trial.String() + "), commit " + GitDescribe()
	meta.Routes = "the full IPv4 (901,899) and IPv6 (160,147) tables of ../shared/data, shared out over the 4 backbones (see Paths); destinations: 4096 per family, each in a different prefix drawn at random"
	plots, err := WritePlots(*reportDir, rows)
	if err != nil {
		b.Fatal(err)
	}
	if err := WriteMarkdown(filepath.Join(*reportDir, "rfc2544.md"), meta, rows, plots); err != nil {
		b.Fatal(err)
	}
	if err := WriteJSON(filepath.Join(*reportDir, "rfc2544.json"), rows); err != nil {
		b.Fatal(err)
	}
}

// sampleTables writes n prefixes of each full table, drawn at random, as
// route files in dir (the quick run's backbones load these).
func sampleTables(t *testing.T, dir string, n int) []string {
	t.Helper()
	var out []string
	for _, name := range []string{shareddata.IPv4Full, shareddata.IPv6Full} {
		f, err := os.Open(shareddata.File(t, name))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		sc := bufio.NewScanner(zr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		f.Close()
		rng := rand.New(rand.NewPCG(9, 9))
		rng.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
		path := filepath.Join(dir, strings.TrimSuffix(name, ".gz"))
		if err := os.WriteFile(path, []byte(strings.Join(lines[:min(n, len(lines))], "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, path)
	}
	return out
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func intList(tb testing.TB, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			tb.Fatalf("%q: not a number", f)
		}
		out = append(out, n)
	}
	return out
}
