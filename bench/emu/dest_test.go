//go:build linux

package emu

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNewDestDelaysRefuses(t *testing.T) {
	for _, c := range []struct {
		prefix, want string
		d            time.Duration
	}{
		{"198.51.0.0/16", "only IPv4 /24 and IPv6 /48", 0},
		{"198.51.100.0/25", "only IPv4 /24 and IPv6 /48", 0},
		{"198.51.100.1/32", "only IPv4 /24 and IPv6 /48", 0},
		{"2001:db8::/32", "only IPv4 /24 and IPv6 /48", 0},
		{"2001:db8:1:2::/64", "only IPv4 /24 and IPv6 /48", 0},
		{"198.51.100.7/24", "did you mean 198.51.100.0/24?", 0},
		{"2001:db8:1:2::/48", "did you mean 2001:db8:1::/48?", 0},
		{"198.51.100.0/24", "negative", -time.Millisecond},
	} {
		p := netip.MustParsePrefix(c.prefix)
		_, err := NewDestDelays(map[netip.Prefix]time.Duration{p: c.d, netip.MustParsePrefix("203.0.113.0/24"): 0})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.prefix) {
			t.Errorf("NewDestDelays(%s: %v): %v, want an error naming it and saying %q", c.prefix, c.d, err, c.want)
		}
	}
	if _, err := NewDestDelays(map[netip.Prefix]time.Duration{{}: 0}); err == nil {
		t.Error("NewDestDelays took the zero prefix")
	}
}

