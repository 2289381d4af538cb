//go:build linux

package bgpbench

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/rfc2544"
	"github.com/pnap-project/pnap/bench/topo"
)

var (
	reportDir = flag.String("report", "", "BenchmarkBGP: write bgp.{md,json} into this directory")
	flapFor   = flag.Duration("flap", 5*time.Second, "BenchmarkBGP: length of each flap measurement")
	receivers = flag.String("receivers", "", "BenchmarkBGP: comma-separated subset of pnapd,bird (default both)")
	fraction  = flag.Float64("fraction", 1, "BenchmarkBGP: share of the full tables each feeder sends (a trial at a smaller scale)")
)

// TestQuick is the benchmark's smoke run, part of `make test`: 4 feeders
// of 20,000 IPv4 + 4,000 IPv6 prefixes of the full tables, 2,000 prefixes
// flapped for half a second per mode. It fails when either receiver does
// not converge or loses flapped routes; it checks the harness, not the
// goals.
func TestQuick(t *testing.T) {
	lab.RequireRoot(t)
	lab.RequireBIRD(t)
	v4, v6 := Tables(t, 20_000, 4_000)
	opt := Options{
		V4: v4, V6: v6, Flap: spread(v4, 2_000), FlapFor: 500 * time.Millisecond,
		Pnapd: topo.BuildPnapd(t, t.TempDir()), Timeout: time.Minute, Progress: testWriter{t},
	}
	res := Run(t, opt)
	var b strings.Builder
	WriteTable(&b, res)
	t.Logf("\n%s", b.String())
	for _, r := range res {
		if !r.Converged || r.Routes != r.Target {
			t.Errorf("%s: converged %v with %d of %d routes", r.Receiver, r.Converged, r.Routes, r.Target)
		}
		if len(r.Flaps) != len(flapModes) {
			t.Errorf("%s: %d of %d flap measurements", r.Receiver, len(r.Flaps), len(flapModes))
		}
		for _, f := range r.Flaps {
			if f.Rate <= 0 || f.Held != len(opt.Flap) {
				t.Errorf("%s: flap %s: %.0f changes/s, %d of %d flapped routes held", r.Receiver, f.Mode, f.Rate, f.Held, len(opt.Flap))
			}
		}
	}
	dir := t.TempDir()
	meta := Meta{Date: time.Now().UTC(), Command: "go test -run TestQuick ./bench/bgpbench/"}
	if err := WriteMarkdown(filepath.Join(dir, "bgp.md"), meta, res); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(filepath.Join(dir, "bgp.json"), meta, res); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkBGP is the full measurement (`make bench-bgp`): 4 feeders of
// the full IPv4 and IPv6 tables, 10,000 prefixes flapped. With -report DIR
// it writes bgp.{md,json} there; it always prints the table.
func BenchmarkBGP(b *testing.B) {
	lab.RequireRoot(b)
	lab.RequireBIRD(b)
	start := time.Now()
	meta := rfc2544.MachineMeta()
	m := Meta{Date: meta.Date, Machine: meta.Machine, Kernel: meta.Kernel, Go: meta.Go, LoadAvg: loadAvg()}
	v4, v6 := Tables(b, 0, 0)
	if *fraction < 1 {
		v4, v6 = spread(v4, int(*fraction*float64(len(v4)))), spread(v6, int(*fraction*float64(len(v6))))
	}
	opt := Options{
		V4: v4, V6: v6, Flap: spread(v4, 10_000), FlapFor: *flapFor,
		Pnapd: topo.BuildPnapd(b, b.TempDir()), Progress: os.Stderr,
	}
	if *receivers != "" {
		opt.Receivers = strings.Split(*receivers, ",")
	}
	var res []Result
	for range b.N {
		res = Run(b, opt)
	}
	var t strings.Builder
	WriteTable(&t, res)
	os.Stdout.WriteString("\n" + t.String() + "\n")
	if *reportDir == "" {
		return
	}
	m.Duration = time.Since(start).Round(time.Second).String()
	m.Command = "make bench-bgp (go test -run '^$' -bench BGP -benchtime 1x ./bench/bgpbench/ -args -report bench/results), commit " + rfc2544.GitDescribe()
	m.Table = "the full tables of ../shared/data, 901,899 IPv4 + 160,147 IPv6 prefixes"
	if *fraction < 1 {
		m.Table = fmt.Sprintf("%d IPv4 + %d IPv6 prefixes of the full tables of ../shared/data (-fraction %g)", len(v4), len(v6), *fraction)
	}
	if err := WriteMarkdown(filepath.Join(*reportDir, "bgp.md"), m, res); err != nil {
		b.Fatal(err)
	}
	if err := WriteJSON(filepath.Join(*reportDir, "bgp.json"), m, res); err != nil {
		b.Fatal(err)
	}
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
