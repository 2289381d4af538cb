package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/daemon"
	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
	"github.com/pnap-project/pnap/routes/bgp/bgptest"
)

// The BGP lab: bench/topo's topology with two backbones, pnapd in the
// DUT's namespace, a BIRD in each backbone's namespace as that backbone's
// router (one IPv4 session carrying both families, BIRD connecting to
// pnapd), and for announcements a BIRD in the source's namespace as the
// network's internal router.
const (
	pnapAS = 64496
	// bgpWait bounds the waits for sessions and whole tables: a BIRD
	// connects within a second or two of pnapd's start (its connect delay
	// and retry are 1 s) and sends a few thousand routes in well under one.
	bgpWait = 20 * time.Second
	// follow is the bound on the FIB, or an announced route,
	// following a change.
	follow = time.Second
)

var backboneAS = [2]uint32{64501, 64502}

// feed is what one backbone's BIRD exports: each prefix with the AS path
// length pnapd counts (BIRD's own AS plus its prepends).
type feed map[netip.Prefix]int

// maxPathLen is the longest path a feed has: BIRD's configuration has a
// static protocol per family and length up to it whatever the feed, so
// that changing a feed changes static routes only.
const maxPathLen = 4

func (f feed) count() (v4, v6 int) {
	for p := range f {
		if p.Addr().Is4() {
			v4++
		} else {
			v6++
		}
	}
	return v4, v6
}

// labRanges are the lab's own addresses: no prefix of the shared tables
// that overlaps them is fed, so the FIB's answers for the lab's links and
// traffic prefixes stay the test's.
var labRanges = []netip.Prefix{
	netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:2::/48"), netip.MustParsePrefix("2001:db8::/32"),
}

var tableSample struct {
	sync.Mutex
	v4, v6 []netip.Prefix
}

// tablePrefixes is 4500 IPv4 and 3000 IPv6 prefixes spread evenly over
// the shared full tables, among those the default import policy takes
// (no longer than /24 and /48) and outside the lab's ranges.
func tablePrefixes(t *testing.T) (v4, v6 []netip.Prefix) {
	t.Helper()
	tableSample.Lock()
	defer tableSample.Unlock()
	if tableSample.v4 != nil {
		return tableSample.v4, tableSample.v6
	}
	pick := func(name string, n, maxLen int) []netip.Prefix {
		rs, err := routes.ReadPrefixFile(shareddata.File(t, name))
		if err != nil {
			t.Fatal(err)
		}
		var ok []netip.Prefix
		for _, r := range rs {
			if b := r.Prefix.Bits(); b > 0 && b <= maxLen && !slices.ContainsFunc(labRanges, r.Prefix.Overlaps) {
				ok = append(ok, r.Prefix)
			}
		}
		out := make([]netip.Prefix, 0, n)
		for i := 0; len(out) < n; i += len(ok) / n {
			out = append(out, ok[i])
		}
		return out
	}
	tableSample.v4, tableSample.v6 = pick(shareddata.IPv4Full, 4500, 24), pick(shareddata.IPv6Full, 3000, 48)
	return tableSample.v4, tableSample.v6
}

// trafficPrefix is 198.19.k.0/24: the prefixes the lab sends traffic to.
func trafficPrefix(k int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(k), 0}), 24)
}

// labFeeds are the backbones' feeds. Traffic goes to trafficPrefix only
// (the benchmarking range); the shared tables' prefixes are looked up, never
// sent to. Of the shared tables' prefixes a
// third is held by both (half with the shorter path through bb-0, half
// through bb-1) and a third by each alone, about 3000 IPv4 and 2000 IPv6
// per backbone. For traffic, trafficPrefix(k), k < 32, is held by both,
// bb-0's path the shorter for even k and bb-1's for odd k; k in [64, 72)
// is bb-0's alone and k in [96, 104) bb-1's.
func labFeeds(t *testing.T) [2]feed {
	v4, v6 := tablePrefixes(t)
	fs := [2]feed{{}, {}}
	for _, ps := range [][]netip.Prefix{v4, v6} {
		for i, p := range ps {
			switch {
			case i%3 == 0 && i/3%2 == 0:
				fs[0][p], fs[1][p] = 1, 2
			case i%3 == 0:
				fs[0][p], fs[1][p] = 3, 2
			default:
				fs[i%3-1][p] = 2
			}
		}
	}
	for k := range 32 {
		fs[0][trafficPrefix(k)], fs[1][trafficPrefix(k)] = 1+2*(k%2), 2
	}
	for k := range 8 {
		fs[0][trafficPrefix(64+k)], fs[1][trafficPrefix(96+k)] = 2, 2
	}
	return fs
}

// bgpLab is a running BGP lab.
type bgpLab struct {
	*topo.Topology
	birds  [2]*lab.BIRD
	feeds  [2]feed // what each BIRD exports now
	birdGR [2]bool
	core   *lab.BIRD // the internal router, with bgpLabOptions.announce
	api    *apiClient
	pnapd  *topo.Pnapd
}

type bgpLabOptions struct {
	birdGR   [2]bool // graceful restart on each backbone's BIRD
	announce bool    // the internal router and pnapd's [[announce]] session to it
}

