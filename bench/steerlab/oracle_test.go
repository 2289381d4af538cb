//go:build linux

package steerlab

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/emu"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
)

// The oracle measures each backbone's emulated delay and loss, whatever
// pnapd selects (all the prefixes stay on bb-0 here).
func TestOracleMeasuresEachBackbone(t *testing.T) {
	lab.RequireRoot(t)
	l := Build(t, Options{
		Prefixes: 4, Delays: []time.Duration{20 * time.Millisecond, 45 * time.Millisecond, 80 * time.Millisecond},
		Pnapd:  topo.BuildPnapd(t, t.TempDir()),
		Window: 2 * time.Second, ProbeInterval: 250 * time.Millisecond, OptimizerInterval: 250 * time.Millisecond, HoldDown: 2 * time.Second,
	})
	if err := l.X.Backbones[2].Emu.Set(emu.Params{Delay: 80 * time.Millisecond, Loss: 0.2}, emu.Params{}); err != nil {
		t.Fatal(err)
	}
	o := StartOracle(t, l, 20*time.Millisecond)
	time.Sleep(4 * time.Second)
	o.Stop()
	got := o.At(o.start.Add(2*time.Second), 2*time.Second, time.Now())
	for b, want := range []time.Duration{20, 45, 80} {
		want *= time.Millisecond
		s := got[b]
		t.Logf("bb-%d: median %v, loss %.2f over %d probes", b, s.RTT, s.Loss, s.N)
		if s.N < 100 || s.RTT < want || s.RTT > want+3*time.Millisecond {
			t.Errorf("bb-%d: median RTT %v over %d probes, want %v to %v", b, s.RTT, s.N, want, want+3*time.Millisecond)
		}
	}
	if l := got[2].Loss; l < 0.1 || l > 0.32 {
		t.Errorf("bb-2 loses 20 %%; the oracle measured %.2f", l)
	}
	if got[0].Loss > 0.02 {
		t.Errorf("bb-0 loses nothing; the oracle measured %.2f", got[0].Loss)
	}
}
