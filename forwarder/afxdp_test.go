package forwarder_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/slowpath"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/forwarder/xsk/xsktest"
)

// afxdpLab is the test topology: a customer namespace, pnap's namespace with
// one customer port (c0) and two backbone ports (bb0, bb1), and one
// namespace per backbone. pnap's kernel does not forward (ip_forward 0), so
// whatever arrives was forwarded by pnap.
type afxdpLab struct {
	cust, pnap, bbA, bbB *lab.NS
	cl, pc0, pb0, al     *lab.Link
	pb1, bl              *lab.Link
	plane                *forwarder.Plane
	worker               *forwarder.Worker
	ports                []*xsk.Port // indexed as in plane
	loop                 *forwarder.Loop
	slow                 *slowpath.Responder
	// stopLoop stops the loop and waits for it; the cleanup calls it too.
	stopLoop func() error
}

// newBareLab builds the topology and addresses, without pnap.
func newBareLab(t testing.TB) *afxdpLab {
	lab.RequireRoot(t)
	x := &afxdpLab{cust: lab.NewNS(t, "pc"), pnap: lab.NewNS(t, "pp"), bbA: lab.NewNS(t, "pa"), bbB: lab.NewNS(t, "pb")}
	x.cl, x.pc0 = lab.Connect(t, x.cust, "c", x.pnap, "c0", lab.VethOpts{})
	x.pb0, x.al = lab.Connect(t, x.pnap, "bb0", x.bbA, "a", lab.VethOpts{})
	x.pb1, x.bl = lab.Connect(t, x.pnap, "bb1", x.bbB, "b", lab.VethOpts{})
	x.cl.AddAddr(t, "198.18.0.7/24", "2001:2:0:1::7/64")
	x.pc0.AddAddr(t, "198.18.0.1/24", "2001:2:0:1::1/64")
	x.cust.AddRoute(t, "0.0.0.0/0", "198.18.0.1")
	x.cust.AddRoute(t, "::/0", "2001:2:0:1::1")
	x.pb0.AddAddr(t, "198.18.100.2/24")
	x.al.AddAddr(t, "198.18.100.1/24")
	x.pb1.AddAddr(t, "198.18.101.2/24")
	x.bl.AddAddr(t, "198.18.101.1/24")
	x.pnap.Sysctl(t, "net/ipv4/ip_forward", "0")
	x.pnap.Sysctl(t, "net/ipv6/conf/all/forwarding", "0")
	return x
}

func newAFXDPLab(t testing.TB) *afxdpLab { return newAFXDPLabCPU(t, -1) }

// newAFXDPLabCPU is the lab with pnap forwarding, its worker pinned to cpu
// (-1: not pinned).
func newAFXDPLabCPU(t testing.TB, cpu int) *afxdpLab { return newAFXDPLabWith(t, cpu, nil) }

