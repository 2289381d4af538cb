package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The Grafana dashboard only plots metrics pnapd serves.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "configs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	src, _ := os.ReadFile("metrics.go")
	names := regexp.MustCompile(`pnap_[a-z0-9_]+`)
	fixedWindow := regexp.MustCompile(`\[[0-9]+[smh]\]`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range names.FindAllString(tg.Expr, -1) {
				if !bytes.Contains(src, []byte(`"`+m+`"`)) {
					t.Errorf("panel %q plots %s, which pnapd does not serve", p.Title, m)
				}
			}
			// One appliance at a time (the instance variable), and rate
			// windows Grafana fits to the scrape interval.
			if len(names.FindAllString(tg.Expr, -1)) != strings.Count(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: %s does not select $instance on every metric", p.Title, tg.Expr)
			}
			if fixedWindow.MatchString(tg.Expr) {
				t.Errorf("panel %q: %s has a fixed rate window; use $__rate_interval", p.Title, tg.Expr)
			}
		}
	}
	if len(d.Panels) < 8 {
		t.Errorf("%d panels", len(d.Panels))
	}
}

// The metrics pass client_golang's lint (promlint: names, units, counters
// ending in _total, help on every metric), and no family mixes a total
// with its own parts under one label, which makes every sum double count.
func TestMetricsLint(t *testing.T) {
	d := newAPIDaemon(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); v == "sent" || v == "total" || v == "all" {
					t.Errorf("%s{%s=%q}: a total among its parts", f.GetName(), l.GetName(), v)
				}
			}
		}
	}
}

// pnap_build_info says the version; pnap_reloads_total counts applied and
// refused reloads; the timestamp moves with an applied one only.
func TestBuildAndReloadMetrics(t *testing.T) {
	d := newAPIDaemon(t)
	d.version = "v1.2.3-4-gabcdef0"
	h := d.handler(d.metricsHandler())
	scrape := func() string {
		t.Helper()
		code, body := get(h, "GET", "/metrics", "")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}
	if err := d.reload(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.cfg.Load().Path, []byte("[[backbone]]\nname = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	applied := d.reloads.last.Load()
	if err := d.reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	body := scrape()
	for _, want := range []string{
		`pnap_build_info{goversion="` + runtime.Version() + `",version="v1.2.3-4-gabcdef0"} 1`,
		`pnap_backbone_rate_p95_bps{backbone="a"} 0`,
		`pnap_backbone_commit_bps{backbone="a"} 1e+08`,
		`pnap_reloads_total{result="applied"} 1`,
		`pnap_reloads_total{result="refused"} 1`,
		fmt.Sprintf("pnap_last_reload_timestamp_seconds %g", float64(applied)/1e9),
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
