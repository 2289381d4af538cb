package slowpath

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
)

var (
	fuzzSrc4 = netip.MustParseAddr("198.18.0.1")
	fuzzSrc6 = netip.MustParseAddr("2001:2:0:1::1")
)

// FuzzICMPError feeds the error builder any frame, any reason and any MTU.
// Whatever it builds must be an ICMP or ICMPv6 error a router may send:
// checksums right, addressed back to the sender, quoting the start of the
// packet, as much of it as RFC 1812 4.3.2.3 (576 bytes in all) or RFC 4443
// 2.4(c) (1280) allow; and never about what owedICMP refuses (an ICMP
// error, a non-first fragment, a source that is not one host).
func FuzzICMPError(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s.frame, s.vlan, uint8(s.reason), s.mtu)
	}
	f.Fuzz(func(t *testing.T, frame []byte, vlan bool, reason uint8, mtu uint16) {
		l3 := ethHdrLen
		if vlan {
			l3 += vlanTagLen
		}
		r := forwarder.Reason(reason % 16) // every reason, and some that are none
		src := fuzzSrc4
		if len(frame) > l3 && frame[l3]>>4 == 6 {
			src = fuzzSrc6 // as the responder picks it
		}
		orig := bytes.Clone(frame)
		reply, err := ICMPError(frame, slow(r, uint8(l3)), macPort, src, int(mtu))
		if !bytes.Equal(frame, orig) {
			t.Fatal("ICMPError changed the frame it answers")
		}
		if err != nil {
			return
		}
		if r != forwarder.ReasonTTL && r != forwarder.ReasonNoRoute && r != forwarder.ReasonMTU {
			t.Fatalf("built an error for reason %v, which owes none", r)
		}
		ip := orig[l3:]
		if why := mustNotAnswer(ip); why != "" {
			t.Fatalf("built an error about %s", why)
		}
		p := gopacket.NewPacket(reply, layers.LayerTypeEthernet, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("reply does not decode: %v\n% x", el.Error(), reply)
		}
		checkReplyL2(t, p, orig, l3)
		switch ip[0] >> 4 {
		case 4:
			checkICMP4(t, p, reply, l3, ip, r, mtu)
		case 6:
			checkICMP6(t, p, reply, l3, ip, r, mtu)
		default:
			t.Fatalf("built an error about a packet of IP version %d", ip[0]>>4)
		}
	})
}

// mustNotAnswer says why the IP packet ip must get no error, or "".
func mustNotAnswer(ip []byte) string {
	switch {
	case len(ip) >= ipv4MinHdr && ip[0]>>4 == 4:
		ihl := int(ip[0]&0x0f) * 4
		if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			return "a non-first fragment"
		}
		if ip[9] == 1 && len(ip) > ihl && ihl >= ipv4MinHdr {
			switch layers.ICMPv4TypeCode(uint16(ip[ihl]) << 8).Type() {
			case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeSourceQuench, layers.ICMPv4TypeRedirect,
				layers.ICMPv4TypeTimeExceeded, layers.ICMPv4TypeParameterProblem:
				return "an ICMP error"
			}
		}
		src := netip.AddrFrom4([4]byte(ip[12:16]))
		if src.IsMulticast() || src.IsUnspecified() || src.IsLoopback() || ip[12] == 0 || src == netip.MustParseAddr("255.255.255.255") {
			return fmt.Sprintf("a packet from %v", src)
		}
	case len(ip) >= ipv6HdrLen && ip[0]>>4 == 6:
		src := netip.AddrFrom16([16]byte(ip[8:24]))
		if src.IsMulticast() || src.IsUnspecified() || src.IsLoopback() {
			return fmt.Sprintf("a packet from %v", src)
		}
		return mustNotAnswer6(ip)
	}
	return ""
}

