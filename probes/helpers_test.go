package probes

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// fakeClock is a settable monotonic clock.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() int64              { return c.t.Load() }
func (c *fakeClock) set(t int64)             { c.t.Store(t) }
func (c *fakeClock) add(d time.Duration)     { c.t.Add(int64(d)) }
func ms(n float64) int64                     { return int64(n * float64(time.Millisecond)) }
func sec(n float64) int64                    { return int64(n * float64(time.Second)) }
func durMS(n float64) time.Duration          { return time.Duration(ms(n)) }
func addr(s string) netip.Addr               { return netip.MustParseAddr(s) }
func pfx(s string) netip.Prefix              { return netip.MustParsePrefix(s) }
func mac(b byte, role byte) net.HardwareAddr { return net.HardwareAddr{0x02, role, 0, 0, 0, b} }

// rttRecord is one RTT sample as a sink saw it.
type rttRecord struct {
	route fib.RouteID
	b     fib.BackboneID
	src   Source
	rtt   time.Duration
	at    int64
}

// recorder is an rttSink (and probeSink) that keeps what it is given and
// passes it on to next, if set.
type recorder struct {
	mu       sync.Mutex
	rtts     []rttRecord
	outcomes map[Outcome]int
	next     probeSink
}

func (r *recorder) AddRTT(rt fib.RouteID, b fib.BackboneID, src Source, rtt time.Duration, at int64) {
	r.mu.Lock()
	r.rtts = append(r.rtts, rttRecord{rt, b, src, rtt, at})
	r.mu.Unlock()
	if r.next != nil {
		r.next.AddRTT(rt, b, src, rtt, at)
	}
}

func (r *recorder) AddOutcome(rt fib.RouteID, b fib.BackboneID, o Outcome, at int64) {
	r.mu.Lock()
	if r.outcomes == nil {
		r.outcomes = map[Outcome]int{}
	}
	r.outcomes[o]++
	r.mu.Unlock()
	if r.next != nil {
		r.next.AddOutcome(rt, b, o, at)
	}
}

