package forwarder

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
)

// The test plane: port 0 faces customer "c0" (198.18.0.0/24 connected,
// 198.18.16.0/20 via 198.18.0.2; 2001:2:0:1::/64 connected), ports 1 and 2
// face backbones "a" and "b", which both hold 203.0.113.0/24 and
// 2001:db8::/32; "a" is preferred.
var (
	macCust   = MAC{0x02, 0, 0, 0, 0, 0x10}
	macPort   = [3]MAC{{0x02, 0, 0, 0, 0xaa, 0}, {0x02, 0, 0, 0, 0xaa, 1}, {0x02, 0, 0, 0, 0xaa, 2}}
	macGwA    = MAC{0x02, 0, 0, 0, 0xbb, 1}
	macGwB    = MAC{0x02, 0, 0, 0, 0xbb, 2}
	macCustGw = MAC{0x02, 0, 0, 0, 0xcc, 2}
	macHost   = MAC{0x02, 0, 0, 0, 0xdd, 7}
)

// planeFIBs are the test plane's FIBs: backbones "a" (preference 1) and
// "b" (2), both holding 203.0.113.0/24 and 2001:db8::/32, and customer
// "c0" holding the customer prefixes.
func planeFIBs(t testing.TB, customer ...string) (bb, cust *fib.FIB) {
	t.Helper()
	bb, err := fib.New([]fib.Backbone{{Name: "a", Preference: 1}, {Name: "b", Preference: 2}}, fib.Options{MaxRoutes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for b := fib.BackboneID(0); b < 2; b++ {
		for _, p := range []string{"203.0.113.0/24", "2001:db8::/32"} {
			if err := bb.Add(b, netip.MustParsePrefix(p), 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	cust, err = fib.New([]fib.Backbone{{Name: "c0"}}, fib.Options{MaxRoutes: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range customer {
		if err := cust.Add(0, netip.MustParsePrefix(p), -1); err != nil {
			t.Fatal(err)
		}
	}
	return bb, cust
}

func testPlane(t testing.TB) *Plane {
	t.Helper()
	bb, cust := planeFIBs(t, "198.18.0.0/24", "198.18.16.0/20", "2001:2:0:1::/64")
	pl := &Plane{
		Backbones: bb,
		Customers: cust,
		Ports: []PortInfo{
			{Name: "c0", MAC: macPort[0], MTU: 1500, Role: RoleCustomer},
			{Name: "bb-a", MAC: macPort[1], MTU: 1500, Role: RoleBackbone},
			{Name: "bb-b", MAC: macPort[2], MTU: 1400, Role: RoleBackbone},
		},
	}
	h := &Hops{
		Neigh4: map[[4]byte]MAC{{198, 18, 0, 7}: macHost},
		Neigh6: map[[16]byte]MAC{netip.MustParseAddr("2001:2:0:1::7").As16(): macHost},
	}
	for f := 0; f < 2; f++ {
		h.Backbone[0][f] = NextHop{Port: 1, MAC: macGwA, Resolved: true}
		h.Backbone[1][f] = NextHop{Port: 2, MAC: macGwB, Resolved: true}
	}
	h.Customer[0][Fam4] = NextHop{Port: 0, MAC: macCustGw, Resolved: true}
	h.Customer[0][Fam6] = NextHop{Port: 0}
	h.SetSubnet(0, netip.MustParsePrefix("198.18.0.1/24"))
	h.SetSubnet(0, netip.MustParsePrefix("2001:2:0:1::1/64"))
	pl.SetHops(h)
	return pl
}

// frameOpts tweak a generated frame.
type frameOpts struct {
	ttl     uint8
	vlan    bool
	payload int
	df      bool
}

func udpFrame(t testing.TB, src, dst string, o frameOpts) []byte {
	t.Helper()
	return frametest.UDP(t, src, dst, frametest.Opts{Src: macCust, Dst: macPort[0], TTL: o.ttl, VLAN: o.vlan, Payload: o.payload, DF: o.df})
}

// process runs one frame through w as received on port in, addressed to
// that port's MAC (as a real neighbour would address it).
func process(t testing.TB, w *Worker, in uint8, f []byte) Decision {
	t.Helper()
	if len(f) >= 6 {
		copy(f[0:6], w.plane.Ports[in].MAC[:])
	}
	out := make([]Decision, 1)
	w.Process(in, [][]byte{f}, out)
	return out[0]
}

// sent decodes the frame as it leaves the port.
func sent(t *testing.T, f []byte, d Decision) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(f[d.Skip:], layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("forwarded frame does not decode: %v", el.Error())
	}
	return p
}

func TestForwardIPv4ToSelectedBackbone(t *testing.T) {
	pl := testPlane(t)
	w := NewWorker(pl)
	for _, vlan := range []bool{false, true} {
		f := udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{vlan: vlan, payload: 20})
		orig := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		udpSum := orig.Layer(layers.LayerTypeUDP).(*layers.UDP).Checksum
		d := process(t, w, 0, f)
		if d.Action != ActForward || d.Port != 1 || !d.ToBackbone || d.Backbone != 0 {
			t.Fatalf("vlan=%v: decision %+v, want forward to port 1 via backbone a", vlan, d)
		}
		p := sent(t, f, d)
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if MAC(eth.DstMAC) != macGwA || MAC(eth.SrcMAC) != macPort[1] {
			t.Fatalf("MACs %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, net.HardwareAddr(macPort[1][:]), net.HardwareAddr(macGwA[:]))
		}
		if eth.EthernetType != layers.EthernetTypeIPv4 {
			t.Fatalf("ethertype %v after VLAN removal", eth.EthernetType)
		}
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip.TTL != 63 {
			t.Fatalf("TTL %d, want 63", ip.TTL)
		}
		if !ipv4HeaderSumOK(f[int(d.L3)+0-int(d.Skip)+int(d.Skip) : int(d.L3)+20]) {
			t.Fatal("IPv4 header checksum invalid after the rewrite")
		}
		if got := p.Layer(layers.LayerTypeUDP).(*layers.UDP).Checksum; got != udpSum {
			t.Fatalf("UDP checksum changed from %#x to %#x", udpSum, got)
		}
	}
	// Moving the selection moves the traffic, from the next batch on.
	if err := pl.Backbones.Select(netip.MustParsePrefix("203.0.113.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	f := udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{})
	d := process(t, w, 0, f)
	if d.Action != ActForward || d.Port != 2 || d.Backbone != 1 {
		t.Fatalf("after selecting b: %+v", d)
	}
	if eth := sent(t, f, d).Layer(layers.LayerTypeEthernet).(*layers.Ethernet); MAC(eth.DstMAC) != macGwB || MAC(eth.SrcMAC) != macPort[2] {
		t.Fatalf("after selecting b: MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
}

func TestForwardIPv6DecrementsHopLimit(t *testing.T) {
	w := NewWorker(testPlane(t))
	f := udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frameOpts{ttl: 9})
	d := process(t, w, 0, f)
	if d.Action != ActForward || d.Port != 1 {
		t.Fatalf("decision %+v", d)
	}
	ip := sent(t, f, d).Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if ip.HopLimit != 8 {
		t.Fatalf("hop limit %d, want 8", ip.HopLimit)
	}
}

func TestReplyReachesCustomer(t *testing.T) {
	w := NewWorker(testPlane(t))
	// Connected destination: the neighbour's MAC.
	f := udpFrame(t, "203.0.113.9", "198.18.0.7", frameOpts{})
	d := process(t, w, 1, f)
	if d.Action != ActForward || d.Port != 0 || d.ToBackbone {
		t.Fatalf("reply to a connected customer host: %+v", d)
	}
	if eth := sent(t, f, d).Layer(layers.LayerTypeEthernet).(*layers.Ethernet); MAC(eth.DstMAC) != macHost || MAC(eth.SrcMAC) != macPort[0] {
		t.Fatalf("MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	// Routed customer prefix: the customer's next hop.
	f = udpFrame(t, "203.0.113.9", "198.18.17.1", frameOpts{})
	if d = process(t, w, 2, f); d.Action != ActForward || d.Port != 0 {
		t.Fatalf("reply to a routed customer prefix: %+v", d)
	}
	if eth := sent(t, f, d).Layer(layers.LayerTypeEthernet).(*layers.Ethernet); MAC(eth.DstMAC) != macCustGw {
		t.Fatalf("dst MAC %v, want the customer's next hop", eth.DstMAC)
	}
	// IPv6 connected, neighbour known.
	f = udpFrame(t, "2001:db8::1", "2001:2:0:1::7", frameOpts{})
	if d = process(t, w, 1, f); d.Action != ActForward || d.Port != 0 {
		t.Fatalf("IPv6 reply: %+v", d)
	}
	// A backbone may not transit to another backbone.
	f = udpFrame(t, "192.0.2.1", "203.0.113.9", frameOpts{})
	if d = process(t, w, 1, f); d.Action != ActSlow || d.Reason != ReasonNoRoute {
		t.Fatalf("backbone to backbone: %+v, want no route", d)
	}
}

func TestDropsAreCountedByReason(t *testing.T) {
	pl := testPlane(t)
	w := NewWorker(pl)
	valid := udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{})
	mut := func(fn func(f []byte) []byte) []byte { return fn(append([]byte(nil), valid...)) }
	cases := []struct {
		name   string
		frame  []byte
		action Action
		reason Reason
	}{
		{"runt", valid[:10], ActDrop, ReasonMalformed},
		{"truncated IP", valid[:30], ActDrop, ReasonMalformed},
		{"bad version", mut(func(f []byte) []byte { f[14] = 0x55; return f }), ActDrop, ReasonMalformed},
		{"IHL < 5", mut(func(f []byte) []byte { f[14] = 0x44; return f }), ActDrop, ReasonMalformed},
		{"total length > frame", mut(func(f []byte) []byte { binary.BigEndian.PutUint16(f[16:], 1400); return f }), ActDrop, ReasonMalformed},
		{"bad checksum", mut(func(f []byte) []byte { f[24] ^= 0xff; return f }), ActDrop, ReasonMalformed},
		{"not IP", mut(func(f []byte) []byte { f[12], f[13] = 0x08, 0x06; return f }), ActDrop, ReasonNotIP},
		{"TTL 1", udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{ttl: 1}), ActSlow, ReasonTTL},
		{"no route", udpFrame(t, "198.18.0.7", "192.0.2.1", frameOpts{}), ActSlow, ReasonNoRoute},
		{"multicast", udpFrame(t, "198.18.0.7", "224.0.0.5", frameOpts{}), ActDrop, ReasonMartian},
		{"v6 link-local", udpFrame(t, "2001:2:0:1::7", "fe80::1", frameOpts{}), ActDrop, ReasonMartian},
		{"v6 mapped", udpFrame(t, "2001:2:0:1::7", "::ffff:203.0.113.9", frameOpts{}), ActDrop, ReasonMartian},
		{"loopback source", udpFrame(t, "127.0.0.1", "203.0.113.9", frameOpts{}), ActDrop, ReasonMartian},
		{"multicast source", udpFrame(t, "224.0.0.1", "203.0.113.9", frameOpts{}), ActDrop, ReasonMartian},
		{"class E source", udpFrame(t, "240.0.0.1", "203.0.113.9", frameOpts{}), ActDrop, ReasonMartian},
		{"link-local source", udpFrame(t, "169.254.1.1", "203.0.113.9", frameOpts{}), ActDrop, ReasonMartian},
		{"v6 unspecified source", udpFrame(t, "::", "2001:db8::1", frameOpts{}), ActDrop, ReasonMartian},
		{"v6 link-local source", udpFrame(t, "fe80::7", "2001:db8::1", frameOpts{}), ActDrop, ReasonMartian},
		{"v6 multicast source", udpFrame(t, "ff02::1", "2001:db8::1", frameOpts{}), ActDrop, ReasonMartian},
		{"v6 hop limit 1", udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frameOpts{ttl: 1}), ActSlow, ReasonTTL},
		{"unresolved neighbour", udpFrame(t, "203.0.113.9", "198.18.0.99", frameOpts{}), ActSlow, ReasonNoNeighbour},
	}
	for _, tc := range cases {
		in := uint8(0)
		if tc.name == "unresolved neighbour" {
			in = 1
		}
		var before, after PortStats
		w.Stats(int(in), &before)
		d := process(t, w, in, tc.frame)
		w.Stats(int(in), &after)
		if d.Action != tc.action || d.Reason != tc.reason {
			t.Errorf("%s: %v/%v, want %v/%v", tc.name, d.Action, d.Reason, tc.action, tc.reason)
		}
		if after.Drops[tc.reason]-before.Drops[tc.reason] != 1 || after.RxPackets-before.RxPackets != 1 {
			t.Errorf("%s: not counted under %v", tc.name, tc.reason)
		}
	}
	// A frame for another host's MAC, or a broadcast, is not forwarded.
	for _, dst := range []MAC{{2, 9, 9, 9, 9, 9}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		f := append([]byte(nil), valid...)
		copy(f[0:6], dst[:])
		out := make([]Decision, 1)
		w.Process(0, [][]byte{f}, out)
		if out[0].Action != ActDrop || out[0].Reason != ReasonOtherHost {
			t.Fatalf("frame to %x: %+v, want dropped as other_host", dst, out[0])
		}
	}
	// MTU: port 2 (backbone b) has MTU 1400.
	if err := pl.Backbones.Select(netip.MustParsePrefix("203.0.113.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	big := udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{payload: 1400, df: true})
	if d := process(t, w, 0, big); d.Action != ActSlow || d.Reason != ReasonMTU {
		t.Fatalf("DF packet over the MTU: %+v", d)
	}
	big = udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{payload: 1400})
	if d := process(t, w, 0, big); d.Action != ActDrop || d.Reason != ReasonMTU {
		t.Fatalf("packet over the MTU without DF: %+v", d)
	}
}

// The decisions the slow path builds ICMP errors from (its tests start
// from these): the reason, and where the IP header is, VLAN tag or not.
func TestSlowDecisions(t *testing.T) {
	w := NewWorker(testPlane(t))
	for _, tc := range []struct {
		name   string
		frame  []byte
		reason Reason
		l3     uint8
	}{
		{"v4 TTL", udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{ttl: 1}), ReasonTTL, 14},
		{"v4 TTL on VLAN", udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{ttl: 1, vlan: true}), ReasonTTL, 18},
		{"v4 no route", udpFrame(t, "198.18.0.7", "192.0.2.1", frameOpts{}), ReasonNoRoute, 14},
		{"v6 hop limit", udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frameOpts{ttl: 1}), ReasonTTL, 14},
	} {
		d := process(t, w, 0, tc.frame)
		if want := (Decision{Action: ActSlow, Reason: tc.reason, L3: tc.l3}); d != want {
			t.Errorf("%s: %+v, want %+v", tc.name, d, want)
		}
	}
}

func TestTrailingBytesAreNotForwarded(t *testing.T) {
	w := NewWorker(testPlane(t))
	f := udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{payload: 20})
	ipEnd := len(f)
	f = append(f, make([]byte, 600)...) // padding or junk after the IP packet
	d := process(t, w, 0, f)
	if d.Action != ActForward || int(d.End) != ipEnd {
		t.Fatalf("decision %+v, want forward ending at %d", d, ipEnd)
	}
}

func TestIPv4OptionsAndFragmentsForwarded(t *testing.T) {
	w := NewWorker(testPlane(t))
	f := udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{payload: 8})
	// Insert a 4-byte NOP option block: IHL 6.
	g := append(append(append([]byte(nil), f[:34]...), 1, 1, 1, 0), f[34:]...)
	g[14] = 0x46
	binary.BigEndian.PutUint16(g[16:], binary.BigEndian.Uint16(g[16:])+4)
	g[20] |= 0x20 // more fragments
	binary.BigEndian.PutUint16(g[24:], 0)
	binary.BigEndian.PutUint16(g[24:], ^checksum16(g[14:38]))
	d := process(t, w, 0, g)
	if d.Action != ActForward {
		t.Fatalf("IPv4 with options and MF: %+v", d)
	}
	if !ipv4HeaderSumOK(g[14:38]) || g[22] != 63 {
		t.Fatalf("header after forwarding: checksum ok %v, TTL %d", ipv4HeaderSumOK(g[14:38]), g[22])
	}
}

func checksum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8 // an odd last byte is padded with zero
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func TestDecrementTTLKeepsChecksumValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := make([]byte, 20)
	for i := 0; i < 100000; i++ {
		for k := range h {
			h[k] = byte(rng.Uint32())
		}
		h[0] = 0x45
		h[8] = byte(2 + rng.IntN(254))
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], ^checksum16(h))
		ttl := h[8]
		decrementTTL(h)
		if h[8] != ttl-1 || !ipv4HeaderSumOK(h) {
			t.Fatalf("header %x: TTL %d -> %d, checksum valid %v", h, ttl, h[8], ipv4HeaderSumOK(h))
		}
	}
}

func TestProcessDoesNotAllocate(t *testing.T) {
	w := NewWorker(testPlane(t))
	frames := [][]byte{
		udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{ttl: 255}),
		udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frameOpts{ttl: 255}),
		udpFrame(t, "203.0.113.9", "198.18.0.7", frameOpts{ttl: 255}),
		udpFrame(t, "198.18.0.7", "192.0.2.1", frameOpts{}),
	}
	copy(frames[2][0:6], macPort[1][:]) // received on port 1 below
	pristine := make([][]byte, len(frames))
	for i, f := range frames {
		pristine[i] = append([]byte(nil), f...)
	}
	out := make([]Decision, len(frames))
	allocs := testing.AllocsPerRun(100, func() {
		for i := range frames {
			copy(frames[i], pristine[i]) // Process rewrites frames in place
		}
		w.Process(0, frames[:2], out)
		w.Process(1, frames[2:], out)
	})
	if allocs != 0 {
		t.Fatalf("Process allocates %.1f times per batch", allocs)
	}
	want := []Action{ActForward, ActForward}
	for i := range frames {
		copy(frames[i], pristine[i])
	}
	w.Process(0, frames[:2], out)
	for i, a := range want {
		if out[i].Action != a {
			t.Fatalf("frame %d: %+v, want %v: the batch measured was not the forwarding path", i, out[i], a)
		}
	}
}

