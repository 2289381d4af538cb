package slowpath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
)

var (
	macCust = forwarder.MAC{0x02, 0, 0, 0, 0, 0x10}
	macPort = forwarder.MAC{0x02, 0, 0, 0, 0xaa, 0}
)

// udpFrame is a frame from the customer host to pnap's port 0.
func udpFrame(t *testing.T, src, dst string, o frametest.Opts) []byte {
	t.Helper()
	o.Src, o.Dst = macCust, macPort
	return frametest.UDP(t, src, dst, o)
}

// slow is the fast path's decision for a frame owed an ICMP error, as
// forwarder's tests check it makes them: the IP header at l3.
func slow(r forwarder.Reason, l3 uint8) forwarder.Decision {
	return forwarder.Decision{Action: forwarder.ActSlow, Reason: r, L3: l3}
}

// headerSumOK checks an IPv4 header checksum (RFC 1071).
func headerSumOK(h []byte) bool {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s == 0xffff
}

func TestICMPErrors(t *testing.T) {
	cases := []struct {
		name  string
		frame []byte
		d     forwarder.Decision
		src   string
		check func(p gopacket.Packet) bool
	}{
		{"v4 TTL", udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{TTL: 1}), slow(forwarder.ReasonTTL, 14), "198.18.0.1", func(p gopacket.Packet) bool {
			ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			return ok && ic.TypeCode.Type() == layers.ICMPv4TypeTimeExceeded
		}},
		{"v4 no route", udpFrame(t, "198.18.0.7", "192.0.2.1", frametest.Opts{}), slow(forwarder.ReasonNoRoute, 14), "198.18.0.1", func(p gopacket.Packet) bool {
			ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			return ok && ic.TypeCode == layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet)
		}},
		{"v6 hop limit", udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frametest.Opts{TTL: 1}), slow(forwarder.ReasonTTL, 14), "2001:2:0:1::1", func(p gopacket.Packet) bool {
			ic, ok := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			return ok && ic.TypeCode.Type() == layers.ICMPv6TypeTimeExceeded
		}},
	}
	for _, tc := range cases {
		orig := append([]byte(nil), tc.frame...)
		reply, err := ICMPError(tc.frame, tc.d, macPort, netip.MustParseAddr(tc.src), 1500)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
		if p.ErrorLayer() != nil {
			t.Fatalf("%s: reply does not decode: %v", tc.name, p.ErrorLayer().Error())
		}
		eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if forwarder.MAC(eth.DstMAC) != macCust || forwarder.MAC(eth.SrcMAC) != macPort {
			t.Fatalf("%s: reply MACs %v -> %v", tc.name, eth.SrcMAC, eth.DstMAC)
		}
		if !tc.check(p) {
			t.Fatalf("%s: wrong ICMP type in %v", tc.name, p)
		}
		// The quote starts with the original IP header.
		if !bytes.Contains(reply, orig[14:34]) {
			t.Fatalf("%s: reply does not quote the original header", tc.name)
		}
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok && !headerSumOK(ip.Contents) {
			t.Fatalf("%s: bad IPv4 header checksum", tc.name)
		}
	}
}