// newAFXDPLabWith is newAFXDPLabCPU with configure run on the plane and the
// Loop's options before the Loop is made.
func newAFXDPLabWith(t testing.TB, cpu int, configure func(*forwarder.Plane, *forwarder.LoopOptions)) *afxdpLab {
	x := newBareLab(t)

	bb, cust := forwarder.PlaneFIBs(t, "198.18.0.0/24", "2001:2:0:1::/64")
	links := []*lab.Link{x.pc0, x.pb0, x.pb1}
	x.plane = &forwarder.Plane{Backbones: bb, Customers: cust}
	for i, l := range links {
		role := forwarder.RoleBackbone
		if i == 0 {
			role = forwarder.RoleCustomer
		}
		x.plane.Ports = append(x.plane.Ports, forwarder.PortInfo{Name: l.Name, MAC: forwarder.MAC(l.MAC), MTU: 1500, Role: role})
	}
	h := &forwarder.Hops{
		Neigh4: map[[4]byte]forwarder.MAC{{198, 18, 0, 7}: forwarder.MAC(x.cl.MAC)},
		Neigh6: map[[16]byte]forwarder.MAC{netip.MustParseAddr("2001:2:0:1::7").As16(): forwarder.MAC(x.cl.MAC)},
	}
	for f := 0; f < 2; f++ {
		h.Backbone[0][f] = forwarder.NextHop{Port: 1, MAC: forwarder.MAC(x.al.MAC), Resolved: true}
		h.Backbone[1][f] = forwarder.NextHop{Port: 2, MAC: forwarder.MAC(x.bl.MAC), Resolved: true}
		h.Customer[0][f] = forwarder.NextHop{Port: 0}
	}
	h.SetSubnet(0, netip.MustParsePrefix("198.18.0.1/24"))
	h.SetSubnet(0, netip.MustParsePrefix("2001:2:0:1::1/64"))
	x.plane.SetHops(h)

	// Program, attachment and sockets are made inside pnap's namespace,
	// where the interface indexes mean these interfaces.
	var ports []*xsk.Port
	var locals []netip.Addr
	for _, a := range []string{"198.18.0.1", "2001:2:0:1::1", "198.18.100.2", "198.18.101.2"} {
		locals = append(locals, netip.MustParseAddr(a))
	}
	umem := xsktest.NewUmem(t, len(links), xsk.Options{})
	err := x.pnap.Do(func() error {
		for _, l := range links {
			p, err := xsktest.Open(t, umem, l.Name, l.Index, locals...)
			if err != nil {
				return err
			}
			ports = append(ports, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slowPorts := []slowpath.Port{
		{MAC: forwarder.MAC(x.pc0.MAC), Addr4: netip.MustParseAddr("198.18.0.1"), Addr6: netip.MustParseAddr("2001:2:0:1::1"), MTU: 1500},
		{MAC: forwarder.MAC(x.pb0.MAC), Addr4: netip.MustParseAddr("198.18.100.2"), MTU: 1500},
		{MAC: forwarder.MAC(x.pb1.MAC), Addr4: netip.MustParseAddr("198.18.101.2"), MTU: 1500},
	}
	for i, l := range links {
		slowPorts[i].Name, slowPorts[i].Ifindex = l.Name, l.Index
	}
	err = x.pnap.Do(func() (err error) {
		x.slow, err = slowpath.New(slowPorts, slowpath.Options{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.slow.Close() })
	slowIn := make(chan forwarder.SlowFrame, 64)
	opt := forwarder.LoopOptions{Slow: slowIn}
	if configure != nil {
		configure(x.plane, &opt)
	}
	x.worker, x.ports = forwarder.NewWorker(x.plane), ports
	x.loop = forwarder.NewLoop(x.worker, ports, cpu, opt)
	done := make(chan error, 1)
	go func() { done <- x.loop.Run() }()
	x.stopLoop = sync.OnceValue(func() error { x.loop.Stop(); return <-done })
	slowDone := make(chan struct{})
	go func() { x.slow.Run(slowIn); close(slowDone) }()
	t.Cleanup(func() {
		if err := x.stopLoop(); err != nil {
			t.Errorf("loop: %v", err)
		}
		close(slowIn)
		<-slowDone
	})
	return x
}

// awaitUDP returns the first captured frame carrying payload.
func awaitUDP(t *testing.T, c *lab.Capture, payload []byte) gopacket.Packet {
	t.Helper()
	return awaitFrame(t, c, fmt.Sprintf("frame with payload %q", payload), func(p gopacket.Packet) bool {
		return bytes.Contains(p.Data(), payload)
	})
}

// awaitFrame returns the first frame captured within 3 s for which match
// is true.
func awaitFrame(t *testing.T, c *lab.Capture, what string, match func(gopacket.Packet) bool) gopacket.Packet {
	t.Helper()
	var p gopacket.Packet
	if _, err := c.NextMatch(3*time.Second, func(f []byte) bool {
		p = gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default) // a copy: f is the capture's buffer
		return match(p)
	}); err != nil {
		t.Fatalf("no %s arrived", what)
	}
	return p
}

func udpChecksumOK(t *testing.T, p gopacket.Packet) bool {
	t.Helper()
	udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	var pseudo []byte
	if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
		pseudo = append(append(append([]byte{}, ip.SrcIP.To4()...), ip.DstIP.To4()...), 0, 17, 0, 0)
		binary.BigEndian.PutUint16(pseudo[10:], uint16(len(udp.Contents)+len(udp.Payload)))
	} else {
		ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		pseudo = append(append(append([]byte{}, ip.SrcIP...), ip.DstIP...), 0, 0, 0, 0, 0, 0, 0, 17)
		binary.BigEndian.PutUint16(pseudo[34:], uint16(len(udp.Contents)+len(udp.Payload)))
	}
	b := append(append(pseudo, udp.Contents...), udp.Payload...)
	return forwarder.Checksum16(b) == 0xffff
}

func TestForwardThroughAFXDP(t *testing.T) {
	x := newAFXDPLab(t)
	capA, capB, capC := x.al.Capture(t), x.bl.Capture(t), x.cl.Capture(t)
	send := func(dst string, payload string) {
		t.Helper()
		src := "198.18.0.7"
		if netip.MustParseAddr(dst).Is6() {
			src = "2001:2:0:1::7"
		}
		if err := x.cust.SendUDP(netip.AddrPortFrom(netip.MustParseAddr(src), 40000), netip.AddrPortFrom(netip.MustParseAddr(dst), 9), []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}

	// IPv4 via backbone a, the preferred one.
	send("203.0.113.9", "pnap-v4-via-a")
	p := awaitUDP(t, capA, []byte("pnap-v4-via-a"))
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.DstMAC, x.al.MAC) || !bytes.Equal(eth.SrcMAC, x.pb0.MAC) {
		t.Fatalf("MACs %v -> %v, want %v -> %v", eth.SrcMAC, eth.DstMAC, x.pb0.MAC, x.al.MAC)
	}
	ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip.TTL != 63 || !forwarder.IPv4HeaderSumOK(ip.Contents) {
		t.Fatalf("TTL %d (want 63), header checksum valid %v", ip.TTL, forwarder.IPv4HeaderSumOK(ip.Contents))
	}
	if !udpChecksumOK(t, p) {
		t.Fatalf("UDP checksum no longer valid: %x", p.Data())
	}

	// IPv6 likewise, hop limit 64 -> 63.
	send("2001:db8::9", "pnap-v6-via-a")
	p = awaitUDP(t, capA, []byte("pnap-v6-via-a"))
	if ip6 := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip6.HopLimit != 63 || !udpChecksumOK(t, p) {
		t.Fatalf("IPv6: hop limit %d, UDP checksum valid %v", ip6.HopLimit, udpChecksumOK(t, p))
	}

	// Move the prefix to backbone b: the next packets arrive there.
	if err := x.plane.Backbones.Select(netip.MustParsePrefix("203.0.113.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	send("203.0.113.9", "pnap-v4-via-b")
	p = awaitUDP(t, capB, []byte("pnap-v4-via-b"))
	if eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, x.bl.MAC) || !bytes.Equal(eth.SrcMAC, x.pb1.MAC) {
		t.Fatalf("after the swap: MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}

	// A reply from backbone a reaches the customer.
	reply := lab.UDPFrame(t, x.al.MAC, x.pb0.MAC, "203.0.113.9", "198.18.0.7", []byte("pnap-reply"))
	if err := x.al.SendFrame(reply); err != nil {
		t.Fatal(err)
	}
	p = awaitUDP(t, capC, []byte("pnap-reply"))
	if eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, x.cl.MAC) || !bytes.Equal(eth.SrcMAC, x.pc0.MAC) {
		t.Fatalf("reply MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	// TTL 1: the sender hears ICMP time exceeded from the port's address.
	expiring := lab.UDPFrame(t, x.cl.MAC, x.pc0.MAC, "198.18.0.7", "203.0.113.9", []byte("pnap-ttl-1"))
	expiring[22] = 1 // TTL
	expiring[24], expiring[25] = 0, 0
	binary.BigEndian.PutUint16(expiring[24:], ^forwarder.Checksum16(expiring[14:34]))
	if err := x.cl.SendFrame(expiring); err != nil {
		t.Fatal(err)
	}
	awaitFrame(t, capC, "ICMP time exceeded from 198.18.0.1", func(p gopacket.Packet) bool {
		ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return ok && ic.TypeCode.Type() == layers.ICMPv4TypeTimeExceeded && ip.SrcIP.Equal(net.IP{198, 18, 0, 1})
	})
	// The slow path counts after its send returns, which may be after the
	// capture saw the frame.
	for deadline := time.Now().Add(time.Second); x.slow.Sent.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if x.slow.Sent.Load() == 0 {
		t.Fatal("slow path counted no ICMP error sent")
	}
	var st forwarder.PortStats
	x.worker.Stats(0, &st)
	if st.RxPackets < 2 {
		t.Fatalf("customer port counted %d packets received", st.RxPackets)
	}
}

// TestAFXDPEdgeCases sends malformed and unusual frames through the real
// path: nothing crashes, each is counted under its reason, and traffic to
// the box itself still reaches its kernel.
func TestAFXDPEdgeCases(t *testing.T) {
	x := newAFXDPLab(t)
	good := lab.UDPFrame(t, x.cl.MAC, x.pc0.MAC, "198.18.0.7", "203.0.113.9", []byte("edge"))
	mut := func(fn func(f []byte) []byte) []byte { return fn(append([]byte(nil), good...)) }
	fixSum := func(f []byte) []byte {
		f[24], f[25] = 0, 0
		binary.BigEndian.PutUint16(f[24:], ^forwarder.Checksum16(f[14:34]))
		return f
	}
	cases := []struct {
		name   string
		frame  []byte
		reason forwarder.Reason
	}{
		{"bad header checksum", mut(func(f []byte) []byte { f[24] ^= 0xff; return f }), forwarder.ReasonMalformed},
		{"IHL < 5", mut(func(f []byte) []byte { f[14] = 0x44; return fixSum(f) }), forwarder.ReasonMalformed},
		{"total length > frame", mut(func(f []byte) []byte { binary.BigEndian.PutUint16(f[16:], 1400); return fixSum(f) }), forwarder.ReasonMalformed},
		{"TTL 0", mut(func(f []byte) []byte { f[22] = 0; return fixSum(f) }), forwarder.ReasonTTL},
		{"no route", lab.UDPFrame(t, x.cl.MAC, x.pc0.MAC, "198.18.0.7", "192.0.2.1", []byte("edge")), forwarder.ReasonNoRoute},
	}
	for _, tc := range cases {
		var before forwarder.PortStats
		x.worker.Stats(0, &before)
		if err := x.cl.SendFrame(tc.frame); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for {
			var after forwarder.PortStats
			x.worker.Stats(0, &after)
			if after.Drops[tc.reason] > before.Drops[tc.reason] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not counted under %v", tc.name, tc.reason)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// A VLAN-tagged frame is forwarded untagged.
	capA := x.al.Capture(t)
	untagged := lab.UDPFrame(t, x.cl.MAC, x.pc0.MAC, "198.18.0.7", "203.0.113.9", []byte("vlan"))
	tagged := append(append(append([]byte(nil), untagged[:12]...), 0x81, 0x00, 0x00, 42), untagged[12:]...)
	if err := x.cl.SendFrame(tagged); err != nil {
		t.Fatal(err)
	}
	p := awaitUDP(t, capA, []byte("vlan"))
	if p.Layer(layers.LayerTypeDot1Q) != nil {
		t.Fatal("the VLAN tag was forwarded")
	}
	// Traffic to the box goes to its kernel, which answers.
	got, err := x.pnap.DeliverUDP(x.cust, netip.MustParseAddrPort("198.18.0.7:40001"), netip.MustParseAddrPort("198.18.0.1:5353"), []byte("to-the-box"), 2*time.Second)
	if err != nil || string(got) != "to-the-box" {
		t.Fatalf("traffic to the box: %q, %v", got, err)
	}
}

// Forwarding still works with the worker driving NAPI (xsk's tests check
// the socket options themselves).
func TestForwardWithBusyPoll(t *testing.T) {
	x := newAFXDPLab(t)
	for _, p := range x.ports {
		if err := p.PreferBusyPoll(20, 64); err != nil {
			t.Fatal(err)
		}
	}
	capA := x.al.Capture(t)
	if err := x.cust.SendUDP(netip.MustParseAddrPort("198.18.0.7:40000"), netip.MustParseAddrPort("203.0.113.9:9"), []byte("busy-poll")); err != nil {
		t.Fatal(err)
	}
	awaitUDP(t, capA, []byte("busy-poll"))
}

// End to end on AF_XDP: a frame put on a Loop's inject ring leaves by the
// port it names at once (the Loop is idle in poll), and a reply to the probe
// source reaches ProbeReply and not the customer.
func TestInjectAndProbeReplyThroughAFXDP(t *testing.T) {
	inj, err := forwarder.NewInjectRing(64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inj.Close() })
	replies := make(chan []byte, 8)
	x := newAFXDPLabWith(t, -1, func(pl *forwarder.Plane, l *forwarder.LoopOptions) {
		pl.SetProbeSources(netip.MustParseAddr("198.18.0.200"), netip.Addr{})
		l.Inject = inj
		l.ProbeReply = func(f []byte, at int64) {
			select {
			case replies <- append([]byte(nil), f...):
			default:
			}
		}
	})
	atA := x.al.Capture(t)
	probe := forwarder.ICMPEcho(t, "198.18.0.200", "203.0.113.9", true, 4242, 1)
	copy(probe[0:6], x.al.MAC)
	copy(probe[6:12], x.pb0.MAC)
	time.Sleep(300 * time.Millisecond) // the Loop is now asleep in poll
	start := time.Now()
	if !inj.Send(1, probe) {
		t.Fatal("inject refused")
	}
	awaitFrame(t, atA, "injected probe", func(p gopacket.Packet) bool {
		e, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && e.Id == 4242
	})
	if lat := time.Since(start); lat > 50*time.Millisecond {
		t.Errorf("injected frame took %v to leave: the Loop was not woken", lat)
	}

	// The backbone answers the probe source; the customer must not see it.
	atCust := x.cl.Capture(t)
	x.bbA.AddRoute(t, "198.18.0.0/24", "198.18.100.2")
	reply := forwarder.ICMPEcho(t, "203.0.113.9", "198.18.0.200", false, 4242, 1)
	copy(reply[0:6], x.pb0.MAC)
	copy(reply[6:12], x.al.MAC)
	if err := x.al.SendFrame(reply); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-replies:
		if !bytes.Equal(f[14:], reply[14:]) {
			t.Fatal("ProbeReply got a different frame")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the probe reply never reached ProbeReply")
	}
	if f, err := atCust.NextMatch(300*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, reply[34:42]) }); err == nil && f != nil {
		t.Fatal("the probe reply reached the customer")
	}
}