// newBGPLab builds the lab, starts the BIRDs, then pnapd, and returns
// once pnapd forwards (its sessions come up after).
func newBGPLab(t *testing.T, o bgpLabOptions) *bgpLab {
	t.Helper()
	lab.RequireBIRD(t)
	l := &bgpLab{Topology: topo.Build(t, topo.Options{Backbones: 2}), feeds: labFeeds(t), birdGR: o.birdGR}
	for i, bb := range l.Backbones {
		l.birds[i] = lab.NewBIRD(t, bb.NS)
		l.birds[i].Start(t, l.birdConf(i))
	}
	if o.announce {
		l.core = lab.NewBIRD(t, l.Source)
		l.core.Start(t, l.coreConf())
	}
	dir := t.TempDir()
	sock, path := filepath.Join(dir, "api.sock"), filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(path, []byte(l.pnapdConfig(sock, o.announce)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, l.pnapd, _ = startPnapdWith(t, path, l.DUT.Do)
	var err error
	if l.api, err = newAPIClient("", "unix:"+sock, ""); err != nil {
		t.Fatal(err)
	}
	return l
}

// pnapdConfig: the backbones with equal preferences, so that the AS path
// length chooses between them; BGP passive (BIRD connects); martians
// allowed, as the lab's prefixes are documentation and benchmarking ones;
// neither probes nor optimizer, so that only BGP and pins move routes.
func (l *bgpLab) pnapdConfig(sock string, announce bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[forwarder]\nqueues = 1\nxdp_mode = \"native\"\n\n[[customer]]\nname = \"lab\"\ninterface = %q\naddress_v4 = %q\naddress_v6 = %q\n",
		l.Customer.Name, l.CustomerAddr4, l.CustomerAddr6)
	fmt.Fprintf(&b, "\n[bgp]\nlocal_as = %d\nrouter_id = %q\nlisten = \"[::]:179\"\n", pnapAS, l.CustomerAddr4.Addr())
	for i, bb := range l.Backbones {
		fmt.Fprintf(&b, "\n[[backbone]]\nname = %q\ninterface = %q\ngateway_v4 = %q\ngateway_v6 = %q\npreference = 100\n",
			bb.Name, bb.Port.Name, bb.Gateway4, bb.Gateway6)
		fmt.Fprintf(&b, "\n  [backbone.bgp]\n  neighbors = [%q]\n  peer_as = %d\n  passive = true\n  allow_martians = true\n", bb.Gateway4, backboneAS[i])
	}
	if announce {
		fmt.Fprintf(&b, "\n[[announce]]\nname = \"core\"\nneighbor = %q\nlocal_pref = 200\n", l.Host4.Addr())
	}
	fmt.Fprintf(&b, "\n[probes]\nenabled = false\n\n[optimizer]\nenabled = false\n\n[api]\nlisten = \"unix:%s\"\n\n[state]\ndir = \"\"\n", sock)
	return b.String()
}

// birdConf is backbone i's BIRD exporting l.feeds[i] to pnapd: a static
// protocol per family and path length, prepended by the export filter;
// IPv6 routes go with the gateway's IPv6 address as next hop.
func (l *bgpLab) birdConf(i int) string {
	bb, as := l.Backbones[i], backboneAS[i]
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\nprotocol device { }\n", bb.Gateway4)
	for n := 1; n <= maxPathLen; n++ {
		var v4, v6 []netip.Prefix
		for p, pl := range l.feeds[i] {
			switch {
			case pl != n:
			case p.Addr().Is4():
				v4 = append(v4, p)
			default:
				v6 = append(v6, p)
			}
		}
		slices.SortFunc(v4, netip.Prefix.Compare)
		slices.SortFunc(v6, netip.Prefix.Compare)
		b.WriteString(lab.BIRDStatic(fmt.Sprintf("s4_%d", n), "ipv4", v4))
		b.WriteString(lab.BIRDStatic(fmt.Sprintf("s6_%d", n), "ipv6", v6))
	}
	b.WriteString("filter by_length {\n")
	for n := 2; n <= maxPathLen; n++ {
		fmt.Fprintf(&b, "\tif proto = \"s4_%d\" || proto = \"s6_%d\" then {%s }\n", n, n, strings.Repeat(fmt.Sprintf(" bgp_path.prepend(%d);", as), n-1))
	}
	b.WriteString("\taccept;\n}\n")
	fmt.Fprintf(&b, "protocol bgp pnap {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n", bb.Gateway4, as, bb.Addr4.Addr(), pnapAS)
	b.WriteString("\tconnect delay time 1;\n\tconnect retry time 1;\n\terror wait time 1, 2;\n")
	fmt.Fprintf(&b, "\tgraceful restart %s;\n", map[bool]string{true: "on", false: "off"}[l.birdGR[i]])
	b.WriteString("\tipv4 { import none; export filter by_length; };\n")
	fmt.Fprintf(&b, "\tipv6 { import none; next hop address %s; export filter by_length; };\n}\n", bb.Gateway6)
	return b.String()
}

// coreConf is the internal router: iBGP with pnapd, which connects to it;
// the backbones' gateways, the next hops pnapd announces, are resolved
// through pnapd (static routes standing in for its IGP).
func (l *bgpLab) coreConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\nprotocol device { }\n", l.Host4.Addr())
	fmt.Fprintf(&b, "protocol static igp4 { ipv4; route 198.18.96.0/19 via %s; }\n", l.CustomerAddr4.Addr())
	fmt.Fprintf(&b, "protocol static igp6 { ipv6; route 2001:2::/48 via %s; }\n", l.CustomerAddr6.Addr())
	fmt.Fprintf(&b, "protocol bgp pnap {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n\tpassive on;\n", l.Host4.Addr(), pnapAS, l.CustomerAddr4.Addr(), pnapAS)
	b.WriteString("\tipv4 { import all; export none; gateway recursive; };\n\tipv6 { import all; export none; gateway recursive; };\n}\n")
	return b.String()
}

// sessions is GET /v1/bgp, by session name.
func (l *bgpLab) sessions(t *testing.T) map[string]daemon.BGPSession {
	t.Helper()
	var ss []daemon.BGPSession
	if _, err := l.api.do("GET", "/v1/bgp", nil, &ss); err != nil {
		t.Fatal(err)
	}
	out := map[string]daemon.BGPSession{}
	for _, s := range ss {
		out[s.Name] = s
	}
	return out
}

