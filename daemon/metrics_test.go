package daemon

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dashboard is what the tests read of configs/grafana-dashboard.json.
type dashboard struct {
	Templating struct {
		List []struct {
			Name  string
			Query any // a string, or {"query": ...} for a Prometheus one
		}
	}
	Panels []dashboardPanel
}

type dashboardPanel struct {
	ID      int
	Title   string
	GridPos struct{ X, Y, W, H int }
	Targets []struct{ Expr, LegendFormat string }
}

// The Grafana dashboard only plots metrics pnapd serves, by labels they
// have, one appliance at a time, on panels Grafana can lay out.
func TestGrafanaDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "configs", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	served := servedLabels(t)
	names := regexp.MustCompile(`pnap_[a-z0-9_]+`)
	fixedWindow := regexp.MustCompile(`\[[0-9]+[smh]\]`)
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			checkLabels(t, "panel "+strconv.Quote(p.Title), tg.Expr, tg.LegendFormat, served)
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
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(map[string]any); ok {
			expr, _ := q["query"].(string)
			checkLabels(t, "variable "+v.Name, expr, "", served)
		}
	}
	checkLayout(t, d.Panels)
	if len(d.Panels) < 8 {
		t.Errorf("%d panels", len(d.Panels))
	}
}

// checkLabels fails t when expr names a metric pnapd does not serve, or a
// label none of its metrics has (as the interface once on every port
// series), or when legend shows a label expr aggregates away.
func checkLabels(t *testing.T, where, expr, legend string, served map[string][]string) {
	t.Helper()
	have := map[string]bool{"instance": true, "job": true}
	for _, m := range regexp.MustCompile(`pnap_[a-z0-9_]+`).FindAllString(expr, -1) {
		labels, ok := served[m]
		if !ok {
			t.Errorf("%s plots %s, which pnapd does not serve", where, m)
		}
		for _, l := range labels {
			have[l] = true
		}
	}
	used := map[string]bool{}
	kept := map[string]bool{}
	clause := regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	for _, c := range clause.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(c[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				used[l] = true
				kept[l] = kept[l] || c[1] == "by" || strings.HasPrefix(c[1], "group_")
			}
		}
	}
	for _, sel := range regexp.MustCompile(`\{([^}]*)\}`).FindAllStringSubmatch(expr, -1) {
		for _, m := range regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`).FindAllStringSubmatch(sel[1], -1) {
			used[m[1]] = true
		}
	}
	// label_values(metric, label) in a variable's query.
	if m := regexp.MustCompile(`label_values\(.*,\s*([a-zA-Z_]+)\s*\)`).FindStringSubmatch(expr); m != nil {
		used[m[1]] = true
	}
	aggregated := regexp.MustCompile(`\bby\s*\(`).MatchString(expr)
	for _, m := range regexp.MustCompile(`\{\{\s*([a-zA-Z_]+)\s*\}\}`).FindAllStringSubmatch(legend, -1) {
		used[m[1]] = true
		if aggregated && !kept[m[1]] {
			t.Errorf("%s: legend %q shows %s, which %s sums away", where, legend, m[1], expr)
		}
	}
	for l := range used {
		if !have[l] {
			t.Errorf("%s: %s uses label %s, which none of its metrics has", where, expr, l)
		}
	}
}

// checkLayout fails t unless every panel has its own id and a place on
// Grafana's 24-column grid that no other panel covers.
func checkLayout(t *testing.T, panels []dashboardPanel) {
	t.Helper()
	ids := map[int]string{}
	for i, p := range panels {
		if prev, dup := ids[p.ID]; dup || p.ID <= 0 {
			t.Errorf("panel %q: id %d (also %q)", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v is off the grid", p.Title, g)
		}
		for _, o := range panels[:i] {
			h := o.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap", o.Title, p.Title)
			}
		}
	}
}

// servedLabels reads metrics.go for every metric pnapd serves and its
// labels, those the test daemon does not collect (sockets, XDP) too.
func servedLabels(t *testing.T) map[string][]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), "metrics.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "NewDesc" {
			return true
		}
		name := stringLit(t, call.Args[0])
		out[name] = []string{}
		if lit, ok := call.Args[2].(*ast.CompositeLit); ok {
			for _, e := range lit.Elts {
				out[name] = append(out[name], stringLit(t, e))
			}
		}
		return false
	})
	if len(out) < 40 {
		t.Fatalf("read %d metrics from metrics.go", len(out))
	}
	return out
}

func stringLit(t *testing.T, e ast.Expr) string {
	t.Helper()
	if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
		if s, err := strconv.Unquote(lit.Value); err == nil {
			return s
		}
	}
	t.Fatalf("metrics.go: %T is not a string literal; the tests read names and labels from the source", e)
	return ""
}

// A port's series name it once, by port: the interface as well on every
// series is the same identity twice. pnap_port_info alone maps one to the
// other, and says what /v1/ports says.
func TestMetricsOnePortLabel(t *testing.T) {
	for name, labels := range servedLabels(t) {
		if name != "pnap_port_info" && slices.Contains(labels, "port") && slices.Contains(labels, "interface") {
			t.Errorf("%s has both port and interface labels; keep port and join on pnap_port_info", name)
		}
	}
	d := newAPIDaemon(t)
	code, body := get(d.handler(d.metricsHandler()), "GET", "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	ports := d.ports()
	if len(ports) != 3 {
		t.Fatalf("%d ports", len(ports))
	}
	for _, p := range ports {
		want := fmt.Sprintf(`pnap_port_info{interface=%q,port=%q,role=%q} 1`, p.Interface, p.Name, p.Role)
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
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