func FuzzProcess(f *testing.F) {
	f.Add(udpFrame(f, "198.18.0.7", "203.0.113.9", frameOpts{}))
	f.Add(udpFrame(f, "2001:2:0:1::7", "2001:db8::1", frameOpts{vlan: true}))
	f.Add(udpFrame(f, "203.0.113.9", "198.18.0.7", frameOpts{ttl: 1}))
	pl := testPlane(f)
	w := NewWorker(pl)
	f.Fuzz(func(t *testing.T, frame []byte) {
		for in := uint8(0); in < 3; in++ {
			g := append([]byte(nil), frame...)
			d := process(t, w, in, g)
			if d.Action == ActForward {
				if int(d.Port) >= len(pl.Ports) || int(d.Skip) > len(g) {
					t.Fatalf("forward decision out of range: %+v", d)
				}
				if g[12+d.Skip] == 0x08 && g[13+d.Skip] == 0x00 && !ipv4HeaderSumOK(g[d.L3:int(d.L3)+int(g[d.L3]&0xf)*4]) {
					t.Fatalf("forwarded IPv4 header has a bad checksum")
				}
			} else if d.Reason == ReasonNone {
				t.Fatalf("non-forward decision without a reason: %+v", d)
			}
		}
	})
}

// The header check sums 32-bit words; the RFC 1071 definition sums 16-bit
// ones. They must agree on every header length IHL allows, valid or not.
func TestIPv4HeaderSumMatchesRFC1071(t *testing.T) {
	reference := func(h []byte) bool {
		var sum uint32
		for i := 0; i+1 < len(h); i += 2 {
			sum += uint32(h[i])<<8 | uint32(h[i+1])
		}
		for sum>>16 != 0 {
			sum = sum&0xffff + sum>>16
		}
		return sum == 0xffff
	}
	rng := rand.New(rand.NewPCG(7, 7))
	valid := 0
	for n := 0; n < 200_000; n++ {
		h := make([]byte, 4*(5+rng.IntN(11)))
		for i := range h {
			h[i] = byte(rng.Uint32())
		}
		if n%2 == 0 { // a correct checksum half the time
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:12], ^checksum16(h))
		}
		if got, want := ipv4HeaderSumOK(h), reference(h); got != want {
			t.Fatalf("header %x: ipv4HeaderSumOK %v, RFC 1071 %v", h, got, want)
		}
		if reference(h) {
			valid++
		}
	}
	if valid < 100_000 {
		t.Fatalf("only %d valid headers generated", valid)
	}
}