// waitSession polls /v1/bgp every 5 ms until session name satisfies ok,
// and returns it and how long that took; it fails t after within.
func (l *bgpLab) waitSession(t *testing.T, name string, within time.Duration, ok func(daemon.BGPSession) bool) (daemon.BGPSession, time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		s := l.sessions(t)[name]
		if ok(s) {
			return s, time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("session %s after %v: %+v\npnapd's log:\n%s", name, within, s, l.pnapd)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func uptime(s daemon.BGPSession) time.Duration {
	return time.Duration(s.UptimeSec * float64(time.Second))
}

// holds says whether s is Established and holds exactly f, none stale.
func holds(s daemon.BGPSession, f feed) bool {
	v4, v6 := f.count()
	return s.State == "Established" && s.IPv4.Held == v4 && s.IPv6.Held == v6 && s.Stale == 0
}

// waitConverged waits until each backbone's session holds its whole feed
// and returns, for each, the time from the session coming up to then: its
// uptime when a poll (every 5 ms) first saw it complete.
func (l *bgpLab) waitConverged(t *testing.T) [2]time.Duration {
	t.Helper()
	var took [2]time.Duration
	start := time.Now()
	for {
		ss, done := l.sessions(t), true
		for i, bb := range l.Backbones {
			if took[i] == 0 && holds(ss[bb.Name], l.feeds[i]) {
				took[i] = max(uptime(ss[bb.Name]), time.Nanosecond)
			}
			done = done && took[i] > 0
		}
		if done {
			return took
		}
		if time.Since(start) > bgpWait {
			t.Fatalf("after %v the sessions do not hold their feeds: %+v\npnapd's log:\n%s", bgpWait, ss, l.pnapd)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkCounts compares, per backbone and family, the routes pnapd holds
// from the session (/v1/bgp) with the feed and with what BIRD, if it runs,
// says it exports.
func (l *bgpLab) checkCounts(t *testing.T) {
	t.Helper()
	ss := l.sessions(t)
	for i, bb := range l.Backbones {
		v4, v6 := l.feeds[i].count()
		s, ex := ss[bb.Name], map[string]int{"ipv4": v4, "ipv6": v6}
		if l.birds[i].Running() {
			ex = l.birds[i].Exported(t, "pnap")
		}
		if s.IPv4.Held != v4 || s.IPv6.Held != v6 || ex["ipv4"] != v4 || ex["ipv6"] != v6 {
			t.Errorf("%s: pnapd holds %d IPv4 and %d IPv6 routes, BIRD exports %d and %d; the feed has %d and %d",
				bb.Name, s.IPv4.Held, s.IPv6.Held, ex["ipv4"], ex["ipv6"], v4, v6)
		}
	}
}

// fibWant is what pnapd's FIB should answer for a, by the feeds: the
// longest prefix a feed holds that contains a, its holders, and the
// default among them (the shortest AS path; bb-0 on a tie, the
// preferences being equal). ok is false when no feed covers a.
func (l *bgpLab) fibWant(a netip.Addr) (w daemon.FIBAnswer, ok bool) {
	for bits := a.BitLen(); bits >= 0; bits-- {
		p := netip.PrefixFrom(a, bits).Masked()
		best := -1
		for i, f := range l.feeds {
			if pl, held := f[p]; held {
				w.Holders = append(w.Holders, l.Backbones[i].Name)
				if best < 0 || pl < l.feeds[best][p] {
					best = i
				}
			}
		}
		if best >= 0 {
			w.Prefix, w.Backbone = p.String(), l.Backbones[best].Name
			return w, true
		}
	}
	return w, false
}

// fibMismatches looks each of addrs up in pnapd's FIB (GET /v1/fib) and
// says, one line each, where the answer is not fibWant's.
func (l *bgpLab) fibMismatches(t *testing.T, addrs []netip.Addr) []string {
	t.Helper()
	var bad []string
	for _, a := range addrs {
		want, covered := l.fibWant(a)
		var got daemon.FIBAnswer
		_, err := l.api.do("GET", "/v1/fib?addr="+a.String(), nil, &got)
		switch {
		case err != nil && !strings.Contains(err.Error(), "HTTP 404"):
			t.Fatal(err)
		case err != nil && covered:
			bad = append(bad, fmt.Sprintf("%v: no route; want %s via %s, held by %v", a, want.Prefix, want.Backbone, want.Holders))
		case err != nil:
		case !covered:
			bad = append(bad, fmt.Sprintf("%v: %s via %s; want no route", a, got.Prefix, got.Backbone))
		case got.Prefix != want.Prefix || got.Backbone != want.Backbone || !slices.Equal(got.Holders, want.Holders):
			bad = append(bad, fmt.Sprintf("%v: %s via %s, held by %v; want %s via %s, held by %v", a, got.Prefix, got.Backbone, got.Holders, want.Prefix, want.Backbone, want.Holders))
		}
	}
	return bad
}

// checkFIB fails t when a lookup of addrs differs from fibWant.
func (l *bgpLab) checkFIB(t *testing.T, addrs []netip.Addr) {
	t.Helper()
	if bad := l.fibMismatches(t, addrs); len(bad) > 0 {
		t.Errorf("%d of %d lookups differ from BIRD's routes:\n%s", len(bad), len(addrs), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

// waitFIB polls the lookups of addrs until all are fibWant's and returns
// the time since start. It fails t when that took longer than follow, or
// never came within bgpWait.
func (l *bgpLab) waitFIB(t *testing.T, addrs []netip.Addr, start time.Time) time.Duration {
	t.Helper()
	for {
		bad := l.fibMismatches(t, addrs)
		took := time.Since(start)
		if len(bad) == 0 {
			if took > follow {
				t.Errorf("the FIB followed BIRD after %v, want within %v", took, follow)
			}
			return took
		}
		if took > bgpWait {
			t.Fatalf("after %v, %d of %d lookups differ from BIRD's routes:\n%s", took, len(bad), len(addrs), strings.Join(bad[:min(len(bad), 10)], "\n"))
		}
	}
}

// randomIn is an address in p, its host bits drawn from rng.
func randomIn(p netip.Prefix, rng *rand.Rand) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// addrsIn is an address drawn (seeded) in each of ps, in order.
func addrsIn(ps []netip.Prefix) []netip.Addr {
	rng := rand.New(rand.NewPCG(7, uint64(len(ps))))
	out := make([]netip.Addr, len(ps))
	for i, p := range ps {
		out[i] = randomIn(p, rng)
	}
	return out
}

// sample is n/2 addresses in IPv4 and n/2 in IPv6 prefixes of either
// feed, drawn with seed.
func (l *bgpLab) sample(n int, seed uint64) []netip.Addr {
	var v4, v6 []netip.Prefix
	for _, f := range l.feeds {
		for p := range f {
			if p.Addr().Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	var out []netip.Addr
	for _, ps := range [][]netip.Prefix{v4, v6} {
		slices.SortFunc(ps, netip.Prefix.Compare)
		for range n / 2 {
			out = append(out, randomIn(ps[rng.IntN(len(ps))], rng))
		}
	}
	return out
}

// flow is a stream of numbered datagrams from the source to dst.
type flow struct {
	tag string // flowTag and one letter: no tag is a prefix of another
	dst netip.Addr
	s   *udpSender
	// sent counts the datagrams sent, sentAt says when each sequence
	// number was; at, per backbone, the sequence numbers that arrived at
	// its far end.
	sent   int
	sentAt []time.Time
	at     [2]map[uint32]bool
}

const flowTag = "pnap-bgp-flow-"

func (l *bgpLab) newFlow(t *testing.T, letter string, dst netip.Addr) *flow {
	return &flow{tag: flowTag + letter, dst: dst, s: newUDPSender(t, l.Source, netip.AddrPortFrom(dst, 9)), at: [2]map[uint32]bool{{}, {}}}
}

// lost is how many of the flow's datagrams arrived at neither backbone.
func (f *flow) lost() int {
	got := maps.Clone(f.at[0])
	maps.Copy(got, f.at[1])
	return f.sent - len(got)
}

// lastAt is the backbone the flow's last datagram that arrived went to.
func (f *flow) lastAt() int {
	m := [2]int64{-1, -1}
	for i := range f.at {
		for s := range f.at[i] {
			m[i] = max(m[i], int64(s))
		}
	}
	if m[1] > m[0] {
		return 1
	}
	return 0
}

// switched is when the flow's first datagram to arrive at backbone to was
// sent, as a time since start.
func (f *flow) switched(to int, start time.Time) time.Duration {
	first := -1
	for s := range f.at[to] {
		if first < 0 || int(s) < first {
			first = int(s)
		}
	}
	if first < 0 {
		return -1
	}
	return f.sentAt[first].Sub(start)
}

// traffic sends, from the source, a datagram per flow about every
// millisecond for d, and calls during 300 ms in; it captures what arrives at both
// backbones' far ends (where it ends: the backbone namespaces do not
// forward) into the flows. First it makes sure each flow's path is
// resolved: a datagram to it arrives somewhere.
func (l *bgpLab) traffic(t *testing.T, flows []*flow, d time.Duration, during func()) {
	t.Helper()
	caps := [2]*lab.Capture{l.Backbones[0].Far.Capture(t), l.Backbones[1].Far.Capture(t)}
	for _, f := range flows {
		l.reach(t, f.dst, caps)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }() // also when during fails t
	for i, c := range caps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				fr, err := c.NextMatch(50*time.Millisecond, func(fr []byte) bool { return bytes.Contains(fr, []byte(flowTag)) })
				if err != nil {
					select {
					case <-stop:
						return
					default:
					}
					if !errors.Is(err, lab.ErrTimeout) {
						return
					}
					continue
				}
				k := bytes.Index(fr, []byte(flowTag)) + len(flowTag)
				if k+5 > len(fr) {
					continue
				}
				for _, f := range flows {
					if f.tag[len(flowTag)] == fr[k] {
						f.at[i][binary.BigEndian.Uint32(fr[k+1:])] = true
					}
				}
			}
		}()
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		start := time.Now()
		for seq := uint32(0); time.Since(start) < d; seq++ {
			for _, f := range flows {
				f.sentAt = append(f.sentAt, time.Now())
				if f.s.send(f.tag, seq) == nil {
					f.sent++
				}
			}
			time.Sleep(time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	during()
	<-sent
	time.Sleep(200 * time.Millisecond) // the last datagrams on their way
}

// reach sends datagrams to dst until one arrives at either capture.
func (l *bgpLab) reach(t *testing.T, dst netip.Addr, caps [2]*lab.Capture) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		payload := []byte(fmt.Sprintf("pnap-bgp-warm-%v-%d", dst, i))
		if err := l.Source.SendUDP(netip.AddrPort{}, netip.AddrPortFrom(dst, 9), payload); err != nil {
			t.Fatal(err)
		}
		for _, c := range caps {
			if _, err := c.NextMatch(20*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, payload) }); err == nil {
				return
			}
		}
	}
	t.Fatalf("nothing sent to %v reached a backbone within 5 s:\n%s", dst, l.pnapd)
}

// checkFlows fails t when a flow lost datagrams, or its last went
// elsewhere than to backbone to[i].
func (l *bgpLab) checkFlows(t *testing.T, flows []*flow, to []int) {
	t.Helper()
	for i, f := range flows {
		t.Logf("flow to %v: %d sent, %d lost, %d at %s, %d at %s", f.dst, f.sent, f.lost(), len(f.at[0]), l.Backbones[0].Name, len(f.at[1]), l.Backbones[1].Name)
		if f.sent == 0 || f.lost() != 0 {
			t.Errorf("flow to %v: %d sent, %d lost; want none lost", f.dst, f.sent, f.lost())
		}
		if got := f.lastAt(); got != to[i] {
			t.Errorf("flow to %v ends at %s, want %s", f.dst, l.Backbones[got].Name, l.Backbones[to[i]].Name)
		}
	}
}

// TestBGPConvergence: two BIRDs feed about 3000 IPv4 and 2000 IPv6 routes
// each, a third of them shared; once the sessions hold them, pnapd's
// routes per backbone equal what BIRD exports: counts per family, and 400
// sampled lookups (prefix, holders, default backbone), IPv4 and IPv6.
func TestBGPConvergence(t *testing.T) {
	l := newBGPLab(t, bgpLabOptions{birdGR: [2]bool{true, true}})
	took := l.waitConverged(t)
	for i, bb := range l.Backbones {
		v4, v6 := l.feeds[i].count()
		t.Logf("%s: %d IPv4 + %d IPv6 routes held %v after its session came up", bb.Name, v4, v6, took[i].Round(time.Millisecond))
	}
	l.checkCounts(t)
	l.checkFIB(t, l.sample(400, 1))
}

// changeFeed changes bb-0's feed as TestBGPUnderTraffic does. Of the
// prefixes both hold, a tenth of those bb-0 is the default for is
// withdrawn and a tenth gets a longer path (its default flips to bb-1); a
// tenth of those bb-1 is the default for gets a shorter one (flips to
// bb-0). A tenth of bb-0's own are withdrawn; a tenth of bb-1's own are
// added, with a shorter path, and so are 100 prefixes neither held. It
// returns the prefixes that changed.
func changeFeed(fs *[2]feed) []netip.Prefix {
	const (
		shared0 = iota // held by both, bb-0 the default
		shared1        // held by both, bb-1 the default
		own0
		own1
	)
	f0 := maps.Clone(fs[0])
	var changed []netip.Prefix
	var seen [4]int
	all := slices.Concat(slices.Collect(maps.Keys(fs[0])), slices.Collect(maps.Keys(fs[1])))
	slices.SortFunc(all, netip.Prefix.Compare)
	for _, p := range slices.Compact(all) {
		pl0, in0 := fs[0][p]
		_, in1 := fs[1][p]
		kind := own1
		switch {
		case in0 && in1 && pl0 == 1:
			kind = shared0
		case in0 && in1:
			kind = shared1
		case in0:
			kind = own0
		}
		k := seen[kind] % 10
		seen[kind]++
		switch {
		case (kind == shared0 || kind == own0) && k == 0:
			delete(f0, p)
		case kind == shared0 && k == 1:
			f0[p] = maxPathLen
		case (kind == shared1 || kind == own1) && k == 0:
			f0[p] = 1
		default:
			continue
		}
		changed = append(changed, p)
	}
	for k := range 100 {
		p := trafficPrefix(128 + k)
		f0[p] = 1
		changed = append(changed, p)
	}
	fs[0] = f0
	return changed
}

// TestBGPUnderTraffic: under traffic BIRD withdraws routes, lengthens and
// shortens AS paths (the default backbone of shared prefixes flips) and
// adds routes, all in one `birdc configure`; the FIB follows within 1 s
// (100 changed prefixes looked up until right), and the flows to prefixes
// still held elsewhere lose nothing: one whose bb-0 route is withdrawn,
// one whose default flips to bb-1, one whose default flips to bb-0, and
// one unchanged.
func TestBGPUnderTraffic(t *testing.T) {
	l := newBGPLab(t, bgpLabOptions{birdGR: [2]bool{true, true}})
	l.waitConverged(t)
	next := l.feeds
	changed := changeFeed(&next)
	// The flows' prefixes, set whatever changeFeed did with them.
	withdrawn, longer, shorter, same := trafficPrefix(0), trafficPrefix(2), trafficPrefix(1), trafficPrefix(4)
	delete(next[0], withdrawn)
	next[0][longer], next[0][shorter], next[0][same] = 4, 1, 1
	changed = append(changed, withdrawn, longer, shorter)
	// The follow is timed on 100 of them, looked up until right; all are
	// checked after.
	rng := rand.New(rand.NewPCG(3, 4))
	rng.Shuffle(len(changed), func(i, j int) { changed[i], changed[j] = changed[j], changed[i] })
	watch := addrsIn(changed[:min(len(changed), 100)])

	flows := []*flow{
		l.newFlow(t, "w", randomIn(withdrawn, rng)), l.newFlow(t, "l", randomIn(longer, rng)),
		l.newFlow(t, "s", randomIn(shorter, rng)), l.newFlow(t, "u", randomIn(same, rng)),
	}
	var took time.Duration
	var start time.Time
	l.traffic(t, flows, 2*time.Second, func() {
		l.feeds = next
		start = time.Now()
		l.birds[0].Configure(t, l.birdConf(0))
		took = l.waitFIB(t, watch, start)
	})
	t.Logf("%d prefixes changed by one birdc configure: %d lookups of them were all right %v after it started; the flows moved after %v, %v, %v",
		len(changed), len(watch), took.Round(time.Millisecond), flows[0].switched(1, start).Round(time.Millisecond),
		flows[1].switched(1, start).Round(time.Millisecond), flows[2].switched(0, start).Round(time.Millisecond))
	l.checkFlows(t, flows, []int{1, 1, 0, 0})
	l.waitConverged(t)
	l.checkCounts(t)
	l.checkFIB(t, addrsIn(changed))
	l.checkFIB(t, l.sample(400, 2))
}

// generation is the FIB's Version number (GET /v1/status).
func (l *bgpLab) generation(t *testing.T) uint64 {
	t.Helper()
	var st daemon.Status
	if _, err := l.api.do("GET", "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	return st.Generation
}

// TestBGPSessionLoss: bb-0's BIRD, without graceful restart, is killed
// under traffic: its routes leave the FIB in one Version, the prefixes bb-1
// holds too move to it, and the flow to one of them loses nothing. Then
// bb-1's BIRD, with graceful restart, shuts down for a restart: its routes
// stay, stale, and keep forwarding; BIRD comes back (bird -R) without a
// tenth of them, and after its End-of-RIB those are swept and the rest
// are fresh.
func TestBGPSessionLoss(t *testing.T) {
	l := newBGPLab(t, bgpLabOptions{birdGR: [2]bool{false, true}})
	l.waitConverged(t)
	bb0, bb1 := l.Backbones[0].Name, l.Backbones[1].Name
	sample := l.sample(400, 3)

	t.Run("killed", func(t *testing.T) {
		gen := l.generation(t)
		rng := rand.New(rand.NewPCG(5, 6))
		flows := []*flow{l.newFlow(t, "m", randomIn(trafficPrefix(0), rng)), l.newFlow(t, "b", randomIn(trafficPrefix(1), rng))}
		var took time.Duration
		var start time.Time
		l.traffic(t, flows, 1500*time.Millisecond, func() {
			start = time.Now()
			l.birds[0].Kill()
			l.waitSession(t, bb0, bgpWait, func(s daemon.BGPSession) bool { return s.IPv4.Held == 0 && s.IPv6.Held == 0 })
			took = time.Since(start)
		})
		l.feeds[0] = feed{}
		t.Logf("BIRD killed: %s's routes withdrawn %v later; the flow it carried moved to %s after %v",
			bb0, took.Round(time.Millisecond), bb1, flows[0].switched(1, start).Round(time.Millisecond))
		if took > follow {
			t.Errorf("%s's routes withdrawn %v after BIRD was killed, want within %v", bb0, took, follow)
		}
		if got := l.generation(t); got != gen+1 {
			t.Errorf("FIB generation %d before BIRD was killed, %d after; want the withdrawal in one Version", gen, got)
		}
		l.checkFlows(t, flows, []int{1, 1})
		if s := l.sessions(t)[bb0]; s.State == "Established" || s.Stale != 0 {
			t.Errorf("%s after BIRD was killed: %+v", bb0, s)
		}
		l.checkFIB(t, sample)
	})

	t.Run("graceful restart", func(t *testing.T) {
		before := l.sessions(t)[bb1]
		rng := rand.New(rand.NewPCG(7, 8))
		flows := []*flow{l.newFlow(t, "g", randomIn(trafficPrefix(96), rng))}
		l.traffic(t, flows, 1500*time.Millisecond, func() {
			l.birds[1].Control(t, "graceful", "restart")
			// The state changes before the feed has marked the routes stale.
			s, _ := l.waitSession(t, bb1, bgpWait, func(s daemon.BGPSession) bool { return s.State != "Established" && s.Stale > 0 })
			if s.Stale != before.IPv4.Held+before.IPv6.Held || s.IPv4.Held != before.IPv4.Held || s.IPv6.Held != before.IPv6.Held {
				t.Errorf("%s while BIRD restarts: %+v; want all %d+%d routes kept, stale", bb1, s, before.IPv4.Held, before.IPv6.Held)
			}
			l.checkFIB(t, sample)
		})
		l.checkFlows(t, flows, []int{1})
		s := l.sessions(t)[bb1]
		if s.State == "Established" || s.Stale != before.IPv4.Held+before.IPv6.Held {
			t.Errorf("%s %v into BIRD's restart: %+v; want all its routes still kept, stale", bb1, 1500*time.Millisecond, s)
		}
		t.Logf("BIRD shut down for a graceful restart: %s kept its %d routes, stale, and forwarded on them", bb1, s.Stale)

		// BIRD comes back without a tenth of its routes.
		var gone []netip.Prefix
		for i, p := range slices.SortedFunc(maps.Keys(l.feeds[1]), netip.Prefix.Compare) {
			if i%10 == 0 && p != trafficPrefix(96) {
				gone = append(gone, p)
				delete(l.feeds[1], p)
			}
		}
		start := time.Now()
		l.birds[1].Start(t, l.birdConf(1), "-R")
		s, _ = l.waitSession(t, bb1, bgpWait, func(s daemon.BGPSession) bool { return s.State == "Established" })
		up := time.Since(start) - uptime(s)
		s, _ = l.waitSession(t, bb1, bgpWait, func(s daemon.BGPSession) bool { return holds(s, l.feeds[1]) })
		t.Logf("BIRD restarted: session up %v after bird -R, %d stale routes swept and the rest fresh %v after that",
			up.Round(time.Millisecond), len(gone), uptime(s).Round(time.Millisecond))
		l.checkCounts(t)
		l.checkFIB(t, addrsIn(gone))
		l.checkFIB(t, sample)
	})
}

// coreRoute is the internal router's best route for p, as
// `show route for p all` shows it; "" when it has none.
func (l *bgpLab) coreRoute(t *testing.T, p netip.Prefix) string {
	t.Helper()
	return l.core.Routes(t, "for", p.String())[p.String()]
}

// waitCore polls the internal router until its route for p satisfies ok
// and returns the time since start; it fails t when that took longer than
// follow, or did not come within bgpWait.
func (l *bgpLab) waitCore(t *testing.T, p netip.Prefix, start time.Time, what string, ok func(route string) bool) time.Duration {
	t.Helper()
	for {
		r := l.coreRoute(t, p)
		took := time.Since(start)
		if ok(r) {
			if took > follow {
				t.Errorf("%v: %s after %v, want within %v", p, what, took, follow)
			}
			return took
		}
		if took > bgpWait {
			t.Fatalf("%v: not %s after %v; BIRD's route:\n%s", p, what, took, r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBGPAnnounce: a BIRD as the network's internal router, iBGP with
// pnapd's [[announce]] session. An IPv4 and an IPv6 prefix whose default is
// bb-0 are pinned to bb-1: within 1 s BIRD's best route for each is
// pnapd's, with bb-1's gateway as next hop and the configured LOCAL_PREF;
// unpinned, it is withdrawn within 1 s.
func TestBGPAnnounce(t *testing.T) {
	l := newBGPLab(t, bgpLabOptions{birdGR: [2]bool{true, true}, announce: true})
	l.waitConverged(t)
	l.waitSession(t, "core", bgpWait, func(s daemon.BGPSession) bool { return s.State == "Established" })
	if n := len(l.core.Routes(t, "protocol", "pnap")); n != 0 {
		t.Fatalf("the internal router has %d routes from pnapd before any pin, want none", n)
	}
	_, v6 := tablePrefixes(t)
	pins := []netip.Prefix{trafficPrefix(0), v6[0]} // held by both, bb-0's path the shorter
	bb1 := l.Backbones[1]
	for _, p := range pins {
		gw := bb1.Gateway4
		if p.Addr().Is6() {
			gw = bb1.Gateway6
		}
		if w, _ := l.fibWant(p.Addr()); w.Backbone != l.Backbones[0].Name || len(w.Holders) != 2 {
			t.Fatalf("%v: %+v, want held by both with bb-0 the default", p, w)
		}
		start := time.Now()
		if _, err := l.api.do("POST", "/v1/pins", map[string]string{"prefix": p.String(), "backbone": bb1.Name}, nil); err != nil {
			t.Fatal(err)
		}
		took := l.waitCore(t, p, start, "announced via "+bb1.Name, func(r string) bool {
			return strings.Contains(r, "[pnap ") && strings.Contains(r, "BGP.next_hop: "+gw.String())
		})
		r := l.coreRoute(t, p)
		if !strings.Contains(r, "BGP.local_pref: 200") {
			t.Errorf("the internal router's route for %v:\n%s\nwant LOCAL_PREF 200", p, r)
		}
		t.Logf("%v pinned to %s: the internal router's best route is via %v %v later", p, bb1.Name, gw, took.Round(time.Millisecond))

		start = time.Now()
		if _, err := l.api.do("DELETE", "/v1/pins?prefix="+p.String(), nil, nil); err != nil {
			t.Fatal(err)
		}
		took = l.waitCore(t, p, start, "withdrawn", func(r string) bool { return !strings.Contains(r, "[pnap ") })
		t.Logf("%v unpinned: withdrawn from the internal router %v later", p, took.Round(time.Millisecond))
	}
}

// testSpeaker is a backbone's router made of GoBGP's message codec and
// nothing else: it connects to pnapd from its namespace and sends what the
// test says, malformed UPDATEs included.
type testSpeaker struct {
	c    net.Conn
	msgs chan speakerMsg // what pnapd sends, until the connection ends
}

type speakerMsg struct {
	typ  uint8
	body []byte
}

// BGP message types (RFC 4271 4.1).
const (
	msgOpen         = 1
	msgUpdate       = 2
	msgNotification = 3
	msgKeepalive    = 4
)

// dialSpeaker connects from local, in ns, to pnapd at remote and brings
// the session up: both unicast families, route refresh, 4-octet AS, and
// graceful restart when gr is not nil.
func dialSpeaker(t *testing.T, ns *lab.NS, local, remote netip.Addr, gr *bgp.CapGracefulRestart) *testSpeaker {
	t.Helper()
	var c net.Conn
	deadline := time.Now().Add(bgpWait)
	for {
		err := ns.Do(func() error {
			d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), Timeout: time.Second}
			var err error
			c, err = d.Dial("tcp", netip.AddrPortFrom(remote, 179).String())
			return err
		})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("speaker: connect to %v: %v", remote, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sp := &testSpeaker{c: c, msgs: make(chan speakerMsg, 64)}
	t.Cleanup(func() { c.Close() })
	go sp.read()
	caps := []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC), bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC),
		bgp.NewCapRouteRefresh(), bgp.NewCapFourOctetASNumber(bgptest.PeerAS),
	}
	if gr != nil {
		caps = append(caps, gr)
	}
	open, err := bgp.NewBGPOpenMessage(uint16(bgptest.PeerAS), 90, bgptest.NextHop4, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		t.Fatal(err)
	}
	sp.send(t, open)
	sp.expect(t, msgOpen)
	sp.send(t, bgp.NewBGPKeepAliveMessage())
	sp.expect(t, msgKeepalive)
	return sp
}

// read passes pnapd's messages to msgs until the connection ends.
func (sp *testSpeaker) read() {
	defer close(sp.msgs)
	for {
		hdr := make([]byte, 19)
		if _, err := io.ReadFull(sp.c, hdr); err != nil {
			return
		}
		body := make([]byte, max(int(binary.BigEndian.Uint16(hdr[16:])), 19)-19)
		if _, err := io.ReadFull(sp.c, body); err != nil {
			return
		}
		sp.msgs <- speakerMsg{hdr[18], body}
	}
}

// expect reads pnapd's messages, skipping KEEPALIVEs and UPDATEs unless
// asked for, until one of type typ, and returns its body.
func (sp *testSpeaker) expect(t *testing.T, typ uint8) []byte {
	t.Helper()
	timeout := time.After(bgpWait)
	for {
		select {
		case m, ok := <-sp.msgs:
			switch {
			case !ok:
				t.Fatalf("speaker: pnapd closed the connection; want message type %d", typ)
			case m.typ == typ:
				return m.body
			case m.typ != msgKeepalive && m.typ != msgUpdate:
				t.Fatalf("speaker: message type %d (% x); want type %d", m.typ, m.body, typ)
			}
		case <-timeout:
			t.Fatalf("speaker: no message type %d in %v", typ, bgpWait)
		}
	}
}

func (sp *testSpeaker) send(t *testing.T, m *bgp.BGPMessage) {
	t.Helper()
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	sp.sendRaw(t, b)
}

// sendUpdate sends an UPDATE whose body is body.
func (sp *testSpeaker) sendUpdate(t *testing.T, body []byte) {
	t.Helper()
	msg := append(bytes.Repeat([]byte{0xff}, 16), 0, 0, msgUpdate)
	binary.BigEndian.PutUint16(msg[16:], uint16(len(msg)+len(body)))
	sp.sendRaw(t, append(msg, body...))
}

func (sp *testSpeaker) sendRaw(t *testing.T, b []byte) {
	t.Helper()
	sp.c.SetWriteDeadline(time.Now().Add(bgpWait))
	if _, err := sp.c.Write(b); err != nil {
		t.Fatalf("speaker: send: %v", err)
	}
}

// update is a well-formed UPDATE body announcing ps (withdrawing them,
// with withdraw) with the corpus's next hops and an AS_PATH of its AS.
func update(t *testing.T, withdraw bool, ps ...netip.Prefix) []byte {
	t.Helper()
	var v4, v6 []bgp.PathNLRI
	for _, p := range ps {
		n, err := bgp.NewIPAddrPrefix(p)
		if err != nil {
			t.Fatal(err)
		}
		if p.Addr().Is4() {
			v4 = append(v4, bgp.PathNLRI{NLRI: n})
		} else {
			v6 = append(v6, bgp.PathNLRI{NLRI: n})
		}
	}
	var m *bgp.BGPMessage
	if withdraw {
		var attrs []bgp.PathAttributeInterface
		if len(v6) > 0 {
			a, err := bgp.NewPathAttributeMpUnreachNLRI(bgp.RF_IPv6_UC, v6)
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, a)
		}
		m = bgp.NewBGPUpdateMessage(v4, attrs, nil)
	} else {
		attrs := []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(0),
			bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{bgptest.PeerAS})}),
		}
		if len(v4) > 0 {
			nh, err := bgp.NewPathAttributeNextHop(bgptest.NextHop4)
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, nh)
		}
		if len(v6) > 0 {
			a, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, v6, bgptest.NextHop6)
			if err != nil {
				t.Fatal(err)
			}
			attrs = append(attrs, a)
		}
		m = bgp.NewBGPUpdateMessage(nil, attrs, v4)
	}
	b, err := m.Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return b[19:]
}

// speakerLab is pnapd with one backbone whose router is a testSpeaker,
// on the malformed corpus's addresses, and what the speaker's routes in
// pnapd's FIB should be.
type speakerLab struct {
	x     *topo.Topology
	api   *apiClient
	pnapd *topo.Pnapd
	sp    *testSpeaker
	held  map[netip.Prefix]bool
	// probes are the prefixes looked up: the background, the corpus's
	// and the marker's.
	probes []netip.Prefix
}

// syncMarker is the prefix whose announcement and withdrawal, in turns,
// tell that pnapd has applied what the speaker sent before.
var syncMarker = netip.MustParsePrefix("203.0.113.0/24")

// background is what the speaker announces on every session: 16 IPv4 and
// 16 IPv6 prefixes.
func background() []netip.Prefix {
	var ps []netip.Prefix
	for k := range 16 {
		ps = append(ps, trafficPrefix(k), netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x02, byte(k)}), 48))
	}
	return ps
}

