package forwarder

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tcpFrame builds a TCP segment from src to dst with the given flags and,
// when tsval != 0, a timestamp option.
func tcpFrame(t testing.TB, src, dst string, sport, dport uint16, syn, ack bool, seq, ackn, tsval, tsecr uint32) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macCust[:]), DstMAC: net.HardwareAddr(macPort[0][:]), EthernetType: layers.EthernetTypeIPv4}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: syn, ACK: ack, Seq: seq, Ack: ackn, Window: 1000}
	if tsval != 0 {
		ts := make([]byte, 8)
		binary.BigEndian.PutUint32(ts[0:], tsval)
		binary.BigEndian.PutUint32(ts[4:], tsecr)
		tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindNop}, {OptionType: layers.TCPOptionKindNop},
			{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: ts}}
	}
	var ip gopacket.SerializableLayer
	if s.Is4() {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip4)
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		tcp.SetNetworkLayerForChecksum(ip6)
		ip = ip6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func icmpEcho(t testing.TB, src, dst string, request bool, id, seq uint16) []byte {
	t.Helper()
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macCust[:]), DstMAC: net.HardwareAddr(macPort[0][:]), EthernetType: layers.EthernetTypeIPv4}
	typ := uint8(layers.ICMPv4TypeEchoReply)
	if request {
		typ = layers.ICMPv4TypeEchoRequest
	}
	ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip4, icmp, gopacket.Payload(make([]byte, 16))); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func readAll(r *SampleRing) []Sample {
	buf := make([]Sample, 1024)
	return buf[:r.Read(buf)]
}

// Outbound handshakes, timestamps and echoes are handed over with how they
// were routed; inbound ones only when they answer something handed over.
func TestSamplingHandsOverHandshakesAndTimestamps(t *testing.T) {
	pl := testPlane(t)
	w := NewWorker(pl)
	ring := NewSampleRing(256)
	w.EnableSampling(SamplerOptions{Ring: ring, TrafficEvery: 1000})
	cust, remote := "198.18.0.7", "203.0.113.9"

	if d := process(t, w, 0, tcpFrame(t, cust, remote, 40000, 443, true, false, 1000, 0, 0, 0)); d.Action != ActForward {
		t.Fatalf("SYN not forwarded: %+v", d)
	}
	process(t, w, 1, tcpFrame(t, remote, cust, 443, 40000, true, true, 5000, 1001, 0, 0))
	// Two segments with the same TSval: only the first is handed over.
	process(t, w, 0, tcpFrame(t, cust, remote, 40000, 443, false, true, 1001, 5001, 77, 0))
	process(t, w, 0, tcpFrame(t, cust, remote, 40000, 443, false, true, 1101, 5001, 77, 0))
	// A reply echoing another TSval is not; the one echoing 77 is, once.
	process(t, w, 1, tcpFrame(t, remote, cust, 443, 40000, false, true, 5001, 1201, 900, 76))
	process(t, w, 1, tcpFrame(t, remote, cust, 443, 40000, false, true, 5001, 1201, 901, 77))
	process(t, w, 1, tcpFrame(t, remote, cust, 443, 40000, false, true, 5001, 1201, 902, 77))
	// A new TSval within the rate limit is not handed over.
	process(t, w, 0, tcpFrame(t, cust, remote, 40000, 443, false, true, 1201, 5001, 78, 901))
	process(t, w, 0, icmpEcho(t, cust, remote, true, 7, 1))
	process(t, w, 1, icmpEcho(t, remote, cust, false, 7, 1))

	got := readAll(ring)
	want := []SampleKind{SampleSYN, SampleSYNACK, SampleTSOut, SampleTSIn, SampleEchoRequest, SampleEchoReply}
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d: %+v", len(got), len(want), got)
	}
	for i, k := range want {
		if got[i].Kind != k {
			t.Fatalf("sample %d is kind %d, want %d", i, got[i].Kind, k)
		}
	}
	syn, synack, out, in := got[0], got[1], got[2], got[3]
	if syn.Route == 0 || syn.Backbone != 0 || syn.Seq != 1000 || syn.Src != netip.MustParseAddr(cust) || syn.DstPort != 443 {
		t.Errorf("SYN sample %+v", syn)
	}
	if synack.Ack != 1001 || synack.Src != netip.MustParseAddr(remote) || synack.Port != 1 {
		t.Errorf("SYN-ACK sample %+v", synack)
	}
	if out.TSval != 77 || in.TSecr != 77 || in.TSval != 901 {
		t.Errorf("timestamp samples %+v / %+v", out, in)
	}
	if got[4].SrcPort != 7 || got[4].Seq != 1 || got[5].SrcPort != 7 || got[4].Route == 0 {
		t.Errorf("echo samples %+v / %+v", got[4], got[5])
	}
	if in.Time < out.Time {
		t.Errorf("reply sampled before its segment: %d < %d", in.Time, out.Time)
	}
}

