//go:build linux

package steerlab

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
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

// testLog sends Run's lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
