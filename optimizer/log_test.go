package optimizer

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/probes"
)

// logLines decodes what a JSON slog handler wrote, and empties buf.
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

func withMsg(lines []map[string]any, msg string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] == msg {
			out = append(out, l)
		}
	}
	return out
}

// Every decision is a log line with the numbers behind it: moves with
// their scores and samples, a failure and a recovery once each, an
// evacuation as one line per backbone (not one per prefix), pins.
func TestDecisionsAreLogged(t *testing.T) {
	var buf bytes.Buffer
	opt := testOptions()
	opt.HoldDown = 10 * time.Second
	opt.Log = slog.New(slog.NewJSONHandler(&buf, nil))
	r := newRig(t, 6, opt)
	for _, p := range []netip.Prefix{pfx(0), pfx(1)} {
		r.measure(p, 20, 40, 30)
	}
	r.step(time.Second)
	if lines := logLines(t, &buf); len(lines) != 0 {
		t.Fatalf("nothing moved, yet: %v", lines)
	}

	r.src.backbones[bbA] = probes.BackboneStats{ProbesSent: 100, ProbesLost: 80, Loss: 0.8}
	r.step(time.Second)
	r.step(time.Second) // still failing: nothing new to say
	lines := logLines(t, &buf)
	failed, evac := withMsg(lines, "backbone failed"), withMsg(lines, "evacuated")
	if len(failed) != 1 || failed[0]["backbone"] != "a" || failed[0]["probes_lost"] != 80.0 || failed[0]["level"] != "WARN" {
		t.Fatalf("failure lines: %v", failed)
	}
	if len(evac) != 1 || evac[0]["prefixes"] != 6.0 || len(withMsg(lines, "prefix moved")) != 0 {
		t.Fatalf("evacuation lines: %v (all: %v)", evac, lines)
	}

	delete(r.src.backbones, bbA)
	r.step(30 * time.Second)
	lines = logLines(t, &buf)
	if rec := withMsg(lines, "backbone recovered"); len(rec) != 1 || rec[0]["backbone"] != "a" {
		t.Fatalf("recovery lines: %v", lines)
	}
	better := 0
	for _, l := range withMsg(lines, "prefix moved") {
		if l["reason"] == "better-rtt" {
			better++
			if l["to"] != "a" || l["to_score_ms"] != 20.0 || l["from_score_ms"] != 30.0 || l["to_samples"].(float64) <= 0 {
				t.Errorf("better-rtt line: %v", l)
			}
		}
		if _, ok := l["prefix"].(string); !ok {
			t.Errorf("no prefix: %v", l)
		}
	}
	if better != 2 {
		t.Fatalf("%d better-rtt lines, want 2: %v", better, lines)
	}

	if err := r.o.Pins().Pin(pfx(3), bbC); err != nil {
		t.Fatal(err)
	}
	if pin := withMsg(logLines(t, &buf), "prefix moved"); len(pin) != 1 || pin[0]["reason"] != "pinned" || pin[0]["to"] != "c" {
		t.Fatalf("pin lines: %v", pin)
	}
}
