package probes

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// probeTTL is the probes' TTL and hop limit: the usual host default, so a
// probe travels as far as the traffic it stands for.
const probeTTL = 64

// probeMSS is the SYN's MSS option: some middleboxes drop SYNs without
// options as malformed or as scans.
const probeMSS = 1460

// probeText follows the echo's checksum-compensation word in its payload,
// to tell operators what the packet is.
const probeText = "pnap probe"

// frameBuilder builds probe frames into one reused buffer. Its layers and
// address arrays are kept so that building allocates little.
type frameBuilder struct {
	buf     gopacket.SerializeBuffer
	opts    gopacket.SerializeOptions
	eth     layers.Ethernet
	ip4     layers.IPv4
	ip6     layers.IPv6
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	echo6   layers.ICMPv6Echo
	tcp     layers.TCP
	mss     [2]byte
	payload [2 + len(probeText)]byte
	src     [16]byte
	dst     [16]byte
	ipid    uint16
}

func newFrameBuilder() *frameBuilder {
	fb := &frameBuilder{
		buf:  gopacket.NewSerializeBuffer(),
		opts: gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
	}
	binary.BigEndian.PutUint16(fb.mss[:], probeMSS)
	copy(fb.payload[2:], probeText)
	return fb
}

// ether fills the Ethernet header and the IP header for src → dst and
// returns the IP layer (for checksums over the pseudo-header).
func (fb *frameBuilder) ether(path Path, src, dst netip.Addr, proto layers.IPProtocol) (gopacket.SerializableLayer, gopacket.NetworkLayer) {
	fb.eth = layers.Ethernet{SrcMAC: path.SrcMAC, DstMAC: path.DstMAC}
	if src.Is4() {
		fb.eth.EthernetType = layers.EthernetTypeIPv4
		s, d := src.As4(), dst.As4()
		copy(fb.src[:4], s[:])
		copy(fb.dst[:4], d[:])
		fb.ipid++
		fb.ip4 = layers.IPv4{
			Version: 4, IHL: 5, TTL: probeTTL, Id: fb.ipid, Flags: layers.IPv4DontFragment,
			Protocol: proto, SrcIP: fb.src[:4], DstIP: fb.dst[:4],
		}
		return &fb.ip4, &fb.ip4
	}
	fb.eth.EthernetType = layers.EthernetTypeIPv6
	fb.src, fb.dst = src.As16(), dst.As16()
	fb.ip6 = layers.IPv6{
		Version: 6, HopLimit: probeTTL, NextHeader: proto,
		SrcIP: fb.src[:], DstIP: fb.dst[:],
	}
	return &fb.ip6, &fb.ip6
}

// echo builds an ICMP or ICMPv6 echo request. The payload starts with a
// word that makes the one's-complement sum of seq and itself constant, so
// the ICMP checksum is the same for every probe of a flow: some load
// balancers hash it (Paris traceroute does the same).
func (fb *frameBuilder) echo(path Path, src, dst netip.Addr, id, seq uint16) ([]byte, error) {
	binary.BigEndian.PutUint16(fb.payload[:2], 0xffff-seq)
	var err error
	if src.Is4() {
		ip, _ := fb.ether(path, src, dst, layers.IPProtocolICMPv4)
		fb.icmp4 = layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: id, Seq: seq}
		err = gopacket.SerializeLayers(fb.buf, fb.opts, &fb.eth, ip, &fb.icmp4, gopacket.Payload(fb.payload[:]))
	} else {
		ip, nl := fb.ether(path, src, dst, layers.IPProtocolICMPv6)
		fb.icmp6 = layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		if err := fb.icmp6.SetNetworkLayerForChecksum(nl); err != nil {
			return nil, err
		}
		fb.echo6 = layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}
		err = gopacket.SerializeLayers(fb.buf, fb.opts, &fb.eth, ip, &fb.icmp6, &fb.echo6, gopacket.Payload(fb.payload[:]))
	}
	return fb.buf.Bytes(), err
}

// syn builds a TCP SYN.
func (fb *frameBuilder) syn(path Path, src, dst netip.Addr, sport, dport uint16, seq uint32) ([]byte, error) {
	proto := layers.IPProtocolTCP
	ip, nl := fb.ether(path, src, dst, proto)
	fb.tcp = layers.TCP{
		SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq,
		SYN: true, Window: 64240,
		Options: fb.tcp.Options[:0],
	}
	fb.tcp.Options = append(fb.tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: fb.mss[:]})
	if err := fb.tcp.SetNetworkLayerForChecksum(nl); err != nil {
		return nil, err
	}
	err := gopacket.SerializeLayers(fb.buf, fb.opts, &fb.eth, ip, &fb.tcp)
	return fb.buf.Bytes(), err
}

// replyKind says what answered a probe.
type replyKind uint8

const (
	replyEcho  replyKind = iota + 1 // echo reply
	replyTCP                        // SYN-ACK or RST
	replyError                      // ICMP destination unreachable or time exceeded quoting a probe
)

// reply is what a frame tells about the probe it answers.
type reply struct {
	kind replyKind
	key  probeKey
	from netip.Addr // the answering host (the router, for an error)
	to   netip.Addr // the reply's destination: the probe source
	port uint16     // TCP: the answering port
	// quoted is the destination of the probe an ICMP error quotes.
	quoted netip.Addr
}

// replyParser decodes replies with gopacket's allocation-free
// DecodingLayerParser; the packet an ICMP error quotes is read by hand,
// since only its first 8 bytes past the IP header are there, too few for
// gopacket's TCP layer.
type replyParser struct {
	parser  *gopacket.DecodingLayerParser
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	ip4     layers.IPv4
	ip6     layers.IPv6
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	tcp     layers.TCP
	decoded []gopacket.LayerType
}