// mustNotAnswer6 walks the extension headers of the IPv6 packet ip (as
// Linux's ipv6_skip_exthdr does) to the upper layer: an ICMPv6 error or a
// non-first fragment (whose upper layer may be one) gets no error.
func mustNotAnswer6(ip []byte) string {
	next, off := ip[6], ipv6HdrLen
	for off+8 <= len(ip) {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			next, off = ip[off], off+8+int(ip[off+1])*8
		case 51: // authentication header: its length is in 4-byte units
			next, off = ip[off], off+(int(ip[off+1])+2)*4
		case 44:
			if binary.BigEndian.Uint16(ip[off+2:off+4])&^7 != 0 {
				return "a non-first fragment"
			}
			next, off = ip[off], off+8
		case 58:
			if ip[off] < 128 {
				return "an ICMPv6 error"
			}
			return ""
		default:
			return ""
		}
	}
	if next == 58 && off < len(ip) && ip[off] < 128 {
		return "an ICMPv6 error" // an error's type byte is all it takes
	}
	return ""
}

// checkReplyL2 checks the reply goes from the port back to the frame's
// source, on the frame's VLAN.
func checkReplyL2(t *testing.T, p gopacket.Packet, frame []byte, l3 int) {
	t.Helper()
	eth, ok := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !ok || forwarder.MAC(eth.SrcMAC) != macPort || !bytes.Equal(eth.DstMAC, frame[6:12]) {
		t.Fatalf("reply's Ethernet header %v, want %v -> %x", eth, macPort, frame[6:12])
	}
	if l3 == ethHdrLen {
		return
	}
	q, ok := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
	if !ok || q.VLANIdentifier != binary.BigEndian.Uint16(frame[14:16])&0x0fff || q.Priority != frame[14]>>5 {
		t.Fatalf("reply to a frame with tag %x has tag %v", frame[14:16], q)
	}
}

// quoteLen is how much of the IP packet ip an error should quote: all that
// is there of it (not the Ethernet padding after it), up to limit.
func quoteLen(ip []byte, total, limit int) int {
	return min(len(ip), total, limit)
}

// ipPacket is the IP packet of n bytes at l2 in reply, which must fill the
// frame or be padded to Ethernet's 60 bytes.
func ipPacket(t *testing.T, reply []byte, l2, n int) []byte {
	t.Helper()
	if l2+n != len(reply) && (len(reply) != 60 || l2+n > 60) {
		t.Fatalf("reply of %d bytes holds an IP packet of %d after %d of Ethernet header", len(reply), n, l2)
	}
	return reply[l2 : l2+n]
}

// checkICMP4 checks the ICMP error reply (IP header at l2) about the IPv4
// packet ip.
func checkICMP4(t *testing.T, p gopacket.Packet, reply []byte, l2 int, ip []byte, r forwarder.Reason, mtu uint16) {
	t.Helper()
	h, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok || h.IHL != 5 || h.Protocol != layers.IPProtocolICMPv4 || !headerSumOK(reply[l2:l2+ipv4MinHdr]) {
		t.Fatalf("reply's IPv4 header %v (checksum right: %v)", h, ok && headerSumOK(reply[l2:l2+ipv4MinHdr]))
	}
	if h.Length > 576 {
		t.Fatalf("reply's IPv4 total length %d, want at most 576 (RFC 1812 4.3.2.3)", h.Length)
	}
	l3 := ipPacket(t, reply, l2, int(h.Length))
	if !h.SrcIP.Equal(fuzzSrc4.AsSlice()) || !h.DstIP.Equal(ip[12:16]) {
		t.Fatalf("reply from %v to %v, want %v to %v", h.SrcIP, h.DstIP, fuzzSrc4, netip.AddrFrom4([4]byte(ip[12:16])))
	}
	icmp := l3[ipv4MinHdr:]
	if onesSum(0, icmp) != 0xffff {
		t.Fatalf("bad ICMP checksum: % x", icmp)
	}
	tc, _, _ := errorTypes(r)
	var rest [4]byte
	if r == forwarder.ReasonMTU {
		binary.BigEndian.PutUint16(rest[2:], mtu) // RFC 1191
	}
	if layers.ICMPv4TypeCode(binary.BigEndian.Uint16(icmp[0:2])) != tc || !bytes.Equal(icmp[4:8], rest[:]) {
		t.Fatalf("ICMP header % x for %v, want type and code %v, then % x", icmp[:8], r, tc, rest)
	}
	ihl, total := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:4]))
	if ihl < ipv4MinHdr || ihl > len(ip) || total < ihl {
		t.Fatalf("built an error about a malformed header (IHL %d, total length %d, %d bytes)", ihl, total, len(ip))
	}
	quote, want := icmp[8:], quoteLen(ip, total, 576-ipv4MinHdr-8)
	checkQuote(t, quote, ip, want)
}

