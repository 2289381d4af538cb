//go:build linux

package steerlab

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// With Options.BGP every backbone's router is a BIRD 2 in the backbone's
// namespace, behind the emulator like everything past pnap's port, which
// announces the served prefixes to pnapd over one eBGP session (IPv4 and
// IPv6 routes alike); pnapd has no static routes. A failure beyond the
// router (greyRanges) then leaves the session up: the grey failure.

// Autonomous systems of the BGP lab: pnapd's, and backbone i's is
// firstBackboneAS + i (all from the documentation range).
const (
	pnapAS          = 64496
	firstBackboneAS = 64501
)

// greyRanges hold every served prefix: what a grey failure's loss takes.
var greyRanges = []netip.Prefix{servedNet, netip.MustParsePrefix("2001:2:0:f000::/52")}

// startBIRDs starts backbone routers announcing the served prefixes; they
// connect to pnapd, which listens.
func (l *Lab) startBIRDs(tb testing.TB) {
	tb.Helper()
	var v4, v6 []netip.Prefix
	for _, p := range l.Prefix {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	slices.SortFunc(v4, netip.Prefix.Compare)
	slices.SortFunc(v6, netip.Prefix.Compare)
	for i, bb := range l.X.Backbones {
		var b strings.Builder
		// Warnings and errors only: a session's every state change would
		// bury pnapd's log when a test fails.
		fmt.Fprintf(&b, "log stderr { warning, error, fatal };\nrouter id %s;\nprotocol device { }\n", bb.Gateway4)
		b.WriteString(lab.BIRDStatic("served4", "ipv4", v4))
		b.WriteString(lab.BIRDStatic("served6", "ipv6", v6))
		fmt.Fprintf(&b, "protocol bgp pnap {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n", bb.Gateway4, firstBackboneAS+i, bb.Addr4.Addr(), pnapAS)
		// A short hold time: a failure that took the router too would end
		// the session within the run (a drop the run counts), so a session
		// that stays up shows the failure was grey.
		b.WriteString("\tconnect delay time 1;\n\tconnect retry time 1;\n\terror wait time 1, 2;\n\thold time 6;\n\tkeepalive time 2;\n")
		b.WriteString("\tipv4 { import none; export all; };\n")
		fmt.Fprintf(&b, "\tipv6 { import none; next hop address %s; export all; };\n}\n", bb.Gateway6)
		r := lab.NewBIRD(tb, bb.NS)
		r.Start(tb, b.String())
	}
}

// bgpConfig is pnapd's [bgp] section, and backbone i's [backbone.bgp]:
// passive (the routers connect), taking the lab's benchmarking prefixes
// and its /64s.
func (l *Lab) bgpConfig() string {
	return fmt.Sprintf("\n[bgp]\nlocal_as = %d\nrouter_id = %q\nlisten = \"[::]:179\"\n", pnapAS, l.X.CustomerAddr4.Addr())
}

func (l *Lab) backboneBGPConfig(i int) string {
	return fmt.Sprintf("\n  [backbone.bgp]\n  neighbors = [%q]\n  peer_as = %d\n  passive = true\n  allow_martians = true\n  max_length_v6 = 64\n",
		l.X.Backbones[i].Gateway4, firstBackboneAS+i)
}

// BGPSession is what the status API says of one session.
type BGPSession struct {
	Name      string  `json:"name"`
	State     string  `json:"state"`
	UptimeSec float64 `json:"uptime_seconds"`
	Flaps     uint64  `json:"flaps"`
	IPv4      struct {
		Held int `json:"held"`
	} `json:"ipv4"`
	IPv6 struct {
		Held int `json:"held"`
	} `json:"ipv6"`
}

// Sessions is pnapd's BGP sessions now, by backbone name.
func (l *Lab) Sessions() (map[string]BGPSession, error) {
	var ss []BGPSession
	if err := l.get("/v1/bgp", &ss); err != nil {
		return nil, err
	}
	out := map[string]BGPSession{}
	for _, s := range ss {
		out[s.Name] = s
	}
	return out, nil
}

// holdsAll reports whether s is up and holds every served prefix.
func (l *Lab) holdsAll(s BGPSession) bool {
	return s.State == "Established" && s.IPv4.Held+s.IPv6.Held == len(l.Prefix)
}

// bgpWait is how long the sessions may take to come up and hand over the
// served prefixes: BIRD connects a second after it starts, and retries
// every second.
const bgpWait = 30 * time.Second

// waitRoutes waits until every backbone's session holds every served
// prefix, and fails tb if that takes longer than bgpWait.
func (l *Lab) waitRoutes(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(bgpWait)
	for {
		ss, err := l.Sessions()
		done := err == nil
		for _, b := range l.Backbone {
			done = done && l.holdsAll(ss[b])
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("steerlab: after %v the BGP sessions do not hold the %d served prefixes (%v): %+v\npnapd's log:\n%s", bgpWait, len(l.Prefix), err, ss, l.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sessionDrops counts the times sessions went down: each session's
// flaps, or one for a session that is down now (or lost served prefixes)
// without any.
func (l *Lab) sessionDrops() (int, error) {
	ss, err := l.Sessions()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, b := range l.Backbone {
		s := ss[b]
		switch {
		case s.Flaps > 0:
			n += int(s.Flaps)
		case !l.holdsAll(s):
			n++
		}
	}
	return n, nil
}