// connect brings a speaker's session up (with graceful restart when gr
// is not nil), announces the background and End-of-RIB, and waits until
// pnapd holds them.
func (m *speakerLab) connect(t *testing.T, gr *bgp.CapGracefulRestart) {
	t.Helper()
	m.sp = dialSpeaker(t, m.x.Backbones[0].NS, bgptest.NextHop4, bgptest.LocalAddr, gr)
	m.sp.sendUpdate(t, update(t, false, background()...))
	m.sp.send(t, bgp.NewEndOfRib(bgp.RF_IPv4_UC))
	m.sp.send(t, bgp.NewEndOfRib(bgp.RF_IPv6_UC))
	m.held = map[netip.Prefix]bool{}
	for _, p := range background() {
		m.held[p] = true
	}
	m.sync(t)
}

func (m *speakerLab) session(t *testing.T) daemon.BGPSession {
	t.Helper()
	var ss []daemon.BGPSession
	if _, err := m.api.do("GET", "/v1/bgp", nil, &ss); err != nil || len(ss) != 1 {
		t.Fatalf("GET /v1/bgp: %+v, %v", ss, err)
	}
	return ss[0]
}

// fibMismatches says, one line each, where the FIB's answer for a probe
// is not what m.held says.
func (m *speakerLab) fibMismatches(t *testing.T) []string {
	t.Helper()
	var bad []string
	for _, p := range m.probes {
		var got daemon.FIBAnswer
		_, err := m.api.do("GET", "/v1/fib?addr="+p.Addr().Next().String(), nil, &got)
		switch {
		case err != nil && !strings.Contains(err.Error(), "HTTP 404"):
			t.Fatal(err)
		case err != nil && m.held[p]:
			bad = append(bad, fmt.Sprintf("%v: not in the FIB", p))
		case err == nil && !m.held[p]:
			bad = append(bad, fmt.Sprintf("%v: in the FIB (%s via %s), want not", p, got.Prefix, got.Backbone))
		case err == nil && got.Prefix != p.String():
			bad = append(bad, fmt.Sprintf("%v: the FIB answers %s", p, got.Prefix))
		}
	}
	return bad
}