// checkICMP6 checks the ICMPv6 error reply (IP header at l2) about the
// IPv6 packet ip.
func checkICMP6(t *testing.T, p gopacket.Packet, reply []byte, l2 int, ip []byte, r forwarder.Reason, mtu uint16) {
	t.Helper()
	h, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if !ok || h.NextHeader != layers.IPProtocolICMPv6 {
		t.Fatalf("reply's IPv6 header %v", h)
	}
	if ipv6HdrLen+int(h.Length) > 1280 {
		t.Fatalf("reply's IPv6 payload length %d, want at most 1240 (1280 in all, RFC 4443 2.4(c))", h.Length)
	}
	l3 := ipPacket(t, reply, l2, ipv6HdrLen+int(h.Length))
	if !h.SrcIP.Equal(fuzzSrc6.AsSlice()) || !h.DstIP.Equal(ip[8:24]) {
		t.Fatalf("reply from %v to %v, want %v to %v", h.SrcIP, h.DstIP, fuzzSrc6, netip.AddrFrom16([16]byte(ip[8:24])))
	}
	icmp := l3[ipv6HdrLen:]
	// The pseudo-header (RFC 8200 8.1): addresses, upper-layer length,
	// next header.
	var pseudo [8]byte
	binary.BigEndian.PutUint32(pseudo[0:4], uint32(len(icmp)))
	pseudo[7] = 58
	if onesSum(onesSum(0, l3[8:40]), append(pseudo[:], icmp...)) != 0xffff {
		t.Fatalf("bad ICMPv6 checksum: % x", icmp)
	}
	_, tc, _ := errorTypes(r)
	var rest [4]byte
	if r == forwarder.ReasonMTU {
		binary.BigEndian.PutUint32(rest[:], uint32(mtu)) // RFC 4443 3.2
	}
	if layers.ICMPv6TypeCode(binary.BigEndian.Uint16(icmp[0:2])) != tc || !bytes.Equal(icmp[4:8], rest[:]) {
		t.Fatalf("ICMPv6 header % x for %v, want type and code %v, then % x", icmp[:8], r, tc, rest)
	}
	total := ipv6HdrLen + int(binary.BigEndian.Uint16(ip[4:6]))
	quote, want := icmp[8:], quoteLen(ip, total, 1280-ipv6HdrLen-8)
	checkQuote(t, quote, ip, want)
}

// checkQuote checks that quote is the first want bytes of ip.
func checkQuote(t *testing.T, quote, ip []byte, want int) {
	t.Helper()
	if !bytes.Equal(quote, ip[:want]) {
		show := func(b []byte) []byte { return b[:min(len(b), 64)] }
		t.Fatalf("quote of %d bytes, want the packet's first %d:\n% x\nwant\n% x", len(quote), want, show(quote), show(ip[:want]))
	}
}

