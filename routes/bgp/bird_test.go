//go:build linux

package bgp

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// The lab: BIRD in a namespace of its own, a veth pair to a namespace for
// the session under test, documentation addresses on both ends.
const (
	birdAddr4 = "198.51.100.1"
	pnapAddr4 = "198.51.100.2"
	birdAddr6 = "2001:db8:1::1"
	pnapAddr6 = "2001:db8:1::2"
	// labWait bounds every wait on BIRD: it converges in well under a
	// second on a few thousand routes.
	labWait = 30 * time.Second
)

// birdLab is one BIRD and the namespace for the session under test.
type birdLab struct {
	t    *testing.T
	bird *lab.BIRD
	pnap *lab.NS
}

func newBIRDLab(t *testing.T) *birdLab {
	lab.RequireBIRD(t)
	birdNS := lab.NewNS(t, "bird")
	l := &birdLab{t: t, bird: lab.NewBIRD(t, birdNS), pnap: lab.NewNS(t, "pnap")}
	lb, lp := lab.Connect(t, birdNS, "bgp0", l.pnap, "bgp0", lab.VethOpts{})
	lb.AddAddr(t, birdAddr4+"/24", birdAddr6+"/64")
	lp.AddAddr(t, pnapAddr4+"/24", pnapAddr6+"/64")
	return l
}

// run runs s in the session's namespace until the test ends: Run dials
// from there.
func (l *birdLab) run(s *Session) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.pnap.Do(func() error { return s.Run(ctx) }) }()
	l.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			l.t.Errorf("Run: %v", err)
		}
	})
}

// listen makes a Listener in the session's namespace.
func (l *birdLab) listen(sessions ...*Session) *Listener {
	l.t.Helper()
	var ln *Listener
	err := l.pnap.Do(func() error {
		var err error
		ln, err = Listen(netip.MustParseAddrPort("[::]:179"), sessions)
		return err
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { ln.Close() })
	return ln
}

// birdConfig is what the generated bird.conf says.
type birdConfig struct {
	localAS, peerAS uint32
	as4             bool   // 4-octet AS capability
	password        string // TCP MD5
	passive         bool
	internal        bool // receive routes from pnap (iBGP, gateway direct) instead of feeding them
	// The static routes BIRD feeds; prepended are exported with prependAS
	// twice more in their AS_PATH.
	v4, v6, v4Prepended, v6Prepended []netip.Prefix
	prependAS                        uint32
}

// String is the bird.conf. Routes are inline in their protocol blocks
// (BIRD refuses include there).
func (c birdConfig) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\nprotocol device { }\n", birdAddr4)
	b.WriteString(lab.BIRDStatic("static4", "ipv4", c.v4))
	b.WriteString(lab.BIRDStatic("static4p", "ipv4", c.v4Prepended))
	b.WriteString(lab.BIRDStatic("static6", "ipv6", c.v6))
	b.WriteString(lab.BIRDStatic("static6p", "ipv6", c.v6Prepended))
	fmt.Fprintf(&b, "protocol bgp pnap {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n", birdAddr4, c.localAS, pnapAddr4, c.peerAS)
	b.WriteString("\thold time 9;\n\tconnect delay time 1;\n\tconnect retry time 1;\n\terror wait time 1, 2;\n\tgraceful restart on;\n")
	if !c.as4 {
		b.WriteString("\tenable as4 off;\n")
	}
	if c.password != "" {
		fmt.Fprintf(&b, "\tpassword %q;\n", c.password)
	}
	if c.passive {
		b.WriteString("\tpassive on;\n")
	}
	if c.internal {
		b.WriteString("\tdirect;\n\tipv4 { import all; export none; gateway direct; };\n\tipv6 { import all; export none; gateway direct; };\n}\n")
		return b.String()
	}
	prepend := fmt.Sprintf("bgp_path.prepend(%d); bgp_path.prepend(%d);", c.prependAS, c.prependAS)
	fmt.Fprintf(&b, "\tipv4 { import none; export filter { if proto = \"static4p\" then { %s } accept; }; };\n", prepend)
	fmt.Fprintf(&b, "\tipv6 { import none; next hop address %s; export filter { if proto = \"static6p\" then { %s } accept; }; };\n}\n", birdAddr6, prepend)
	return b.String()
}

