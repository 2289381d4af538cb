//go:build linux

package demo

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
)

var (
	runDemo = flag.Bool("demo", false, "TestDemo: run the lab demo (make demo)")
	plotTo  = flag.String("plot", "", "TestDemo: write the demo's plot here (PNG)")
)

// TestResteer is the optimizer end to end: three emulated backbones at 20,
// 45 and 80 ms, customer TCP and UDP flows through pnapd; when the best
// backbone degrades to 150 ms and 5 % loss, pnapd moves the prefixes to
// the next best within 2 s, and no TCP connection breaks.
func TestResteer(t *testing.T) {
	lab.RequireRoot(t)
	l := Build(t, Options{
		Prefixes: 6, Delays: []time.Duration{20 * time.Millisecond, 45 * time.Millisecond, 80 * time.Millisecond},
		Pnapd:  topo.BuildPnapd(t, t.TempDir()),
		Window: 2 * time.Second, ProbeInterval: 250 * time.Millisecond, OptimizerInterval: 250 * time.Millisecond, HoldDown: 2 * time.Second,
	})
	shifts := []Shift{{At: 5 * time.Second, Index: 0, Delay: 150 * time.Millisecond, Loss: 0.05, Say: "bb-0 degrades to 150 ms, 5 % loss"}}
	res := Run(t, l, shifts, 10*time.Second, testLog{t})
	res.Summary(testLog{t}, l, shifts)
	if a := res.ResteerAfter[0]; a < 0 || a > 2*time.Second {
		t.Errorf("re-steered after %v, want within 2 s\n%s", a, l.Logs())
	}
	if res.Broken != 0 {
		t.Errorf("%d TCP connections broke", res.Broken)
	}
	if last := res.Seconds[len(res.Seconds)-1]; last.Carried["bb-1"] != len(l.Prefix) {
		t.Errorf("at the end bb-1 (45 ms, now the best) carries %d of %d prefixes: %v", last.Carried["bb-1"], len(l.Prefix), last.Carried)
	}
	if res.MeanRTT <= 0 || res.MeanRTT > res.StaticRTT["bb-0"] {
		t.Errorf("flows' mean RTT %v, no better than staying on bb-0 (%v)", res.MeanRTT, res.StaticRTT["bb-0"])
	}
}

// TestDemo is `make demo`: the lab with Internet-sized tables, a shift that
// degrades the best backbone and a later one that makes another the best,
// a line a second, a summary and a plot. It runs only with -demo.
func TestDemo(t *testing.T) {
	if !*runDemo {
		t.Skip("the demo runs with -demo (make demo)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the demo builds network namespaces and attaches XDP programs: run it as root (sudo make demo)")
	}
	out := os.Stdout
	start := time.Now()
	dir := t.TempDir()
	tables, what, err := Tables(dir)
	if err != nil {
		t.Fatal(err)
	}
	say := func(format string, args ...any) { os.Stdout.WriteString(sprintf(format, args...)) }
	say("pnap demo: a customer, pnapd, and three backbones through emulators (20, 45, 80 ms)\n")
	say("  backbones carry %s, plus %d served prefixes each (servers in 198.19.0.0/16 and 2001:2::/48)\n", what, 2*16)
	say("  building pnapd and the lab...\n")
	l := Build(t, Options{
		Prefixes: 16, RouteFiles: tables,
		Delays: []time.Duration{20 * time.Millisecond, 45 * time.Millisecond, 80 * time.Millisecond},
		Pnapd:  topo.BuildPnapd(t, dir),
		Window: 2 * time.Second, ProbeInterval: 250 * time.Millisecond, OptimizerInterval: 250 * time.Millisecond, HoldDown: 3 * time.Second,
	})
	say("  pnapd is forwarding (%.1f s); customer TCP and UDP flows start. Each line: per backbone pnapd's measured RTT and the served prefixes it carries.\n\n", time.Since(start).Seconds())
	shifts := []Shift{
		{At: 20 * time.Second, Index: 0, Delay: 150 * time.Millisecond, Loss: 0.05, Say: "bb-0 degrades: 20 -> 150 ms, 5 % loss"},
		{At: 45 * time.Second, Index: 2, Delay: 10 * time.Millisecond, Say: "bb-2 improves: 80 -> 10 ms"},
	}
	res := Run(t, l, shifts, 70*time.Second, out)
	res.Summary(out, l, shifts)
	path := *plotTo
	if path == "" {
		path = filepath.Join(os.TempDir(), "pnap-demo.png")
	}
	if err := res.Plot(path, l); err != nil {
		t.Fatal(err)
	}
	say("  plot: %s\n  took %.0f s; cleaning up the lab.\n", path, time.Since(start).Seconds())
	for i, a := range res.ResteerAfter {
		if a < 0 {
			t.Errorf("not re-steered after %q", shifts[i].Say)
		}
	}
}

// testLog sends Run's lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