// onesSum adds b to the ones' complement sum s (RFC 1071), an odd last
// byte as the high half of a word.
func onesSum(s uint32, b []byte) uint32 {
	for ; len(b) >= 2; b = b[2:] {
		s += uint32(binary.BigEndian.Uint16(b))
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return s
}

type fuzzSeed struct {
	frame  []byte
	vlan   bool
	reason forwarder.Reason
	mtu    uint16
}

// fuzzSeeds are frames the fast path hands over, whole and cut to the
// slow path's 256-byte head, and some it must not answer.
func fuzzSeeds(tb testing.TB) []fuzzSeed {
	udp := func(src, dst string, o frametest.Opts) []byte {
		o.Src, o.Dst = macCust, macPort
		return frametest.UDP(tb, src, dst, o)
	}
	v4 := udp("198.18.0.7", "203.0.113.9", frametest.Opts{TTL: 1})
	big4 := udp("198.18.0.7", "203.0.113.9", frametest.Opts{DF: true, Payload: 1400})
	v6 := udp("2001:2:0:1::7", "2001:db8::1", frametest.Opts{TTL: 1})
	big6 := udp("2001:2:0:1::7", "2001:db8::1", frametest.Opts{Payload: 1400})
	tagged := udp("198.18.0.7", "203.0.113.9", frametest.Opts{TTL: 1, VLAN: true})
	// An IPv4 header with options (4 NOPs), and an empty IPv6 packet padded
	// to Ethernet's 60 bytes (the IPv4 frames are padded already).
	options := append(append(bytes.Clone(v4[:34]), 1, 1, 1, 1), v4[34:42]...)
	options[14], options[17] = 0x46, options[17]+4
	empty6 := append(bytes.Clone(v6[:54]), make([]byte, 6)...)
	empty6[18], empty6[19], empty6[20] = 0, 0, 59 // payload length 0, no next header
	frag4 := bytes.Clone(v4)
	binary.BigEndian.PutUint16(frag4[20:22], 185) // offset 1480
	err4, _ := ICMPError(v4, slow(forwarder.ReasonTTL, 14), macPort, fuzzSrc4, 1500)
	err6, _ := ICMPError(v6, slow(forwarder.ReasonTTL, 14), macPort, fuzzSrc6, 1500)

	hopByHop := []byte{0, 1, 4, 0, 0, 0, 0}       // length 0 (8 bytes), PadN of 4
	fragment := []byte{0, 0x05, 0xc8, 0, 0, 0, 1} // offset 1480, ID 1
	return []fuzzSeed{
		{v4, false, forwarder.ReasonTTL, 0},
		{v4, false, forwarder.ReasonNoRoute, 0},
		{big4, false, forwarder.ReasonMTU, 1280},
		{big4[:256], false, forwarder.ReasonMTU, 1400},
		{tagged, true, forwarder.ReasonTTL, 0},
		{options, false, forwarder.ReasonTTL, 0},
		{frag4, false, forwarder.ReasonTTL, 0},
		{err4, false, forwarder.ReasonTTL, 0},
		{v6, false, forwarder.ReasonTTL, 0},
		{big6, false, forwarder.ReasonMTU, 1280},
		{big6[:256], false, forwarder.ReasonNoRoute, 0},
		{empty6, false, forwarder.ReasonTTL, 0},
		{err6, false, forwarder.ReasonTTL, 0},
		{withExtHeader6(err6, 0, hopByHop), false, forwarder.ReasonTTL, 0},
		{withExtHeader6(v6, 44, fragment), false, forwarder.ReasonTTL, 0},
	}
}

// withExtHeader6 inserts an extension header of type typ (next header and
// body) after the IPv6 header of frame.
func withExtHeader6(frame []byte, typ byte, body []byte) []byte {
	ip := frame[ethHdrLen:]
	ext := append([]byte{ip[6]}, body...)
	out := append(append(append([]byte(nil), frame[:ethHdrLen+ipv6HdrLen]...), ext...), ip[ipv6HdrLen:]...)
	out[ethHdrLen+6] = typ
	binary.BigEndian.PutUint16(out[ethHdrLen+4:], binary.BigEndian.Uint16(ip[4:6])+uint16(len(ext)))
	return out
}