// feed is n4 IPv4 /26s from 198.18.0.0/15 and n6 IPv6 /48s from
// 2001:db8:8000::/33, every tenth of each family in the prepended sets.
func feed(c *birdConfig, n4, n6 int) {
	for i := range n4 {
		a := [4]byte{198, 18 + byte(i>>10), byte(i >> 2), byte(i&3) << 6}
		p := netip.PrefixFrom(netip.AddrFrom4(a), 26)
		if i%10 == 0 {
			c.v4Prepended = append(c.v4Prepended, p)
		} else {
			c.v4 = append(c.v4, p)
		}
	}
	for i := range n6 {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0x80 + byte(i>>8), byte(i)}
		p := netip.PrefixFrom(netip.AddrFrom16(a), 48)
		if i%10 == 0 {
			c.v6Prepended = append(c.v6Prepended, p)
		} else {
			c.v6 = append(c.v6, p)
		}
	}
}

// without returns ps without every k-th.
func without(ps []netip.Prefix, k int) []netip.Prefix {
	var out []netip.Prefix
	for i, p := range ps {
		if i%k != 0 {
			out = append(out, p)
		}
	}
	return out
}

// rib applies a session's Changes to a map, as the daemon does to the FIB.
type rib struct {
	mu     sync.Mutex
	routes map[netip.Prefix]Change
	eors   []Family
	events chan StateEvent
}

func newRIB(o *Options) *rib {
	r := &rib{routes: map[netip.Prefix]Change{}, events: make(chan StateEvent, 100)}
	o.OnChanges = func(ch []Change) {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range ch {
			if c.Withdraw {
				delete(r.routes, c.Prefix)
			} else {
				c.Communities = nil
				r.routes[c.Prefix] = c
			}
		}
	}
	o.OnEndOfRIB = func(f Family) {
		r.mu.Lock()
		r.eors = append(r.eors, f)
		r.mu.Unlock()
	}
	o.OnState = func(ev StateEvent) { r.events <- ev }
	return r
}

// waitState returns the first event into state to.
func (r *rib) waitState(t *testing.T, to State) StateEvent {
	t.Helper()
	deadline := time.After(labWait)
	for {
		select {
		case ev := <-r.events:
			if ev.To == to {
				return ev
			}
		case <-deadline:
			t.Fatalf("no transition to %v in %v", to, labWait)
		}
	}
}