// newFIB makes a FIB of nb backbones; holders maps each prefix to the
// backbones holding it (all when nil).
func newFIB(t testing.TB, nb int, holders map[string][]fib.BackboneID) *fib.FIB {
	t.Helper()
	var bbs []fib.Backbone
	for i := range nb {
		bbs = append(bbs, fib.Backbone{Name: fmt.Sprintf("bb%d", i), Preference: i})
	}
	f, err := fib.New(bbs, fib.Options{MaxRoutes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Update(func(tx *fib.Txn) error {
		for p, hs := range holders {
			if hs == nil {
				for i := range nb {
					hs = append(hs, fib.BackboneID(i))
				}
			}
			for _, b := range hs {
				if err := tx.Add(b, pfx(p), 3); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func routeOf(t testing.TB, f *fib.FIB, p string) fib.RouteID {
	t.Helper()
	e, ok := f.Route(pfx(p))
	if !ok {
		t.Fatalf("no route for %s", p)
	}
	return e.Route
}

// fakeRing is a sampleSource the test fills.
type fakeRing struct {
	mu      sync.Mutex
	buf     []forwarder.Sample
	dropped uint64
}

func (r *fakeRing) put(s ...forwarder.Sample) {
	r.mu.Lock()
	r.buf = append(r.buf, s...)
	r.mu.Unlock()
}

func (r *fakeRing) Read(dst []forwarder.Sample) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := copy(dst, r.buf)
	r.buf = r.buf[n:]
	return n
}

func (r *fakeRing) Dropped() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// sent is one frame the fake data plane transmitted.
type sent struct {
	at    int64
	b     fib.BackboneID
	frame []byte
}

// fakeDP is a DataPlane that records frames. Backbone b's port has MAC
// 02:01:00:00:00:b and its gateway 02:02:00:00:00:b; backbones in noPath
// have no resolved gateway.
type fakeDP struct {
	clock  *fakeClock
	noPath map[fib.BackboneID]bool
	full   bool
	frames []sent
	onTX   func(s sent)
}

func (d *fakeDP) Path(b fib.BackboneID, family int) Path {
	if d.noPath[b] {
		return Path{}
	}
	return Path{SrcMAC: mac(byte(b), 1), DstMAC: mac(byte(b), 2), OK: true}
}

func (d *fakeDP) Transmit(b fib.BackboneID, frame []byte) bool {
	if d.full {
		return false
	}
	s := sent{at: d.clock.now(), b: b, frame: append([]byte(nil), frame...)}
	d.frames = append(d.frames, s)
	if d.onTX != nil {
		d.onTX(s)
	}
	return true
}

// probeInfo is a decoded probe frame.
type probeInfo struct {
	srcMAC, dstMAC   net.HardwareAddr
	src, dst         netip.Addr
	ttl              uint8
	kind             probeKind
	id, sport, dport uint16
	seq              uint32
	icmpCsum         uint16
	eth              *layers.Ethernet
	ip4              *layers.IPv4
	ip6              *layers.IPv6
	tcp              *layers.TCP
	icmp4            *layers.ICMPv4
	echo6            *layers.ICMPv6Echo
	payload          []byte
}

// decodeProbe decodes a probe frame with gopacket and checks its
// checksums.
func decodeProbe(t testing.TB, frame []byte) probeInfo {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		t.Fatalf("probe does not decode: %v", el.Error())
	}
	var pi probeInfo
	pi.eth = pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	pi.srcMAC, pi.dstMAC = pi.eth.SrcMAC, pi.eth.DstMAC
	var pseudo []byte
	var l4 []byte
	if l := pk.Layer(layers.LayerTypeIPv4); l != nil {
		ip := l.(*layers.IPv4)
		pi.ip4 = ip
		pi.src, _ = netip.AddrFromSlice(ip.SrcIP)
		pi.dst, _ = netip.AddrFromSlice(ip.DstIP)
		pi.ttl = ip.TTL
		if s := checksum(ip.Contents, 0); s != 0xffff {
			t.Fatalf("IPv4 header checksum bad (sum %#x)", s)
		}
		if int(ip.Length) != len(ip.Contents)+len(ip.Payload) {
			t.Fatalf("IPv4 length %d, packet %d", ip.Length, len(ip.Contents)+len(ip.Payload))
		}
		l4 = ip.Payload
		pseudo = append(append(append([]byte{}, ip.SrcIP.To4()...), ip.DstIP.To4()...), 0, byte(ip.Protocol), byte(len(l4)>>8), byte(len(l4)))
	} else if l := pk.Layer(layers.LayerTypeIPv6); l != nil {
		ip := l.(*layers.IPv6)
		pi.ip6 = ip
		pi.src, _ = netip.AddrFromSlice(ip.SrcIP)
		pi.dst, _ = netip.AddrFromSlice(ip.DstIP)
		pi.ttl = ip.HopLimit
		l4 = ip.Payload
		if int(ip.Length) != len(l4) {
			t.Fatalf("IPv6 payload length %d, packet %d", ip.Length, len(l4))
		}
		pseudo = append(append(append([]byte{}, ip.SrcIP...), ip.DstIP...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, byte(ip.NextHeader))
	} else {
		t.Fatal("probe has no IP layer")
	}
	switch {
	case pk.Layer(layers.LayerTypeTCP) != nil:
		tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		pi.tcp, pi.kind = tcp, probeSYN
		pi.sport, pi.dport, pi.seq = uint16(tcp.SrcPort), uint16(tcp.DstPort), tcp.Seq
		if !tcp.SYN || tcp.ACK || tcp.RST {
			t.Fatalf("TCP probe is not a bare SYN: %v", tcp)
		}
		if s := checksum(l4, checksumPartial(pseudo)); s != 0xffff {
			t.Fatalf("TCP checksum bad (sum %#x)", s)
		}
	case pk.Layer(layers.LayerTypeICMPv4) != nil:
		ic := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		pi.icmp4, pi.kind = ic, probeEcho
		if ic.TypeCode.Type() != layers.ICMPv4TypeEchoRequest {
			t.Fatalf("ICMP probe is %v", ic.TypeCode)
		}
		pi.id, pi.seq, pi.icmpCsum = ic.Id, uint32(ic.Seq), ic.Checksum
		pi.payload = ic.Payload
		if s := checksum(l4, 0); s != 0xffff {
			t.Fatalf("ICMP checksum bad (sum %#x)", s)
		}
	case pk.Layer(layers.LayerTypeICMPv6Echo) != nil:
		ic := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
		e := pk.Layer(layers.LayerTypeICMPv6Echo).(*layers.ICMPv6Echo)
		if ic.TypeCode.Type() != layers.ICMPv6TypeEchoRequest {
			t.Fatalf("ICMPv6 probe is %v", ic.TypeCode)
		}
		pi.echo6, pi.kind = e, probeEcho
		pi.id, pi.seq, pi.icmpCsum = e.Identifier, uint32(e.SeqNumber), ic.Checksum
		pi.payload = e.Payload
		if s := checksum(l4, checksumPartial(pseudo)); s != 0xffff {
			t.Fatalf("ICMPv6 checksum bad (sum %#x)", s)
		}
	default:
		t.Fatalf("probe is neither TCP nor ICMP echo: %v", pk)
	}
	return pi
}

func checksumPartial(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

// checksum folds the one's-complement sum of b onto init: 0xffff over a
// header including a correct checksum.
func checksum(b []byte, init uint32) uint16 {
	s := init + checksumPartial(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// answer builds the target's reply to a probe: echo reply or, for a SYN,
// a SYN-ACK (rst: a RST-ACK).
func answer(t testing.TB, pi probeInfo, rst bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: pi.dstMAC, DstMAC: pi.srcMAC}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if pi.src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 55, SrcIP: pi.dst.AsSlice(), DstIP: pi.src.AsSlice()}
		if pi.kind == probeSYN {
			ip.Protocol = layers.IPProtocolTCP
		} else {
			ip.Protocol = layers.IPProtocolICMPv4
		}
		nl, ipl = ip, ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 55, SrcIP: pi.dst.AsSlice(), DstIP: pi.src.AsSlice()}
		if pi.kind == probeSYN {
			ip.NextHeader = layers.IPProtocolTCP
		} else {
			ip.NextHeader = layers.IPProtocolICMPv6
		}
		nl, ipl = ip, ip
	}
	ls = append(ls, eth, ipl)
	switch {
	case pi.kind == probeSYN:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(pi.dport), DstPort: layers.TCPPort(pi.sport), Ack: pi.seq + 1, ACK: true, Seq: 777, Window: 1000}
		if rst {
			tcp.RST = true
		} else {
			tcp.SYN = true
		}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case pi.src.Is4():
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: pi.id, Seq: uint16(pi.seq)}, gopacket.Payload(pi.payload))
	default:
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoReply, 0)}
		ic.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ic, &layers.ICMPv6Echo{Identifier: pi.id, SeqNumber: uint16(pi.seq)}, gopacket.Payload(pi.payload))
	}
	return serialize(t, ls...)
}

// icmpError builds an ICMP destination-unreachable (or ICMPv6's) from
// router about probe frame pf.
func icmpError(t testing.TB, pf []byte, router netip.Addr) []byte {
	t.Helper()
	pi := decodeProbe(t, pf)
	quoted := pf[14:]
	eth := &layers.Ethernet{SrcMAC: pi.dstMAC, DstMAC: pi.srcMAC}
	if pi.src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 250, Protocol: layers.IPProtocolICMPv4, SrcIP: router.AsSlice(), DstIP: pi.src.AsSlice()}
		ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet)}
		return serialize(t, eth, ip, ic, gopacket.Payload(quoted))
	}
	eth.EthernetType = layers.EthernetTypeIPv6
	ip := &layers.IPv6{Version: 6, HopLimit: 250, NextHeader: layers.IPProtocolICMPv6, SrcIP: router.AsSlice(), DstIP: pi.src.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodeNoRouteToDst)}
	ic.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth, ip, ic, gopacket.Payload(append([]byte{0, 0, 0, 0}, quoted...)))
}

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