// sync announces or withdraws the marker, whichever it is not, waits until
// the FIB shows it, and then checks every probe and the held counts.
func (m *speakerLab) sync(t *testing.T) {
	t.Helper()
	m.held[syncMarker] = !m.held[syncMarker]
	m.sp.sendUpdate(t, update(t, !m.held[syncMarker], syncMarker))
	deadline := time.Now().Add(bgpWait)
	for {
		bad := m.fibMismatches(t)
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v the FIB is not what the speaker sent:\n%s\npnapd's log:\n%s", bgpWait, strings.Join(bad, "\n"), m.pnapd)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var v4, v6 int
	for p, h := range m.held {
		switch {
		case !h:
		case p.Addr().Is4():
			v4++
		default:
			v6++
		}
	}
	if s := m.session(t); s.State != "Established" || s.IPv4.Held != v4 || s.IPv6.Held != v6 {
		t.Errorf("session %+v; want Established, holding %d IPv4 and %d IPv6 routes", s, v4, v6)
	}
}

// newSpeakerLab builds bench/topo's topology with one backbone, adds the
// corpus's addresses to its link (pnapd at LocalAddr, the speaker at
// NextHop4 and NextHop6, the backbone's gateways) and starts pnapd, which
// waits for the speaker to connect. It learns from the speaker with
// pnapd's defaults but for allow_martians (graceful restart helper on).
func newSpeakerLab(t *testing.T) *speakerLab {
	t.Helper()
	lab.RequireRoot(t)
	x := topo.Build(t, topo.Options{Backbones: 1})
	bb := x.Backbones[0]
	bb.Port.AddAddr(t, netip.PrefixFrom(bgptest.LocalAddr, 24).String(), "2001:db8:1::1/64")
	bb.Far.AddAddr(t, netip.PrefixFrom(bgptest.NextHop4, 24).String(), netip.PrefixFrom(bgptest.NextHop6, 64).String())
	dir := t.TempDir()
	sock, path := filepath.Join(dir, "api.sock"), filepath.Join(dir, "pnapd.toml")
	conf := fmt.Sprintf(`[forwarder]
queues = 1
xdp_mode = "native"

[[customer]]
name = "lab"
interface = %q
address_v4 = %q

[bgp]
local_as = %d
router_id = %q
listen = "[::]:179"

[[backbone]]
name = %q
interface = %q
gateway_v4 = %q
gateway_v6 = %q

  [backbone.bgp]
  neighbors = [%q]
  peer_as = %d
  passive = true
  allow_martians = true

[probes]
enabled = false

[optimizer]
enabled = false

[api]
listen = "unix:%s"
`, x.Customer.Name, x.CustomerAddr4, pnapAS, x.CustomerAddr4.Addr(), bb.Name, bb.Port.Name, bgptest.NextHop4, bgptest.NextHop6, bgptest.NextHop4, bgptest.PeerAS, sock)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &speakerLab{x: x, probes: append(background(), bgptest.Prefix4, bgptest.Prefix6, syncMarker), held: map[netip.Prefix]bool{}}
	_, m.pnapd, _ = startPnapdWith(t, path, x.DUT.Do)
	var err error
	if m.api, err = newAPIClient("", "unix:"+sock, ""); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestBGPMalformedUpdates sends routes/bgp's malformed-UPDATE corpus to a
// running pnapd from a test speaker acting as a backbone's router, each
// message after well-formed background routes: pnapd keeps running; an
// UPDATE RFC 7606 treats as withdraw withdraws its prefix (announced
// well-formed just before) and keeps the session, as do attribute discard
// and ignored ones; one that needs a reset gets its NOTIFICATION, the
// session's routes leave, and it comes back. After each message the FIB
// holds exactly the well-formed routes: no malformed prefix enters it.
func TestBGPMalformedUpdates(t *testing.T) {
	m := newSpeakerLab(t)
	m.connect(t, nil)

	outcomes := map[bgptest.Outcome]int{}
	for _, c := range bgptest.Corpus {
		flaps := m.session(t).Flaps
		if c.Want == bgptest.TreatAsWithdraw {
			m.sp.sendUpdate(t, update(t, false, c.Prefix))
			m.held[c.Prefix] = true
			m.sync(t)
		}
		m.sp.sendUpdate(t, c.Body)
		switch c.Want {
		case bgptest.Reset:
			want := c.Code
			if len(c.Body) < 4 {
				// Shorter than an UPDATE's minimum of 23 octets: on the
				// wire the header check refuses it first, Bad Message
				// Length (RFC 4271 6.1).
				want = [2]uint8{1, 2}
			}
			n := m.sp.expect(t, msgNotification)
			if len(n) < 2 || [2]uint8{n[0], n[1]} != want {
				t.Errorf("%s: NOTIFICATION % x, want %d/%d", c.Name, n, want[0], want[1])
			}
			// No graceful restart: the session's routes leave with it.
			m.held = map[netip.Prefix]bool{}
			deadline := time.Now().Add(bgpWait)
			for len(m.fibMismatches(t)) > 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			if bad := m.fibMismatches(t); len(bad) > 0 {
				t.Errorf("%s: after the reset the FIB still has the session's routes:\n%s", c.Name, strings.Join(bad, "\n"))
			}
			if s := m.session(t); s.Flaps != flaps+1 {
				t.Errorf("%s: %d flaps after the reset, want %d", c.Name, s.Flaps, flaps+1)
			}
			m.connect(t, nil)
		default:
			switch c.Want {
			case bgptest.Accepted, bgptest.Discard:
				m.held[c.Prefix] = true
			case bgptest.TreatAsWithdraw:
				m.held[c.Prefix] = false
			}
			m.sync(t)
			if s := m.session(t); s.Flaps != flaps {
				t.Errorf("%s (%v): the session was reset", c.Name, c.Want)
			}
			if m.held[c.Prefix] {
				m.sp.sendUpdate(t, update(t, true, c.Prefix))
				m.held[c.Prefix] = false
			}
		}
		select {
		case <-m.pnapd.Exited():
			t.Fatalf("pnapd exited after %q:\n%s", c.Name, m.pnapd)
		default:
		}
		outcomes[c.Want]++
	}
	m.sync(t)
	t.Logf("%d UPDATEs sent to pnapd: %v; pnapd runs, its FIB holds exactly the well-formed routes", len(bgptest.Corpus), outcomes)
}

// waitSession polls /v1/bgp every 5 ms until the session satisfies ok and
// returns it; it fails t after bgpWait.
func (m *speakerLab) waitSession(t *testing.T, ok func(daemon.BGPSession) bool) daemon.BGPSession {
	t.Helper()
	deadline := time.Now().Add(bgpWait)
	for {
		s := m.session(t)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("session after %v: %+v\npnapd's log:\n%s", bgpWait, s, m.pnapd)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestBGPRestartForwardingState: a router that restarts gracefully (its
// session ends without a NOTIFICATION, graceful restart negotiated) has
// its routes kept, stale, while it is away. When it is back, RFC 4724 4.2
// says which of them to keep until its End-of-RIB: those of the families
// whose forwarding state its new OPEN says it preserved (F bit), none if
// it no longer advertises graceful restart. The others go at once (within
// 1 s): pnapd must not send traffic to a router that lost its forwarding
// table.
func TestBGPRestartForwardingState(t *testing.T) {
	m := newSpeakerLab(t)
	gr := func(restarted bool, preserved ...bgp.Family) *bgp.CapGracefulRestart {
		var tuples []*bgp.CapGracefulRestartTuple
		for _, f := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
			tuples = append(tuples, bgp.NewCapGracefulRestartTuple(f, slices.Contains(preserved, f)))
		}
		return bgp.NewCapGracefulRestart(restarted, false, 120, tuples)
	}
	m.connect(t, gr(false))
	for _, c := range []struct {
		name string
		gr   *bgp.CapGracefulRestart
		keep [2]bool // IPv4's, IPv6's stale routes kept until End-of-RIB
	}{
		{"both families' forwarding state preserved", gr(true, bgp.RF_IPv4_UC, bgp.RF_IPv6_UC), [2]bool{true, true}},
		{"IPv4's forwarding state preserved", gr(true, bgp.RF_IPv4_UC), [2]bool{true, false}},
		{"no forwarding state preserved", gr(true), [2]bool{false, false}},
		{"no graceful restart any more", nil, [2]bool{false, false}},
	} {
		before := m.session(t)
		m.sp.c.Close()
		// The state changes before the feed has marked the routes stale.
		s := m.waitSession(t, func(s daemon.BGPSession) bool { return s.State != "Established" && s.Stale > 0 })
		if s.Stale != before.IPv4.Held+before.IPv6.Held || s.IPv4.Held != before.IPv4.Held || s.IPv6.Held != before.IPv6.Held {
			t.Fatalf("%s: the router restarting: %+v; want its %d+%d routes kept, stale", c.name, s, before.IPv4.Held, before.IPv6.Held)
		}
		m.sp = dialSpeaker(t, m.x.Backbones[0].NS, bgptest.NextHop4, bgptest.LocalAddr, c.gr)
		start := time.Now()
		kept := 0
		for p, held := range m.held {
			fam := 0
			if p.Addr().Is6() {
				fam = 1
			}
			switch {
			case !held:
			case c.keep[fam]:
				kept++
			default:
				delete(m.held, p)
			}
		}
		s = m.waitSession(t, func(s daemon.BGPSession) bool { return s.State == "Established" && s.Stale == kept })
		took := time.Since(start)
		if bad := m.fibMismatches(t); len(bad) > 0 || took > follow {
			t.Errorf("%s: %v after the router was back, %d routes stale, the FIB:\n%s\nwant %d stale, the rest gone, within %v",
				c.name, took, s.Stale, strings.Join(bad, "\n"), kept, follow)
		}
		// Those kept stay until End-of-RIB.
		time.Sleep(200 * time.Millisecond)
		if s := m.session(t); s.Stale != kept || len(m.fibMismatches(t)) > 0 {
			t.Errorf("%s: 200 ms later %d routes stale, the FIB:\n%s\nwant %d stale", c.name, s.Stale, strings.Join(m.fibMismatches(t), "\n"), kept)
		}
		t.Logf("%s: %d of %d stale routes kept until End-of-RIB, the others withdrawn %v after the router was back",
			c.name, kept, before.IPv4.Held+before.IPv6.Held, took.Round(time.Millisecond))

		// The router sends its table again, without the marker: it is
		// swept with the rest of what is still stale.
		m.sp.sendUpdate(t, update(t, false, background()...))
		m.sp.send(t, bgp.NewEndOfRib(bgp.RF_IPv4_UC))
		m.sp.send(t, bgp.NewEndOfRib(bgp.RF_IPv6_UC))
		m.held = map[netip.Prefix]bool{}
		for _, p := range background() {
			m.held[p] = true
		}
		m.sync(t)
		if s := m.session(t); s.Stale != 0 {
			t.Errorf("%s: %d routes still stale after End-of-RIB", c.name, s.Stale)
		}
	}
}
