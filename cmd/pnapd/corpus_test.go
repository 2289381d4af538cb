package main

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
)

// The malformed-traffic corpus: frames written byte by byte, so that each
// can lie about exactly one thing. Every frame carries a marker and its
// index in the corpus in its payload, so a capture can tell which one it is.

type frameKind uint8

const (
	kindGood frameKind = iota // must arrive on backbone a, exactly once
	kindEdge                  // unusual but valid: it may be forwarded
	kindBad                   // must never leave a backbone port
)

type corpusFrame struct {
	name  string
	kind  frameKind
	frame []byte
}

var corpusMarker = []byte("PNAPMAL!")

// packetSpec is what an IP packet of the corpus looks like before any lie.
type packetSpec struct {
	src, dst netip.Addr
	ttl      uint8
	options  []byte // IPv4 options
	frag     uint16 // IPv4 flags and fragment offset field
	ext      []byte // IPv6 extension headers, their first next-header in ext[0]'s position is set by the builder
	extFirst uint8  // IPv6: the next header of the fixed header when ext is set
}

type corpusBuilder struct {
	src, dst net.HardwareAddr // customer's and pnap's port MACs
	frames   []corpusFrame
}

func (b *corpusBuilder) payload() []byte {
	p := append([]byte(nil), corpusMarker...)
	return binary.BigEndian.AppendUint32(p, uint32(len(b.frames)))
}

// udp is a UDP datagram per s with a marked payload, as an IP packet.
func (b *corpusBuilder) udp(s packetSpec) []byte {
	body := b.payload()
	u := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint16(u[0:], 40000)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(body)))
	u = append(u, body...)
	if s.ttl == 0 {
		s.ttl = 64
	}
	if s.src.Is4() {
		ihl := 20 + len(s.options)
		h := make([]byte, ihl)
		h[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(h[2:], uint16(ihl+len(u)))
		binary.BigEndian.PutUint16(h[6:], s.frag)
		h[8], h[9] = s.ttl, 17
		copy(h[12:16], s.src.AsSlice())
		copy(h[16:20], s.dst.AsSlice())
		copy(h[20:], s.options)
		binary.BigEndian.PutUint16(h[10:], inetSum(h, 0))
		return append(h, u...)
	}
	sum := pseudoSum6(s.src, s.dst, len(u))
	binary.BigEndian.PutUint16(u[6:], inetSum(u, sum))
	h := make([]byte, 40, 40+len(s.ext)+len(u))
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], uint16(len(s.ext)+len(u)))
	h[6], h[7] = 17, s.ttl
	if len(s.ext) > 0 {
		h[6] = s.extFirst
	}
	copy(h[8:24], s.src.AsSlice())
	copy(h[24:40], s.dst.AsSlice())
	h = append(h, s.ext...)
	return append(h, u...)
}

// eth frames an IP packet from the customer to pnap's port.
func (b *corpusBuilder) eth(ip []byte, vlan bool) []byte {
	f := make([]byte, 0, 18+len(ip))
	f = append(f, b.dst...)
	f = append(f, b.src...)
	if vlan {
		f = append(f, 0x81, 0x00, 0x00, 42)
	}
	et := []byte{0x08, 0x00}
	if ip[0]>>4 == 6 {
		et = []byte{0x86, 0xdd}
	}
	return append(append(f, et...), ip...)
}

func (b *corpusBuilder) add(name string, kind frameKind, frame []byte) {
	b.frames = append(b.frames, corpusFrame{name, kind, frame})
}

// packet adds an IP packet per s, after lie has had its say.
func (b *corpusBuilder) packet(name string, kind frameKind, s packetSpec, lie func(ip []byte) []byte) {
	ip := b.udp(s)
	if lie != nil {
		ip = lie(ip)
	}
	b.add(name, kind, b.eth(ip, false))
}

var (
	cust4, transit4 = netip.MustParseAddr("198.18.0.7"), netip.MustParseAddr("203.0.113.9")
	cust6, transit6 = netip.MustParseAddr("2001:2:0:1::7"), netip.MustParseAddr("2001:db8:a::9")
)

