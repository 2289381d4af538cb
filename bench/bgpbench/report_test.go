//go:build linux

package bgpbench

import (
	"strings"
	"testing"
	"time"
)

// What `show protocols all` says, as the control socket sends it less the
// reply codes: protocols, channels, import counters.
func TestParseProtocols(t *testing.T) {
	lines := strings.Split(`Name       Proto      Table      State  Since         Info
feed0      BGP        ---        up     2026-12-03 20:16:21.294  Established   
  BGP state:          Established
    Neighbor address: 198.18.120.1
  Channel ipv4
    State:          UP
    Routes:         20000 imported, 0 exported, 20000 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:          20010          0          0          0      20010
      Import withdraws:           10          0        ---          0         10
      Export updates:              0          0          0        ---          0
  Channel ipv6
    Routes:         4000 imported, 0 exported, 4000 preferred
      Import updates:           4000          0          0          0       4000
      Import withdraws:            0          0        ---          0          0

flap       BGP        ---        start  2026-12-03 20:16:20.100  Active        Socket: Connection refused
`, "\n")
	ps, err := parseProtocols(lines)
	if err != nil {
		t.Fatal(err)
	}
	f := ps["feed0"]
	want := time.Date(2026, 12, 3, 20, 16, 21, 294e6, time.Local)
	if f == nil || f.State != "up" || !strings.HasPrefix(f.Info, "Established") || !f.Since.Equal(want) ||
		f.Imported != 24000 || f.Updates != 24010 || f.Withdraws != 10 {
		t.Errorf("feed0: %+v", f)
	}
	if p := ps["flap"]; p == nil || p.State != "start" || p.Imported != 0 {
		t.Errorf("flap: %+v", p)
	}
}

// A run of one receiver shows the other's figures as "–", no ratios, and
// only the goals that do not compare with BIRD.
func TestTableOneReceiver(t *testing.T) {
	var b strings.Builder
	WriteTable(&b, []Result{{Receiver: Pnapd, Converged: true, Routes: 10, ConvergeSec: 1,
		Flaps: []FlapResult{{Mode: "paced", Offered: 10_000, Rate: 10_000}, {Mode: "packed", Rate: 200_000}, {Mode: "single", Rate: 50_000}}}})
	out := b.String()
	for _, want := range []string{"| convergence: first session up → last route installed (s) | 1.00 | – |  | ≤ 1.00× BIRD |  |", "| ≥ 100000/s | met |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
