package fib

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"testing"
)

// results collects benchmark figures so that TestMain can print one table
// with the ratios to bart after a -bench run.
var results struct {
	sync.Mutex
	m map[string]map[string]result // metric -> contender -> figure
}

type result struct {
	value float64
	unit  string
}

// record keeps the ns/op of a finished benchmark run (the last, largest b.N).
func record(metric, who string, b *testing.B) {
	if b.N <= 1 {
		return
	}
	recordValue(metric, who, float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/op")
}

func recordValue(metric, who string, v float64, unit string) {
	results.Lock()
	defer results.Unlock()
	if results.m == nil {
		results.m = map[string]map[string]result{}
	}
	if results.m[metric] == nil {
		results.m[metric] = map[string]result{}
	}
	results.m[metric][who] = result{v, unit}
}

func TestMain(m *testing.M) {
	code := m.Run()
	printReport()
	os.Exit(code)
}

func printReport() {
	results.Lock()
	defer results.Unlock()
	if len(results.m) == 0 {
		return
	}
	metrics := make([]string, 0, len(results.m))
	for k := range results.m {
		metrics = append(metrics, k)
	}
	sort.Strings(metrics)
	fmt.Printf("\n%-36s %14s %14s %14s %10s %10s\n", "metric", "pnap", "bart.Fast", "bart.Table", "÷Fast", "÷Table")
	for _, k := range metrics {
		r := results.m[k]
		p, ok := r["pnap"]
		if !ok {
			continue
		}
		cell := func(who string) string {
			if x, ok := r[who]; ok {
				return fmt.Sprintf("%.4g", x.value)
			}
			return "-"
		}
		ratio := func(who string) string {
			if x, ok := r[who]; ok && x.value != 0 {
				return fmt.Sprintf("%.2f", p.value/x.value)
			}
			return "-"
		}
		fmt.Printf("%-36s %14s %14s %14s %10s %10s\n", k+" ("+p.unit+")", cell("pnap"), cell("bart.Fast"), cell("bart.Table"), ratio("bart.Fast"), ratio("bart.Table"))
		if pb, ok := r["pnap-batch"]; ok {
			p := pb
			fmt.Printf("%-36s %14.4g %14s %14s %10.2f %10.2f\n", k+", batch of 64 ("+p.unit+")", p.value, "", "", p.value/r["bart.Fast"].value, p.value/r["bart.Table"].value)
		}
	}
}
