//go:build linux

// Command scenarios is pnap's decision-quality suite (`make scenarios`, or
// as root `go run ./bench/scenarios [-out DIR] [-only NAME,...] [-mode
// active,passive]`): every scenario of steerlab.Suite on a lab of its own,
// with active probing and with in-band samples only, each judged against
// every static backbone, BGP's default and the hindsight oracle, all
// measured in the same run. It writes scenarios.json, scenarios.md and a
// plot per scenario into DIR.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/steerlab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/internal/cmdline"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := cmdline.Flags("scenarios", stderr)
	out := fs.String("out", filepath.Join("bench", "results"), "write scenarios.json, scenarios.md and the plots here")
	only := fs.String("only", "", "run only these scenarios (comma-separated names)")
	modes := fs.String("mode", "active,passive", "probing modes to run each scenario in: active, passive or both")
	verbose := fs.Bool("v", false, "print pnapd's decisions (moves, failures, evacuations) after each run")
	if code, ok := cmdline.Parse(fs, args, "flags only: -out DIR, -only NAMES, -mode MODES"); !ok {
		return code
	}
	suite, err := pick(steerlab.Suite(), *only)
	if err != nil {
		fmt.Fprintln(stderr, "scenarios:", err)
		return 2
	}
	ms := strings.Split(*modes, ",")
	for _, m := range ms {
		if m != "active" && m != "passive" {
			fmt.Fprintf(stderr, "scenarios: mode %q: use active, passive or both\n", m)
			return 2
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "scenarios: the suite builds network namespaces and attaches XDP programs: run it as root (sudo make scenarios)")
		return 1
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(stderr, "scenarios:", err)
		return 1
	}
	rows, ok := suiteRun(suite, ms, *out, *verbose, stdout, stderr)
	if !ok {
		return 1
	}
	if err := write(rows, suite, *out); err != nil {
		fmt.Fprintln(stderr, "scenarios:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nwrote %s/scenarios.{json,md} and the plots\n", *out)
	return 0
}

// pick is the scenarios named in only (all when empty), in suite order.
func pick(suite []steerlab.Scenario, only string) ([]steerlab.Scenario, error) {
	if only == "" {
		return suite, nil
	}
	names := strings.Split(only, ",")
	var out []steerlab.Scenario
	for _, sc := range suite {
		if slices.Contains(names, sc.Name) {
			out = append(out, sc)
		}
	}
	if len(out) != len(names) {
		var all []string
		for _, sc := range suite {
			all = append(all, sc.Name)
		}
		return nil, fmt.Errorf("-only %q: the scenarios are %s", only, strings.Join(all, ", "))
	}
	return out, nil
}

// suiteRun runs every scenario in every mode, each on a lab of its own
// that is gone before the next starts (lab.Main), and plots each
// scenario's first mode into out.
func suiteRun(suite []steerlab.Scenario, modes []string, out string, verbose bool, w, stderr io.Writer) ([]steerlab.Row, bool) {
	dir, err := os.MkdirTemp("", "pnap-scenarios-")
	if err != nil {
		fmt.Fprintln(stderr, "scenarios:", err)
		return nil, false
	}
	defer os.RemoveAll(dir)
	var pnapd string
	if !lab.Main("scenarios", stderr, func(tb testing.TB) { pnapd = topo.BuildPnapd(tb, dir) }) {
		return nil, false
	}
	var rows []steerlab.Row
	for _, sc := range suite {
		for _, mode := range modes {
			fmt.Fprintf(w, "\n=== %s (%s probing)\n", sc.Name, mode)
			var row steerlab.Row
			ok := lab.Main(sc.Name, stderr, func(tb testing.TB) {
				res, l := steerlab.RunScenario(tb, sc, pnapd, mode == "passive", w)
				row = steerlab.RowOf(sc, mode, l, res)
				if verbose {
					m, _ := l.Metrics()
					for _, line := range strings.Split(m, "\n") {
						if (strings.Contains(line, "drops_total") || strings.Contains(line, "probe_results_total") || strings.Contains(line, "not_sent") || strings.Contains(line, "replies_unused") || strings.Contains(line, "late_answers")) && !strings.HasPrefix(line, "#") && !strings.HasSuffix(line, " 0") {
							fmt.Fprintln(w, "  pnapd metric:", line)
						}
					}
					for _, line := range strings.Split(l.Logs(), "\n") {
						if strings.Contains(line, "moved") || strings.Contains(line, "backbone failed") || strings.Contains(line, "recovered") || strings.Contains(line, "evacuated") {
							fmt.Fprintln(w, "  pnapd:", line)
						}
					}
				}
				if mode == modes[0] {
					if err := res.PlotTitled(filepath.Join(out, "scenario-"+sc.Name+".png"), sc.Name, l); err != nil {
						tb.Fatal(err)
					}
				}
			})
			if !ok {
				return nil, false
			}
			fmt.Fprintf(w, "%s (%s): flows %.1f ms, pnap's choices %.1f ms, oracle %.1f ms (%+.1f %%), best static %s %.1f ms, re-steer %s s, flaps %d, TCP broken %d\n",
				row.Name, row.Mode, row.PnapMeanRTTms, row.PnapChosenMeanRTTms, row.OracleMeanRTTms, row.VsOraclePct, row.BestStatic, row.BestStaticMeanRTTms,
				steerlab.Optional(row.Resteer90s), row.Flaps, row.TCPBroken)
			rows = append(rows, row)
		}
	}
	return rows, true
}

// write puts the rows into out as scenarios.json and scenarios.md.
func write(rows []steerlab.Row, suite []steerlab.Scenario, out string) error {
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "scenarios.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	md := fmt.Sprintf("# Decision quality: the scenario suite\n\n`make scenarios`, %s. Generated by bench/scenarios; see bench/steerlab.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST")) + steerlab.Markdown(rows, suite)
	return os.WriteFile(filepath.Join(out, "scenarios.md"), []byte(md), 0o644)
}
