//go:build linux

package steerlab

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
)

// shortScenario is the suite's scenario named name, its run cut to total with
// its shifts brought forward in proportion: make test's short subset.
func shortScenario(t *testing.T, name string, total time.Duration) Scenario {
	for _, sc := range Suite() {
		if sc.Name == name {
			k := float64(total) / float64(sc.Total)
			sc.Total = total
			sc.Shifts = append([]Shift(nil), sc.Shifts...)
			for i := range sc.Shifts {
				sc.Shifts[i].At = time.Duration(float64(sc.Shifts[i].At) * k)
			}
			return sc
		}
	}
	t.Fatalf("no scenario %q", name)
	return Scenario{}
}

// The short subset of the scenario suite (make scenarios runs it whole):
// under jitter alone pnap never moves; a grey failure (a blackout past the
// router, its BGP session up and its routes announced) sends every prefix
// off the dead backbone within 2 s and back once it returns, breaking no
// TCP connection and no session.
func TestShortScenarios(t *testing.T) {
	lab.RequireRoot(t)
	pnapd := topo.BuildPnapd(t, t.TempDir())
	t.Run("steady-jitter", func(t *testing.T) {
		sc := shortScenario(t, "steady-jitter", 20*time.Second)
		res, l := RunScenario(t, sc, pnapd, false, testLog{t})
		row := RowOf(sc, "active", l, res)
		t.Logf("%+v", row)
		if row.Flaps != 0 {
			t.Errorf("%d moves under jitter alone, want none:\n%s", row.Flaps, l.Logs())
		}
	})
	t.Run("grey-failure", func(t *testing.T) {
		sc := shortScenario(t, "grey-failure", 36*time.Second) // dark from 9 s to 24 s; failure_hold is 10 s
		res, l := RunScenario(t, sc, pnapd, false, testLog{t})
		row := RowOf(sc, "active", l, res)
		t.Logf("%+v", row)
		// Off the dead backbone at once (the goal is 1 s: make scenarios);
		// back once it answers again, which waits out its loss in the
		// window and a first failure's hold.
		if a := res.ResteerAfter[0]; a < 0 || a > 2*time.Second {
			t.Errorf("after %q: 90 %% of prefixes off it after %v, want within 2 s", sc.Shifts[0].Say, a)
		}
		if a := res.ResteerAfter[1]; a < 0 {
			t.Errorf("after %q: the prefixes did not return by the end", sc.Shifts[1].Say)
		}
		if row.TCPBroken != 0 {
			t.Errorf("%d TCP connections broke", row.TCPBroken)
		}
		// With a 6 s hold time, a failure that took the routers' sessions
		// down would show: this one is past the router.
		if row.BGPSessionDrops == nil || *row.BGPSessionDrops != 0 {
			t.Errorf("BGP session drops %v, want 0 (the failure is past the router)", row.BGPSessionDrops)
		}
		if row.PnapMeanRTTms >= row.BGPDefaultMeanRTTms {
			t.Errorf("pnap %.1f ms, no better than staying on the dead backbone (%.1f ms)", row.PnapMeanRTTms, row.BGPDefaultMeanRTTms)
		}
	})
}