// buildCorpus is the good traffic (goods of each family) interleaved with
// every malformed and edge-case frame.
func buildCorpus(src, dst net.HardwareAddr, goods int) []corpusFrame {
	b := &corpusBuilder{src: src, dst: dst}
	bad := badFrames(src, dst)
	for i := 0; i < goods || len(bad) > 0; i++ {
		if i < goods {
			b.packet("good IPv4", kindGood, packetSpec{src: cust4, dst: transit4}, nil)
			b.packet("good IPv6", kindGood, packetSpec{src: cust6, dst: transit6}, nil)
		}
		for range 4 {
			if len(bad) == 0 {
				break
			}
			f := bad[0]
			bad = bad[1:]
			// Re-mark it with its index in this corpus.
			if at := indexOf(f.frame, corpusMarker); at >= 0 && at+12 <= len(f.frame) {
				binary.BigEndian.PutUint32(f.frame[at+8:], uint32(len(b.frames)))
			}
			b.frames = append(b.frames, f)
		}
	}
	return b.frames
}

// badFrames are the malformed and edge-case frames, marked with their
// index among themselves (buildCorpus re-marks them).
func badFrames(src, dst net.HardwareAddr) []corpusFrame {
	b := &corpusBuilder{src: src, dst: dst}
	g4 := packetSpec{src: cust4, dst: transit4}
	g6 := packetSpec{src: cust6, dst: transit6}
	// Truncated at every length, from a bare Ethernet header on.
	for _, s := range []packetSpec{g4, g6} {
		whole := b.eth(b.udp(s), false)
		for n := 14; n < len(whole); n++ {
			b.add("truncated", kindBad, whole[:n])
		}
	}
	header4Lies(b, g4)
	header6Lies(b, g6)
	addressLies(b, g4, g6)
	l2Cases(b, g4, g6)
	optionsAndChains(b, g4, g6)
	garbage(b)
	return b.frames
}

// resum recomputes an IPv4 header checksum after a lie, so that the lie is
// the only thing wrong.
func resum(ip []byte) []byte {
	ihl := int(ip[0]&0xf) * 4
	if ihl < 20 || ihl > len(ip) {
		ihl = 20
	}
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], inetSum(ip[:ihl], 0))
	return ip
}

func header4Lies(b *corpusBuilder, g4 packetSpec) {
	for _, v := range []byte{0, 5, 6, 15} {
		b.packet("IPv4 version lie", kindBad, g4, func(ip []byte) []byte { ip[0] = v<<4 | 5; return resum(ip) })
	}
	for _, ihl := range []byte{0, 4, 15} {
		b.packet("IHL lie", kindBad, g4, func(ip []byte) []byte { ip[0] = 0x40 | ihl; return resum(ip) })
	}
	for _, total := range []uint16{0, 10, 19, 300, 0xffff} {
		b.packet("total length lie", kindBad, g4, func(ip []byte) []byte {
			binary.BigEndian.PutUint16(ip[2:], total)
			return resum(ip)
		})
	}
	b.packet("bad header checksum", kindBad, g4, func(ip []byte) []byte { ip[10] ^= 0x5a; return ip })
	// A total length shorter than the frame: trailing bytes, which are
	// not forwarded (the packet itself is fine).
	b.packet("IPv4 trailing bytes", kindEdge, g4, func(ip []byte) []byte { return append(ip, make([]byte, 40)...) })
	for _, ttl := range []uint8{0, 1} {
		s := g4
		s.ttl = ttl
		if ttl == 0 {
			b.packet("TTL 0", kindBad, s, func(ip []byte) []byte { ip[8] = 0; return resum(ip) })
			continue
		}
		b.packet("TTL 1", kindBad, s, nil)
	}
}

func header6Lies(b *corpusBuilder, g6 packetSpec) {
	b.packet("IPv6 version lie", kindBad, g6, func(ip []byte) []byte { ip[0] = 0x40; return ip })
	b.packet("IPv6 version lie", kindBad, g6, func(ip []byte) []byte { ip[0] = 0x70; return ip })
	for _, plen := range []uint16{200, 0xffff} {
		b.packet("payload length lie", kindBad, g6, func(ip []byte) []byte { binary.BigEndian.PutUint16(ip[4:], plen); return ip })
	}
	b.packet("IPv6 trailing bytes", kindEdge, g6, func(ip []byte) []byte { return append(ip, make([]byte, 40)...) })
	b.packet("hop limit 0", kindBad, g6, func(ip []byte) []byte { ip[7] = 0; return ip })
	s := g6
	s.ttl = 1
	b.packet("hop limit 1", kindBad, s, nil)
}