// TestSlowPathRateLimit feeds the slow path a flood of expiring packets:
// it answers at most its rate (plus the burst) and counts the rest.
func TestSlowPathRateLimit(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	sp := newResponder([]Port{{MAC: macPort, Addr4: netip.MustParseAddr("198.18.0.1"), MTU: 1500}}, Options{Limit: 20})
	sp.fds[0] = fds[0]
	defer sp.Close()
	in := make(chan forwarder.SlowFrame, 1000)
	for i := 0; i < 500; i++ {
		f := udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{TTL: 1})
		sf := forwarder.SlowFrame{Port: 0, Decision: slow(forwarder.ReasonTTL, 14)}
		sf.Len = uint16(copy(sf.Head[:], f))
		in <- sf
	}
	close(in)
	start := time.Now()
	sp.Run(in)
	elapsed := time.Since(start)
	// The limiter allows its burst (20) at once, then 20 a second.
	maxSent := 20 + uint64(20*elapsed.Seconds()) + 1
	if s := sp.Sent.Load(); s < 20 || s > maxSent {
		t.Fatalf("sent %d ICMP errors in %v, want 20..%d", s, elapsed, maxSent)
	}
	if sp.Sent.Load()+sp.Limited.Load()+sp.Failed.Load() != 500 || sp.Failed.Load() != 0 {
		t.Fatalf("sent %d + limited %d + failed %d, want 500 with none failed", sp.Sent.Load(), sp.Limited.Load(), sp.Failed.Load())
	}
	// What was sent is a well-formed ICMP error, one datagram each.
	buf := make([]byte, 2048)
	n, err := unix.Read(fds[1], buf)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(buf[:n], layers.LayerTypeEthernet, gopacket.Default)
	if ic, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); !ok || ic.TypeCode.Type() != layers.ICMPv4TypeTimeExceeded {
		t.Fatalf("slow path sent %v", p)
	}
}

// TestNoICMPAboutICMPErrorsOrFragments: RFC 1812 4.3.2.7, RFC 4443 2.4(e).
func TestNoICMPAboutICMPErrorsOrFragments(t *testing.T) {
	expiring := udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{TTL: 1})
	d := slow(forwarder.ReasonTTL, 14)
	// The UDP packet itself is owed time exceeded.
	if _, err := ICMPError(expiring, d, macPort, netip.MustParseAddr("198.18.0.1"), 1500); err != nil {
		t.Fatalf("UDP with TTL 1: %v", err)
	}
	// That error, expiring in turn, is not answered.
	icmpErr, err := ICMPError(expiring, d, macPort, netip.MustParseAddr("198.18.0.1"), 1500)
	if err != nil {
		t.Fatal(err)
	}
	icmpErr[22] = 1 // TTL 1 on the error itself
	if _, err := ICMPError(icmpErr, d, macPort, netip.MustParseAddr("198.18.0.1"), 1500); !errors.Is(err, ErrNoICMP) {
		t.Fatalf("ICMP error about an ICMP error: %v, want ErrNoICMP", err)
	}
	// Nor is a non-first fragment, nor a packet from a multicast source.
	frag := append([]byte(nil), expiring...)
	binary.BigEndian.PutUint16(frag[20:22], 100) // fragment offset
	if _, err := ICMPError(frag, d, macPort, netip.MustParseAddr("198.18.0.1"), 1500); !errors.Is(err, ErrNoICMP) {
		t.Fatalf("non-first fragment: %v, want ErrNoICMP", err)
	}
	mcast := append([]byte(nil), expiring...)
	copy(mcast[26:30], []byte{224, 0, 0, 9})
	if _, err := ICMPError(mcast, d, macPort, netip.MustParseAddr("198.18.0.1"), 1500); !errors.Is(err, ErrNoICMP) {
		t.Fatalf("multicast source: %v, want ErrNoICMP", err)
	}
	v6 := udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frametest.Opts{TTL: 1})
	d6 := slow(forwarder.ReasonTTL, 14)
	e6, err := ICMPError(v6, d6, macPort, netip.MustParseAddr("2001:2:0:1::1"), 1500)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ICMPError(e6, d6, macPort, netip.MustParseAddr("2001:2:0:1::1"), 1500); !errors.Is(err, ErrNoICMP) {
		t.Fatalf("ICMPv6 error about an ICMPv6 error: %v, want ErrNoICMP", err)
	}
}

func TestICMPErrorKeepsVLAN(t *testing.T) {
	f := udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{TTL: 1, VLAN: true})
	d := slow(forwarder.ReasonTTL, 18)
	reply, err := ICMPError(f, d, macPort, netip.MustParseAddr("198.18.0.1"), 1500)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
	q, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
	if !ok || q.VLANIdentifier != 42 {
		t.Fatalf("reply to a frame on VLAN 42 is not on VLAN 42: %v", p)
	}
	if _, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); !ok {
		t.Fatalf("no ICMP in the tagged reply: %v", p)
	}
}