func newReplyParser() *replyParser {
	rp := &replyParser{decoded: make([]gopacket.LayerType, 0, 8)}
	rp.parser = gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet,
		&rp.eth, &rp.dot1q, &rp.ip4, &rp.ip6, &rp.icmp4, &rp.icmp6, &rp.tcp)
	// Stop quietly at layers we do not decode (payloads, ICMPv6 echo).
	rp.parser.IgnoreUnsupported = true
	return rp
}

// parse reports the probe a frame answers, if it looks like an answer to
// one at all.
func (rp *replyParser) parse(frame []byte) (reply, bool) {
	var r reply
	if err := rp.parser.DecodeLayers(frame, &rp.decoded); err != nil {
		return r, false
	}
	var l3, l4 gopacket.LayerType
	for _, t := range rp.decoded {
		switch t {
		case layers.LayerTypeIPv4, layers.LayerTypeIPv6:
			l3 = t
		case layers.LayerTypeICMPv4, layers.LayerTypeICMPv6, layers.LayerTypeTCP:
			l4 = t
		}
	}
	switch l3 {
	case layers.LayerTypeIPv4:
		if rp.ip4.FragOffset != 0 || rp.ip4.Flags&layers.IPv4MoreFragments != 0 {
			return r, false
		}
		r.from, _ = netip.AddrFromSlice(rp.ip4.SrcIP)
		r.to, _ = netip.AddrFromSlice(rp.ip4.DstIP)
	case layers.LayerTypeIPv6:
		r.from, _ = netip.AddrFromSlice(rp.ip6.SrcIP)
		r.to, _ = netip.AddrFromSlice(rp.ip6.DstIP)
	default:
		return r, false
	}
	switch l4 {
	case layers.LayerTypeTCP:
		t := &rp.tcp
		// A RST answering a SYN acknowledges it too (RFC 9293 3.10.7.1).
		if !t.ACK || !(t.SYN || t.RST) {
			return r, false
		}
		r.kind, r.port = replyTCP, uint16(t.SrcPort)
		r.key = probeKey{kind: probeSYN, id: uint16(t.DstPort), seq: t.Ack - 1}
		return r, true
	case layers.LayerTypeICMPv4:
		if l3 != layers.LayerTypeIPv4 {
			return r, false
		}
		switch rp.icmp4.TypeCode.Type() {
		case layers.ICMPv4TypeEchoReply:
			r.kind = replyEcho
			r.key = probeKey{kind: probeEcho, id: rp.icmp4.Id, seq: uint32(rp.icmp4.Seq)}
			return r, true
		case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeTimeExceeded:
			return quoted4(r, rp.icmp4.Payload)
		}
	case layers.LayerTypeICMPv6:
		if l3 != layers.LayerTypeIPv6 {
			return r, false
		}
		p := rp.icmp6.Payload // starts after type, code and checksum
		switch rp.icmp6.TypeCode.Type() {
		case layers.ICMPv6TypeEchoReply:
			if len(p) < 4 {
				return r, false
			}
			r.kind = replyEcho
			r.key = probeKey{kind: probeEcho, id: binary.BigEndian.Uint16(p[0:2]), seq: uint32(binary.BigEndian.Uint16(p[2:4]))}
			return r, true
		case layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6TypeTimeExceeded:
			if len(p) < 4 {
				return r, false
			}
			return quoted6(r, p[4:]) // past the unused word
		}
	}
	return r, false
}

// quoted4 reads the IPv4 probe an ICMP error quotes: its header and the
// first 8 bytes beyond, which hold the TCP ports and sequence number or
// the echo's identifier and sequence.
func quoted4(r reply, q []byte) (reply, bool) {
	if len(q) < 20 || q[0]>>4 != 4 {
		return r, false
	}
	ihl := int(q[0]&0x0f) * 4
	if ihl < 20 || len(q) < ihl+8 {
		return r, false
	}
	r.quoted = netip.AddrFrom4([4]byte(q[16:20]))
	return quotedL4(r, q[9], q[ihl:ihl+8])
}

// quoted6 is quoted4 for IPv6. A probe carries no extension headers, so
// the transport header follows the fixed one.
func quoted6(r reply, q []byte) (reply, bool) {
	if len(q) < 48 || q[0]>>4 != 6 {
		return r, false
	}
	r.quoted = netip.AddrFrom16([16]byte(q[24:40]))
	return quotedL4(r, q[6], q[40:48])
}

func quotedL4(r reply, proto byte, l4 []byte) (reply, bool) {
	r.kind = replyError
	switch proto {
	case byte(layers.IPProtocolTCP):
		r.key = probeKey{kind: probeSYN, id: binary.BigEndian.Uint16(l4[0:2]), seq: binary.BigEndian.Uint32(l4[4:8])}
	case byte(layers.IPProtocolICMPv4):
		if l4[0] != byte(layers.ICMPv4TypeEchoRequest) {
			return r, false
		}
		r.key = probeKey{kind: probeEcho, id: binary.BigEndian.Uint16(l4[4:6]), seq: uint32(binary.BigEndian.Uint16(l4[6:8]))}
	case byte(layers.IPProtocolICMPv6):
		if l4[0] != byte(layers.ICMPv6TypeEchoRequest) {
			return r, false
		}
		r.key = probeKey{kind: probeEcho, id: binary.BigEndian.Uint16(l4[4:6]), seq: uint32(binary.BigEndian.Uint16(l4[6:8]))}
	default:
		return r, false
	}
	return r, true
}
