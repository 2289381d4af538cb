//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/steerlab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/internal/cmdline"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the command line: flags, the root check, then the demo, whose
// lab goes when it ends or on Ctrl-C (lab.Main).
func run(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.Flags("demo", stderr)
	plotTo := fs.String("plot", filepath.Join(os.TempDir(), "pnap-demo.png"), "write the demo's plot here (PNG)")
	if code, ok := cmdline.Parse(fs, args, "the only flag is -plot FILE"); !ok {
		return code
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "demo: the demo builds network namespaces and attaches XDP programs: run it as root (sudo make demo)")
		return 1
	}
	if !lab.Main("demo", stderr, func(tb testing.TB) { demo(tb, stdout, *plotTo) }) {
		return 1
	}
	return 0
}

// demo is the lab with Internet-sized tables, a shift that degrades the
// best backbone and a later one that makes another the best, a line a
// second, a summary and a plot.
func demo(tb testing.TB, out io.Writer, plotTo string) {
	start := time.Now()
	dir := tb.TempDir()
	tables, what, err := steerlab.Tables(dir)
	if err != nil {
		tb.Fatal(err)
	}
	say := func(format string, args ...any) { fmt.Fprintf(out, format, args...) }
	say("pnap demo: a customer, pnapd, and three backbones through emulators (20, 45, 80 ms)\n")
	say("  backbones carry %s, plus %d served prefixes each (servers in 198.19.0.0/16 and 2001:2::/48)\n", what, 2*16)
	say("  building pnapd and the lab...\n")
	l := steerlab.Build(tb, steerlab.Options{
		Prefixes: 16, RouteFiles: tables,
		Delays: []time.Duration{20 * time.Millisecond, 45 * time.Millisecond, 80 * time.Millisecond},
		Pnapd:  topo.BuildPnapd(tb, dir),
		Window: 2 * time.Second, ProbeInterval: 250 * time.Millisecond, OptimizerInterval: 250 * time.Millisecond, HoldDown: 3 * time.Second,
	})
	say("  pnapd is forwarding (%.1f s); customer TCP and UDP flows start. Each line: per backbone pnapd's measured RTT and the served prefixes it carries.\n\n", time.Since(start).Seconds())
	shifts := []steerlab.Shift{
		{At: 20 * time.Second, Index: 0, Delay: 150 * time.Millisecond, Loss: 0.05, Say: "bb-0 degrades: 20 -> 150 ms, 5 % loss"},
		{At: 45 * time.Second, Index: 2, Delay: 10 * time.Millisecond, Say: "bb-2 improves: 80 -> 10 ms"},
	}
	res := steerlab.Run(tb, l, shifts, 70*time.Second, out)
	res.Summary(out, l, shifts)
	if err := res.Plot(plotTo, l); err != nil {
		tb.Fatal(err)
	}
	say("  plot: %s\n  took %.0f s; cleaning up the lab.\n", plotTo, time.Since(start).Seconds())
	for i, a := range res.ResteerAfter {
		if a < 0 {
			tb.Errorf("not re-steered after %q", shifts[i].Say)
		}
	}
}