// waitRoutes waits until the map holds exactly c's feed and, when eor,
// both families' End-of-RIB came; then it checks every route's next hop
// and path length: BIRD's AS, plus the two prepends for the prepended sets.
func (r *rib) waitRoutes(t *testing.T, c birdConfig, eor bool) {
	t.Helper()
	want := map[netip.Prefix]int{}
	for _, set := range []struct {
		ps  []netip.Prefix
		len int
	}{{c.v4, 1}, {c.v6, 1}, {c.v4Prepended, 3}, {c.v6Prepended, 3}} {
		for _, p := range set.ps {
			want[p] = set.len
		}
	}
	deadline := time.Now().Add(labWait)
	for {
		r.mu.Lock()
		n, eors := len(r.routes), len(r.eors)
		same := n == len(want)
		if same {
			for p := range want {
				if _, ok := r.routes[p]; !ok {
					same = false
					break
				}
			}
		}
		r.mu.Unlock()
		if same && (eors >= 2 || !eor) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %d routes, want %d (%d End-of-RIB)", labWait, n, len(want), eors)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	bad := 0
	for p, ch := range r.routes {
		nh := netip.MustParseAddr(birdAddr4)
		if p.Addr().Is6() {
			nh = netip.MustParseAddr(birdAddr6)
		}
		if ch.NextHop != nh || ch.PathLen != want[p] {
			if bad++; bad <= 5 {
				t.Errorf("%v: next hop %v, path length %d; want %v, %d", p, ch.NextHop, ch.PathLen, nh, want[p])
			}
		}
	}
	if eor && (!slices.Contains(r.eors, IPv4Unicast) || !slices.Contains(r.eors, IPv6Unicast)) {
		t.Errorf("End-of-RIB for %v, want both families", r.eors)
	}
	r.eors = nil
}

// TestBIRDFeed: BIRD feeds IPv4 and IPv6 routes; the session delivers
// exactly them, with BIRD's next hops and AS path lengths; BIRD withdraws
// some (reconfigured static routes), then all (protocol disabled), then
// is killed and restarted gracefully.
func TestBIRDFeed(t *testing.T) {
	for _, c := range []struct {
		name            string
		localAS, peerAS uint32 // pnap's, BIRD's
		as4             bool
		password        string
		pnapPassive     bool
	}{
		// A 2-octet BIRD: AS_PATH with AS_TRANS, AS4_PATH for the
		// 4-octet prepends. pnap connects.
		{"2-octet peer", 64497, 64496, false, "", false},
		// 4-octet ASes on both sides, TCP MD5; BIRD connects to pnap's
		// Listener.
		{"4-octet AS and MD5", 4200000002, 4200000001, true, "pnap-lab-md5", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newBIRDLab(t)
			conf := birdConfig{localAS: c.peerAS, peerAS: c.localAS, as4: c.as4, password: c.password,
				passive: !c.pnapPassive, prependAS: 4200000009}
			feed(&conf, 2000, 500)
			l.bird.Start(t, conf.String())

			opt := Options{
				LocalAS: c.localAS, RouterID: netip.MustParseAddr(pnapAddr4), PeerAS: c.peerAS,
				PeerAddr: netip.MustParseAddr(birdAddr4), LocalAddr: netip.MustParseAddr(pnapAddr4),
				Passive: c.pnapPassive, Password: c.password, HoldTime: 30 * time.Second,
				ConnectRetry: 500 * time.Millisecond, RestartTime: 120 * time.Second,
			}
			r := newRIB(&opt)
			s, err := NewSession(opt)
			if err != nil {
				t.Fatal(err)
			}
			if c.pnapPassive {
				l.listen(s)
			}
			l.run(s)
			ev := r.waitState(t, Established)
			if !ev.PeerGR.Advertised || ev.PeerGR.Time != 120*time.Second {
				t.Errorf("BIRD's graceful restart: %+v", ev.PeerGR)
			}
			r.waitRoutes(t, conf, true)
			if st := s.Stats(); st.HoldTime != 9*time.Second || st.IPv4.Received != 2000 || st.IPv6.Received != 500 {
				t.Errorf("stats %+v: want hold time 9s (BIRD's), 2000 and 500 prefixes received", st)
			}

			// Withdraw every 7th of each static set.
			conf.v4, conf.v6 = without(conf.v4, 7), without(conf.v6, 7)
			conf.v4Prepended, conf.v6Prepended = without(conf.v4Prepended, 7), without(conf.v6Prepended, 7)
			l.bird.Configure(t, conf.String())
			r.waitRoutes(t, conf, false)

			// disable: Cease, all routes to go now.
			l.bird.Control(t, "disable", "pnap")
			ev = r.waitState(t, Active)
			if ev.Reason != ReasonNotificationReceived || ev.Notification.Code != 6 || ev.KeepStale {
				t.Errorf("after disable: %+v", ev)
			}
			r.mu.Lock()
			clear(r.routes) // what the daemon does on such a loss
			r.mu.Unlock()
			l.bird.Control(t, "enable", "pnap")
			r.waitState(t, Established)
			r.waitRoutes(t, conf, true)

			// BIRD killed: a loss to ride out (graceful restart); BIRD
			// restarted with -R comes back as restarted and sends it all
			// again, End-of-RIB included.
			l.bird.Kill()
			ev = r.waitState(t, Active)
			if ev.Reason != ReasonTCPError || !ev.KeepStale || ev.PeerGR.Time != 120*time.Second {
				t.Errorf("after BIRD was killed: %+v", ev)
			}
			l.bird.Start(t, conf.String(), "-R")
			ev = r.waitState(t, Established)
			if !ev.PeerGR.Restarted {
				t.Errorf("BIRD restarted with -R: GR %+v, want the restart state bit", ev.PeerGR)
			}
			r.waitRoutes(t, conf, true)
		})
	}
}