// One traffic sample per TrafficEvery forwarded outbound packets, with the
// route, the ports and the length; a full ring drops and counts.
func TestSamplingTrafficAndFullRing(t *testing.T) {
	w := NewWorker(testPlane(t))
	ring := NewSampleRing(4)
	w.EnableSampling(SamplerOptions{Ring: ring, TrafficEvery: 3})
	for range 9 {
		process(t, w, 0, udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{payload: 10}))
	}
	got := readAll(ring)
	if len(got) != 3 {
		t.Fatalf("%d traffic samples from 9 packets, want 3", len(got))
	}
	if s := got[0]; s.Kind != SampleTraffic || s.Route == 0 || s.Proto != 17 || s.DstPort != 53 || s.Len != 20+8+10 {
		t.Fatalf("traffic sample %+v", s)
	}
	for range 30 {
		// A full ring costs the sample, never the packet.
		if d := process(t, w, 0, udpFrame(t, "198.18.0.7", "203.0.113.9", frameOpts{})); d.Action != ActForward {
			t.Fatalf("with the sample ring full a packet was not forwarded: %+v", d)
		}
	}
	if n := len(readAll(ring)); n != 4 || ring.Dropped() != 6 {
		t.Fatalf("full ring: read %d, dropped %d; want 4 and 6", n, ring.Dropped())
	}
}

// Sampling keeps the batch function allocation-free.
func TestSamplingDoesNotAllocate(t *testing.T) {
	w := NewWorker(testPlane(t))
	ring := NewSampleRing(1024)
	w.EnableSampling(SamplerOptions{Ring: ring, TrafficEvery: 1})
	frames := [][]byte{
		tcpFrame(t, "198.18.0.7", "203.0.113.9", 40000, 443, true, false, 1, 0, 0, 0),
		tcpFrame(t, "198.18.0.7", "203.0.113.9", 40000, 443, false, true, 1, 0, 5, 0),
		icmpEcho(t, "198.18.0.7", "203.0.113.9", true, 1, 1),
	}
	pristine := make([][]byte, len(frames))
	for i, f := range frames {
		pristine[i] = append([]byte(nil), f...)
	}
	out := make([]Decision, len(frames))
	buf := make([]Sample, 64)
	allocs := testing.AllocsPerRun(100, func() {
		for i := range frames {
			copy(frames[i], pristine[i])
		}
		w.Process(0, frames, out)
		ring.Read(buf)
	})
	if allocs != 0 {
		t.Fatalf("Process with sampling allocates %.1f times per batch", allocs)
	}
	for i := range frames {
		copy(frames[i], pristine[i])
	}
	w.Process(0, frames, out)
	if n := ring.Read(buf); n < 4 {
		t.Fatalf("%d samples, want traffic ones and SYN, TS, echo", n)
	}
}

// The ring hands samples from a producer goroutine to a consumer intact
// and in order (run with -race).
func TestSampleRingConcurrent(t *testing.T) {
	r := NewSampleRing(64)
	const n = 200_000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= n; {
			for k := 0; k < 8 && i <= n; k++ {
				if s := r.slot(); s != nil {
					*s = Sample{Seq: uint32(i), Ack: ^uint32(i)}
					i++
				}
			}
			r.commit()
		}
	}()
	buf := make([]Sample, 16)
	next := uint32(1)
	for next <= n {
		m := r.Read(buf)
		for _, s := range buf[:m] {
			if s.Seq != next || s.Ack != ^next {
				t.Fatalf("got %d/%x, want %d", s.Seq, s.Ack, next)
			}
			next++
		}
	}
	<-done
}

func FuzzTCPTimestamps(f *testing.F) {
	f.Add([]byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{2, 4, 5, 0xb4, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 0})
	f.Add([]byte{8, 9, 0})
	f.Add([]byte{3})
	f.Fuzz(func(t *testing.T, opts []byte) {
		tsval, tsecr, ok := TCPTimestamps(opts)
		if !ok {
			return
		}
		// Whatever was found is a well-formed option inside opts.
		found := false
		for i := 0; i+10 <= len(opts); i++ {
			if opts[i] == 8 && opts[i+1] == 10 && binary.BigEndian.Uint32(opts[i+2:]) == tsval && binary.BigEndian.Uint32(opts[i+6:]) == tsecr {
				found = true
			}
		}
		if !found {
			t.Fatalf("TCPTimestamps(%x) = %d, %d: no such option in the input", opts, tsval, tsecr)
		}
	})
}