func addressLies(b *corpusBuilder, g4, g6 packetSpec) {
	for _, a := range []string{"127.0.0.1", "0.1.2.3", "169.254.1.1", "224.0.0.5", "239.1.2.3", "255.255.255.255", "240.0.0.1"} {
		s := g4
		s.dst = netip.MustParseAddr(a)
		b.packet("martian destination "+a, kindBad, s, nil)
		s = g4
		s.src = netip.MustParseAddr(a)
		b.packet("martian source "+a, kindBad, s, nil)
	}
	for _, a := range []string{"::", "::1", "fe80::1", "ff02::1", "ff0e::1", "::ffff:203.0.113.9"} {
		s := g6
		s.dst = netip.MustParseAddr(a)
		b.packet("martian destination "+a, kindBad, s, nil)
		s = g6
		s.src = netip.MustParseAddr(a)
		b.packet("martian source "+a, kindBad, s, nil)
	}
	// A destination no backbone holds: an ICMP error to the customer,
	// nothing onward.
	s := g4
	s.dst = netip.MustParseAddr("198.18.250.1")
	b.packet("no route", kindBad, s, nil)
}

func l2Cases(b *corpusBuilder, g4, g6 packetSpec) {
	b.add("VLAN-tagged IPv4", kindEdge, b.eth(b.udp(g4), true))
	b.add("VLAN-tagged IPv6", kindEdge, b.eth(b.udp(g6), true))
	for _, outer := range []uint16{0x88a8, 0x9100} {
		f := b.eth(b.udp(g4), true)
		binary.BigEndian.PutUint16(f[12:], outer) // QinQ: an outer service tag
		f = append(f[:16], append([]byte{0x81, 0x00, 0x00, 7}, f[16:]...)...)
		b.add("QinQ", kindBad, f)
	}
	f := b.eth(b.udp(g4), true)
	f[16], f[17] = 0x08, 0x06 // VLAN-tagged, not IP inside
	b.add("VLAN, ARP inside", kindBad, f)
	b.add("VLAN tag cut off", kindBad, b.eth(b.udp(g4), true)[:16])
	for _, mac := range []net.HardwareAddr{{2, 9, 9, 9, 9, 9}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {0x01, 0x00, 0x5e, 0, 0, 5}} {
		f := b.eth(b.udp(g4), false)
		copy(f[0:6], mac)
		b.add("another host's MAC", kindBad, f)
	}
}

func optionsAndChains(b *corpusBuilder, g4, g6 packetSpec) {
	s := g4
	s.options = []byte{1, 1, 1, 0} // NOPs and end of options
	b.packet("IPv4 options", kindEdge, s, nil)
	s.options = []byte{7, 7, 4, 0, 0, 0, 0, 0} // record route, one slot
	b.packet("IPv4 record route", kindEdge, s, nil)
	s = g4
	s.frag = 0x2000 // more fragments, offset 0
	b.packet("first fragment", kindEdge, s, nil)
	s.frag = 0x0000 | 185
	b.packet("last fragment", kindEdge, s, nil)
	for _, c := range []struct {
		name  string
		first uint8
		ext   []byte
	}{
		{"hop-by-hop, destination options", 0, []byte{60, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0}},
		{"fragment header", 44, []byte{17, 0, 0, 1, 0, 0, 0, 42}},
		{"routing header type 0, no segments left", 43, append([]byte{17, 2, 0, 0, 0, 0, 0, 0}, netip.MustParseAddr("2001:db8:a::1").AsSlice()...)},
	} {
		s := g6
		s.ext, s.extFirst = c.ext, c.first
		b.packet("IPv6 "+c.name, kindEdge, s, nil)
	}
}

// garbage is random bytes behind valid Ethernet headers: IPv4's and
// IPv6's ethertypes and a few others.
func garbage(b *corpusBuilder) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 60 {
		body := make([]byte, 20+rng.IntN(200))
		for j := range body {
			body[j] = byte(rng.Uint32())
		}
		f := append(append(append([]byte(nil), b.dst...), b.src...), 0, 0)
		switch i % 3 {
		case 0:
			f[12], f[13] = 0x08, 0x00
		case 1:
			f[12], f[13] = 0x86, 0xdd
			body[0] = 0x60 | body[0]&0xf
			binary.BigEndian.PutUint16(body[4:], uint16(len(body)+1+rng.IntN(1000))) // longer than what follows
		default:
			binary.BigEndian.PutUint16(f[12:], uint16(0x0600+rng.IntN(0xf000)))
		}
		b.add("garbage", kindBad, append(f, body...))
	}
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

// inetSum is the Internet checksum (RFC 1071) of b, starting from sum.
func inetSum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func pseudoSum6(src, dst netip.Addr, n int) uint32 {
	var sum uint32
	for _, a := range [][16]byte{src.As16(), dst.As16()} {
		for i := 0; i < 16; i += 2 {
			sum += uint32(a[i])<<8 | uint32(a[i+1])
		}
	}
	return sum + uint32(n) + 17
}
