package daemon

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
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
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			for _, m := range names.FindAllString(tg.Expr, -1) {
				if !bytes.Contains(src, []byte(`"`+m+`"`)) {
					t.Errorf("panel %q plots %s, which pnapd does not serve", p.Title, m)
				}
			}
		}
	}
	if len(d.Panels) < 8 {
		t.Errorf("%d panels", len(d.Panels))
	}
}