func TestDestDelaysLookup(t *testing.T) {
	tab, err := NewDestDelays(map[netip.Prefix]time.Duration{
		netip.MustParsePrefix("198.51.100.0/24"): 10 * time.Millisecond,
		netip.MustParsePrefix("2001:db8:1::/48"): 20 * time.Millisecond,
		// Same leading bytes as the IPv4 /24 above: the families must not mix.
		netip.MustParsePrefix("c633:6400::/48"): 30 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Errorf("Len %d, want 3", tab.Len())
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		dst  string
		want time.Duration
	}{
		{"198.51.100.7", 10 * time.Millisecond},
		{"198.51.100.255", 10 * time.Millisecond},
		{"198.51.101.7", 0},
		{"2001:db8:1:ffff::9", 20 * time.Millisecond},
		{"2001:db8:2::9", 0},
		{"c633:6400:0:1::", 30 * time.Millisecond},
		{"::ffff:198.51.100.7", 0}, // an IPv6 destination, in ::/48
	} {
		dst := netip.MustParseAddr(c.dst)
		if got := tab.Delay(dst); got != c.want {
			t.Errorf("Delay(%s) = %v, want %v", dst, got, c.want)
		}
		f := probeFrame(t, mac, dst)
		key, extra := tab.lookup(f)
		if time.Duration(extra) != c.want || key != addrKey(dst) {
			t.Errorf("frame to %s: key %#x, delay %v; want %#x, %v", dst, key, time.Duration(extra), addrKey(dst), c.want)
		}
		if n := testing.AllocsPerRun(100, func() { tab.lookup(f) }); n != 0 {
			t.Errorf("lookup of a frame to %s: %v allocations, want none", dst, n)
		}
	}
}

// TestDestDelaysScale looks up frames in a table of the scale scenario's
// size: 10,000 prefixes, without allocating.
func TestDestDelaysScale(t *testing.T) {
	m := make(map[netip.Prefix]time.Duration)
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
		m[netip.PrefixFrom(a, 24)] = time.Duration(i) * time.Microsecond
	}
	tab, err := NewDestDelays(m)
	if err != nil {
		t.Fatal(err)
	}
	f := probeFrame(t, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.39.15.200"))
	if _, d := tab.lookup(f); time.Duration(d) != (39<<8+15)*time.Microsecond {
		t.Errorf("frame to 10.39.15.200: %v", time.Duration(d))
	}
	if n := testing.AllocsPerRun(1000, func() { tab.lookup(f) }); n != 0 {
		t.Errorf("lookup: %v allocations, want none", n)
	}
}

// TestDestKey checks which frames count as IP: the others share one key and
// get no extra delay.
func TestDestKey(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	v4 := probeFrame(t, mac, netip.MustParseAddr("198.51.100.7"))
	v6 := probeFrame(t, mac, netip.MustParseAddr("2001:db8:1::9"))
	arp := append(append(append([]byte{}, mac...), mac...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	vlan := append(append(append([]byte{}, mac...), mac...), 0x81, 0x00, 0, 1, 0x08, 0x00)
	vlan = append(vlan, v4[ethHdrLen:]...)
	badVersion := append([]byte{}, v4...)
	badVersion[ethHdrLen] = 0x65
	for _, c := range []struct {
		name string
		f    []byte
		want uint64
	}{
		{"IPv4", v4, v4Key | 198<<16 | 51<<8 | 100},
		{"IPv6", v6, v6Key | 0x2001_0db8_0001},
		{"IPv4 cut before the address", v4[:v4DstOff+2], otherKey},
		{"IPv6 cut in its header", v6[:ethHdrLen+39], otherKey},
		{"IPv4 type, version 6", badVersion, otherKey},
		{"ARP", arp, otherKey},
		{"VLAN-tagged IPv4", vlan, otherKey},
		{"runt", mac, otherKey},
		{"empty", nil, otherKey},
	} {
		if got := destKey(c.f); got != c.want {
			t.Errorf("%s: key %#x, want %#x", c.name, got, c.want)
		}
	}
}

// TestLossOnly checks which frames a loss narrowed to some prefixes may
// drop: IP frames to those prefixes, not the router's own (its BGP session
// goes on) nor ARP; without LossOnly, every frame. It must not allocate.
func TestLossOnly(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	served4 := probeFrame(t, mac, netip.MustParseAddr("198.19.3.1"))
	served6 := probeFrame(t, mac, netip.MustParseAddr("2001:2:0:f003::1"))
	router := probeFrame(t, mac, netip.MustParseAddr("198.18.100.1"))
	arp := append(append(append([]byte{}, mac...), mac...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	grey := Params{Loss: 1, LossOnly: []netip.Prefix{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParsePrefix("2001:2:0:f000::/52")}}
	all := Params{Loss: 1}
	for _, c := range []struct {
		name      string
		f         []byte
		grey, all bool
	}{
		{"to a served IPv4 prefix", served4, true, true},
		{"to a served IPv6 prefix", served6, true, true},
		{"to the router", router, false, true},
		{"ARP", arp, false, true},
		{"IPv4 cut before the address", served4[:v4DstOff+2], false, true},
	} {
		if got := grey.lossTakes(c.f); got != c.grey {
			t.Errorf("%s, loss only beyond the router: dropped %v, want %v", c.name, got, c.grey)
		}
		if got := all.lossTakes(c.f); got != c.all {
			t.Errorf("%s, loss of everything: dropped %v, want %v", c.name, got, c.all)
		}
	}
	if n := testing.AllocsPerRun(100, func() { grey.lossTakes(served6) }); n != 0 {
		t.Errorf("lossTakes allocates %v times a frame", n)
	}
	if err := (Params{Loss: 1, LossOnly: []netip.Prefix{{}}}).validate(); err == nil {
		t.Error("an invalid LossOnly prefix was taken")
	}
}

// TestDestDelay sends frames to four destinations in turn, 4 kpps for 0.5 s,
// through 5 ms of delay and a table of extra delays: two IPv4 /24s (+5 and
// +45 ms), an IPv6 /48 (+20 ms), and none for the fourth. Each arrives with
// its own delay, ±2 ms: a frame to a fast prefix is not held behind the
// frames to a slow one sent before it, it overtakes them; the frames to each
// destination keep their order.
func TestDestDelay(t *testing.T) {
	w := newWire(t)
	const (
		rate  = 4000
		count = 2000
		ms    = time.Millisecond
	)
	tab := destDelays(t, map[string]time.Duration{"198.51.100.0/24": 5 * ms, "203.0.113.0/24": 45 * ms, "2001:db8:1::/48": 20 * ms})
	dsts := []dest{{"198.51.100.7", 10 * ms}, {"203.0.113.9", 50 * ms}, {"2001:db8:1::9", 25 * ms}, {"192.0.2.1", 5 * ms}}
	hcpu, _ := cpus()
	e := startTimed(t, w, Params{Delay: 5 * ms, DestDelay: tab}, Params{})
	s := newSender(t, w.la, hcpu)
	s.to(t, addrs(dsts)...)
	r := newReceiver(t, w.lb, hcpu, s.seq, count)
	if err := s.run(rate, count); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * ms)
	checkAllForwarded(t, r, e, count)
	late := e.Stats().AB.Late
	for i, d := range dsts {
		ds, reordered := byDest(r, len(dsts), i, nil)
		checkDelay(t, d.addr, ds, d.want, d.want, count/len(dsts)*9/10, late)
		if reordered > 0 {
			t.Errorf("%s: %d frames arrived after a later one to it, want none", d.addr, reordered)
		}
	}
	if r.reordered == 0 {
		t.Error("no frame overtook one sent before it: frames to fast prefixes waited for those to slow ones")
	}
}

// TestDestDelayOrder adds 2 ms of jitter to 10 ms, with +0 and +20 ms for two
// prefixes and frames 0.2 ms apart to each: frames to one prefix keep their
// order (their delays pile up towards the top of the jitter's range), while
// frames to the fast prefix overtake those to the slow one.
func TestDestDelayOrder(t *testing.T) {
	w := newWire(t)
	const (
		rate   = 10_000
		count  = 3000
		ms     = time.Millisecond
		jitter = 2 * ms
	)
	tab := destDelays(t, map[string]time.Duration{"198.51.100.0/24": 0, "203.0.113.0/24": 20 * ms})
	dsts := []dest{{"198.51.100.7", 10 * ms}, {"203.0.113.9", 30 * ms}}
	hcpu, _ := cpus()
	e := startTimed(t, w, Params{Delay: 10 * ms, Jitter: jitter, DestDelay: tab}, Params{})
	s := newSender(t, w.la, hcpu)
	s.to(t, addrs(dsts)...)
	r := newReceiver(t, w.lb, hcpu, s.seq, count)
	if err := s.run(rate, count); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * ms)
	checkAllForwarded(t, r, e, count)
	late := e.Stats().AB.Late
	for i, d := range dsts {
		ds, reordered := byDest(r, len(dsts), i, nil)
		checkDelay(t, d.addr, ds, d.want-jitter, d.want+jitter, count/len(dsts)*9/10, late)
		if reordered > 0 {
			t.Errorf("%s: %d frames arrived after a later one to it, want none", d.addr, reordered)
		}
	}
	// A frame to the slow prefix arrives after the frames to the fast one
	// sent in the 20 ms after it: nearly every one of them.
	if r.reordered < count/4 {
		t.Errorf("%d frames arrived after a later one, want most of the %d to the slow prefix", r.reordered, count/2)
	}
}

// TestSetDestDelay swaps the table in the middle of a stream to two
// prefixes, +10 and +20 ms becoming +30 and +40 ms (on 5 ms): frames sent
// before Set get the old table's delays, frames sent after it the new one's,
// both prefixes at once.
func TestSetDestDelay(t *testing.T) {
	w := newWire(t)
	const (
		rate  = 4000
		count = 2400 // 0.6 s
		ms    = time.Millisecond
	)
	old := destDelays(t, map[string]time.Duration{"198.51.100.0/24": 10 * ms, "203.0.113.0/24": 20 * ms})
	tab := destDelays(t, map[string]time.Duration{"198.51.100.0/24": 30 * ms, "203.0.113.0/24": 40 * ms})
	dsts := []dest{{"198.51.100.7", 15 * ms}, {"203.0.113.9", 25 * ms}}
	hcpu, _ := cpus()
	e := startTimed(t, w, Params{Delay: 5 * ms, DestDelay: old}, Params{})
	s := newSender(t, w.la, hcpu)
	s.to(t, addrs(dsts)...)
	r := newReceiver(t, w.lb, hcpu, s.seq, count)
	// Set between two halves of the stream: when the machine holds the
	// sender up, a Set on a timer would split it anywhere.
	if err := s.run(rate, count/2); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UnixNano()
	if err := e.Set(Params{Delay: 5 * ms, DestDelay: tab}, Params{}); err != nil {
		t.Fatal(err)
	}
	if err := s.run(rate, count/2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * ms)
	checkAllForwarded(t, r, e, count)
	if ab, _ := e.Params(); ab.DestDelay != tab {
		t.Errorf("Params after Set: %+v, want the new table", ab)
	}
	late := e.Stats().AB.Late
	// As in TestSet, frames sent within 2 ms of the change may get either
	// (the emulator goes by its kernel's receive time).
	before := func(sent int64) bool { return sent < at-2e6 }
	after := func(sent int64) bool { return sent > at+2e6 }
	for i, d := range dsts {
		for _, c := range []struct {
			name string
			keep func(int64) bool
			want time.Duration
		}{{"before", before, d.want}, {"after", after, d.want + 20*ms}} {
			ds, reordered := byDest(r, len(dsts), i, c.keep)
			checkDelay(t, d.addr+" "+c.name+" Set", ds, c.want, c.want, count/len(dsts)/2*9/10, late)
			if reordered > 0 {
				t.Errorf("%s %s Set: %d frames arrived after a later one to it, want none", d.addr, c.name, reordered)
			}
		}
	}
}

// dest is a destination of test frames and the delay they should get.
type dest struct {
	addr string
	want time.Duration
}

func addrs(ds []dest) []netip.Addr {
	var as []netip.Addr
	for _, d := range ds {
		as = append(as, netip.MustParseAddr(d.addr))
	}
	return as
}

func destDelays(t *testing.T, by map[string]time.Duration) *DestDelays {
	t.Helper()
	m := map[netip.Prefix]time.Duration{}
	for p, d := range by {
		m[netip.MustParsePrefix(p)] = d
	}
	tab, err := NewDestDelays(m)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// byDest returns the delays of the frames the receiver got of those sent to
// destination i of k (frame seq went to seq%k), sent when keep says (nil:
// all), and how many of them arrived after a later one.
func byDest(r *receiver, k, i int, keep func(sent int64) bool) (ds []int64, reordered int) {
	last := -1
	for j := range r.delay {
		if int((r.from+uint32(j))%uint32(k)) != i || r.delay[j] < 0 || keep != nil && !keep(r.sent[j]) {
			continue
		}
		ds = append(ds, r.delay[j])
		if r.arrival[j] < last {
			reordered++
		}
		last = max(last, r.arrival[j])
	}
	return ds, reordered
}

// checkAllForwarded stops the receiver and checks that the emulator
// forwarded every frame it got, and B every frame sent unless the machine
// dropped some on the way (frames dropped before the emulator, or by B's
// socket, are the machine's).
func checkAllForwarded(t *testing.T, r *receiver, e *Emulator, count int) {
	t.Helper()
	rdrops := r.finish()
	st := e.Stats().AB
	_, missing := r.delays()
	if missing > 0 && st.Received == uint64(count) && rdrops == 0 || st.Forwarded != st.Received {
		t.Errorf("%d frames missing; emulator %+v, B's socket dropped %d", missing, st, rdrops)
	}
}

// checkDelay checks that at least n delays arrived, none before lo less
// LateAfter, the median within [lo-2 ms, hi+2 ms], and 99 % below hi+2 ms
// unless the emulator sent frames late (its thread did not get the CPU in
// time: the machine, not the emulator, is measured then).
func checkDelay(t *testing.T, name string, ds []int64, lo, hi time.Duration, n int, late uint64) {
	t.Helper()
	const tol = 2 * time.Millisecond
	d := summarise(ds)
	t.Logf("%s: %d frames, delay %v", name, len(ds), d)
	switch {
	case len(ds) < n:
		t.Errorf("%s: %d frames, want at least %d", name, len(ds), n)
	case d.min < lo-LateAfter:
		t.Errorf("%s: delay min %v, want at least %v", name, d.min, lo)
	case d.p50 < lo-tol || d.p50 > hi+tol:
		t.Errorf("%s: median delay %v, want %v to %v ± %v", name, d.p50, lo, hi, tol)
	case d.p99 > hi+tol && late == 0:
		t.Errorf("%s: 99th percentile delay %v, want at most %v + %v", name, d.p99, hi, tol)
	case d.p99 > hi+tol:
		t.Logf("%s: 99th percentile %v with %d frames sent late: not judged on a busy machine", name, d.p99, late)
	}
}