// TestBIRDAnnounce: BIRD, an internal router, receives the session's
// announcements with their next hops, LOCAL_PREF and communities; loses a
// withdrawn one; and has them all again after the session was reset.
func TestBIRDAnnounce(t *testing.T) {
	l := newBIRDLab(t)
	l.bird.Start(t, birdConfig{localAS: 64496, peerAS: 64496, as4: true, internal: true}.String())
	opt := Options{
		LocalAS: 64496, RouterID: netip.MustParseAddr(pnapAddr4), PeerAS: 64496,
		PeerAddr: netip.MustParseAddr(birdAddr4), LocalAddr: netip.MustParseAddr(pnapAddr4),
		ConnectRetry: 500 * time.Millisecond,
	}
	r := newRIB(&opt)
	s, err := NewSession(opt)
	if err != nil {
		t.Fatal(err)
	}
	routes := []Route{
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHop: netip.MustParseAddr("198.51.100.3"), LocalPref: 300, Communities: []uint32{64496<<16 | 7}},
		{Prefix: netip.MustParsePrefix("198.18.4.0/22"), NextHop: netip.MustParseAddr("198.51.100.4")},
		{Prefix: netip.MustParsePrefix("2001:db8:8000::/48"), NextHop: netip.MustParseAddr("2001:db8:1::3"), LocalPref: 300},
	}
	if err := s.Announce(routes); err != nil {
		t.Fatal(err)
	}
	l.run(s)
	r.waitState(t, Established)

	// want waits until BIRD's routes from pnap are exactly want (prefix ->
	// next hop) and returns them.
	want := func(want map[string]string) map[string]string {
		t.Helper()
		deadline := time.Now().Add(labWait)
		for {
			got := l.bird.Routes(t, "protocol", "pnap")
			ok := len(got) == len(want)
			for p, nh := range want {
				ok = ok && strings.Contains(got[p], "via "+nh+" ")
			}
			if ok {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("BIRD's routes from pnap %v, want %v", slices.Sorted(maps.Keys(got)), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	all := map[string]string{"203.0.113.0/24": "198.51.100.3", "198.18.4.0/22": "198.51.100.4", "2001:db8:8000::/48": "2001:db8:1::3"}
	got := want(all)
	if r := got["203.0.113.0/24"]; !strings.Contains(r, "BGP.local_pref: 300") || !strings.Contains(r, "(64496,7)") {
		t.Errorf("BIRD's route:\n%s\nwant local_pref 300 and community (64496,7)", r)
	}
	if r := got["198.18.4.0/22"]; !strings.Contains(r, "BGP.local_pref: 100") {
		t.Errorf("BIRD's route:\n%s\nwant the default local_pref 100", r)
	}

	s.Withdraw([]netip.Prefix{netip.MustParsePrefix("198.18.4.0/22")})
	delete(all, "198.18.4.0/22")
	want(all)

	// BIRD resets the session; pnap reconnects and announces again.
	l.bird.Control(t, "restart", "pnap")
	r.waitState(t, Active)
	r.waitState(t, Established)
	want(all)
}
