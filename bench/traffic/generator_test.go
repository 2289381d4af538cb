//go:build linux

package traffic

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0x5e, 0, 0x10, 0x01}
	macB = net.HardwareAddr{0x02, 0, 0x5e, 0, 0x10, 0x02}
)

func testSpec(family, nDst, size int) Spec {
	s := Spec{SrcMAC: macA, DstMAC: macB, SrcPort: 40000, DstPort: 9, FrameBytes: size}
	for i := range nDst {
		if family == IPv4 {
			s.Src = netip.MustParseAddr("198.18.0.1")
			s.Dsts = append(s.Dsts, netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}))
		} else {
			s.Src = netip.MustParseAddr("2001:2::1")
			s.Dsts = append(s.Dsts, netip.MustParseAddr(fmt.Sprintf("2001:2:0:1::%x", i+1)))
		}
	}
	return s
}

// loadForTest loads the generator's maps and program without a link.
func loadForTest(t *testing.T, s Spec) *Generator {
	t.Helper()
	lab.RequireRoot(t)
	v, err := s.check()
	if err != nil {
		t.Fatal(err)
	}
	g, err := loadGenerator(v)
	if err != nil {
		t.Fatalf("%+v", err)
	}
	t.Cleanup(g.close)
	return g
}

// runOnce runs the generator program once, not live, over the template as
// frame number seq with st as its state (End and Limit 0 mean "no limit"),
// and returns its verdict, output frame and state after.
func runOnce(t *testing.T, g *Generator, seq uint64, st genState) (uint32, []byte, genState) {
	return runOnceOver(t, g, g.frame, seq, st)
}

func runOnceOver(t *testing.T, g *Generator, in []byte, seq uint64, st genState) (uint32, []byte, genState) {
	t.Helper()
	st.Sent = seq
	if st.End == 0 {
		st.End = math.MaxUint64
	}
	if st.Limit == 0 {
		st.Limit = MaxRunPackets
	}
	if err := g.state.Put(uint32(0), &st); err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(in)+256)
	opts := &ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1}
	ret, err := g.prog.Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.state.Lookup(uint32(0), &st); err != nil {
		t.Fatal(err)
	}
	return ret, opts.DataOut, st
}

func TestGeneratorFrames(t *testing.T) {
	for _, tc := range []struct {
		family, nDst, size int
		imix, paths        bool
	}{
		{IPv4, 1, 64, false, false}, {IPv4, 7, 1518, false, false}, {IPv4, 300, 0, true, false},
		{IPv6, 1, 82, false, false}, {IPv6, 5, 1518, false, false}, {IPv6, 3, 0, true, false},
		{IPv4, 7, 64, false, true}, {IPv6, 5, 0, true, true},
	} {
		name := fmt.Sprintf("ipv%d-%ddst-%dB", tc.family, tc.nDst, tc.size)
		if tc.imix {
			name = fmt.Sprintf("ipv%d-%ddst-imix", tc.family, tc.nDst)
		}
		if tc.paths {
			name += "-paths"
		}
		t.Run(name, func(t *testing.T) {
			s := testSpec(tc.family, tc.nDst, tc.size)
			s.IMIX = tc.imix
			s.TTL = 17
			if tc.paths {
				for i := range s.Dsts {
					s.Paths = append(s.Paths, (i*7)%4+MaxPath-3) // high paths: all 16 bits used
				}
			}
			g := loadForTest(t, s)
			hit := map[netip.Addr]int{}
			// Every other run starts from a frame as a forwarder may have
			// left it in a recycled page (here: every header byte garbage):
			// the program must write all of them.
			mangled := append([]byte(nil), g.frame...)
			for i := range g.s.minLen {
				mangled[i] = byte(0xa5 ^ i)
			}
			const runs = 1200
			for seq := uint64(0); seq < runs; seq++ {
				in := g.frame
				if seq%2 == 1 {
					in = mangled
				}
				ret, f, st := runOnceOver(t, g, in, seq, genState{})
				if ret != xdpTX {
					t.Fatalf("frame %d: verdict %d, want XDP_TX", seq, ret)
				}
				if st.Sent != seq+1 {
					t.Fatalf("frame %d: sent counter %d after, want %d", seq, st.Sent, seq+1)
				}
				d := checkFrame(t, g.s, f, uint32(seq))
				hit[d]++
			}
			for i, d := range g.s.Dsts {
				if hit[d] == 0 {
					t.Errorf("destination %d (%s) never used in %d frames", i, d, runs)
				}
			}
			// Evenly: no destination more than twice its share (+1).
			for d, n := range hit {
				if share := runs / len(g.s.Dsts); n > 2*share+1 {
					t.Errorf("destination %s used %d times, share %d", d, n, share)
				}
			}
		})
	}
}

// checkFrame decodes f, the generator's frame number seq, checks it against
// the spec and returns its destination.
func checkFrame(t *testing.T, s spec, f []byte, seq uint32) netip.Addr {
	t.Helper()
	if want := s.frameSize(uint64(seq)) - fcsBytes; len(f) != want {
		t.Fatalf("frame %d: %d bytes, want %d", seq, len(f), want)
	}
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	if e := p.ErrorLayer(); e != nil {
		t.Fatalf("frame %d: decode: %v", seq, e.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.SrcMAC, s.SrcMAC) || !bytes.Equal(eth.DstMAC, s.DstMAC) {
		t.Errorf("frame %d: MACs %s -> %s, want %s -> %s", seq, eth.SrcMAC, eth.DstMAC, s.SrcMAC, s.DstMAC)
	}
	var src, dst netip.Addr
	if s.family == IPv4 {
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if !ok {
			t.Fatalf("frame %d: no IPv4 layer", seq)
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		if ip.TTL != s.TTL || ip.Protocol != layers.IPProtocolUDP || int(ip.Length) != len(f)-ethBytes || ip.IHL != 5 {
			t.Errorf("frame %d: TTL %d proto %d length %d IHL %d", seq, ip.TTL, ip.Protocol, ip.Length, ip.IHL)
		}
		if c := fold(sum16(f[ethBytes : ethBytes+ipv4Bytes])); c != 0xffff {
			t.Errorf("frame %d: IPv4 header checksum %#04x invalid (sum %#04x)", seq, ip.Checksum, c)
		}
	} else {
		ip, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if !ok {
			t.Fatalf("frame %d: no IPv6 layer", seq)
		}
		src, _ = netip.AddrFromSlice(ip.SrcIP)
		dst, _ = netip.AddrFromSlice(ip.DstIP)
		if ip.HopLimit != s.TTL || ip.NextHeader != layers.IPProtocolUDP || int(ip.Length) != len(f)-ethBytes-ipv6Bytes {
			t.Errorf("frame %d: hop limit %d next header %d payload length %d", seq, ip.HopLimit, ip.NextHeader, ip.Length)
		}
	}
	if src != s.Src {
		t.Errorf("frame %d: source %s, want %s", seq, src, s.Src)
	}
	if want := s.Dsts[dstIndex(seq, len(s.Dsts))]; dst != want {
		t.Errorf("frame %d: destination %s, want %s", seq, dst, want)
	}
	udp, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if !ok {
		t.Fatalf("frame %d: no UDP layer", seq)
	}
	if uint16(udp.SrcPort) != s.SrcPort || uint16(udp.DstPort) != s.DstPort || int(udp.Length) != len(f)-s.l4 {
		t.Errorf("frame %d: UDP %d -> %d length %d", seq, udp.SrcPort, udp.DstPort, udp.Length)
	}
	tag := udp.Payload
	if binary.NativeEndian.Uint32(tag) != tagMagic || binary.NativeEndian.Uint32(tag[tagSeq:]) != seq {
		t.Errorf("frame %d: tag % x", seq, tag[:tagBytes])
	}
	word := binary.NativeEndian.Uint64(tag[tagTime:])
	ts, path := word&(1<<timeBits-1), uint16(word>>timeBits)
	if age := (monotonic() - ts) & (1<<timeBits - 1); ts == 0 || age >= 1<<(timeBits-1) {
		t.Errorf("frame %d: send time %d, %d ns ago", seq, ts, age)
	}
	if want := s.pathTag(dstIndex(seq, len(s.Dsts))); path != want {
		t.Errorf("frame %d to %s: path tag %d, want %d", seq, dst, path, want)
	}
	// Byte for byte what the Go reference writes.
	want := append([]byte(nil), f...)
	s.writeHeaders(want, dst, seq, ts, path)
	if !bytes.Equal(f[:s.minLen], want[:s.minLen]) {
		t.Errorf("frame %d:\n got % x\nwant % x", seq, f[:s.minLen], want[:s.minLen])
	}
	return dst
}

// TestGeneratorPacing runs the program's pacing by hand: early runs drop,
// a late run keeps the schedule, a very late one restarts it, and nothing
// goes out after End or beyond Limit.
func TestGeneratorPacing(t *testing.T) {
	g := loadForTest(t, testSpec(IPv4, 1, 64))
	now := monotonic()
	const iv = 1_000_000 // 1 ms, far above the time a run takes
	ret, _, st := runOnce(t, g, 5, genState{Interval: iv, Slack: slack(iv), Next: now + 10*iv})
	if ret != xdpDrop || st.Sent != 5 || st.Next != now+10*iv {
		t.Errorf("early: verdict %d, sent %d, next %d; want drop, 5, unchanged", ret, st.Sent, st.Next)
	}
	ret, _, st = runOnce(t, g, 5, genState{Interval: iv, Slack: slack(iv), Next: now - iv})
	if ret != xdpTX || st.Sent != 6 || st.Next != now {
		t.Errorf("late within slack: verdict %d, sent %d, next %d; want tx, 6, %d (schedule kept)", ret, st.Sent, st.Next, now)
	}
	ret, _, st = runOnce(t, g, 5, genState{Interval: iv, Slack: slack(iv), Next: now - 5*iv})
	if ret != xdpTX || st.Next < now+iv || st.Next > monotonic()+iv || st.Stalled < 5*iv || st.Stalled > 6*iv {
		t.Errorf("very late: verdict %d, next %d, stalled %d; want tx, about now+interval (%d), 5 intervals", ret, st.Next, st.Stalled, now+iv)
	}
	ret, _, st = runOnce(t, g, 0, genState{Interval: iv, Slack: slack(iv)})
	if ret != xdpTX || st.Next < now+iv || st.Next > monotonic()+iv || st.Stalled != 0 {
		t.Errorf("first frame: verdict %d, next %d, stalled %d; want tx, about now+interval (%d), 0", ret, st.Next, st.Stalled, now+iv)
	}
	if ret, _, st = runOnce(t, g, 0, genState{End: now}); ret != xdpDrop || st.Sent != 0 {
		t.Errorf("after End: verdict %d, sent %d; want drop, 0", ret, st.Sent)
	}
	if ret, _, st = runOnce(t, g, 3, genState{Limit: 3}); ret != xdpDrop || st.Sent != 3 {
		t.Errorf("at Limit: verdict %d, sent %d; want drop, 3", ret, st.Sent)
	}
	if ret, _, st = runOnce(t, g, 0, genState{}); ret != xdpTX || st.First == 0 || st.First != st.Last {
		t.Errorf("first frame unpaced: verdict %d, first %d last %d", ret, st.First, st.Last)
	}
	if slack(10_000) != 640_000 || slack(100) != 6400 || slack(100_000) != uint64(maxSlack) || slack(1e6) != 2e6 {
		t.Errorf("slack(10 µs, 100 ns, 100 µs, 1 ms) = %v %v %v %v", slack(10_000), slack(100), slack(100_000), slack(1e6))
	}
}

func TestSpecCheck(t *testing.T) {
	good := testSpec(IPv4, 2, 64)
	if _, err := good.check(); err != nil {
		t.Fatalf("good spec: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		want string
	}{
		{"no MAC", func(s *Spec) { s.SrcMAC = nil }, "MAC"},
		{"no source", func(s *Spec) { s.Src = netip.Addr{} }, "Src"},
		{"no destinations", func(s *Spec) { s.Dsts = nil }, "destinations"},
		{"too many destinations", func(s *Spec) { s.Dsts = make([]netip.Addr, maxDsts+1) }, "destinations"},
		{"mixed families", func(s *Spec) { s.Dsts[1] = netip.MustParseAddr("2001:2::9") }, "Dsts[1]"},
		{"short", func(s *Spec) { s.FrameBytes = 63 }, "FrameBytes"},
		{"long", func(s *Spec) { s.FrameBytes = MaxFrameBytes + 1 }, "FrameBytes"},
		{"size and IMIX", func(s *Spec) { s.IMIX = true }, "IMIX"},
		{"short IPv6", func(s *Spec) { *s = testSpec(IPv6, 1, 80) }, "FrameBytes"},
		{"paths for some destinations", func(s *Spec) { s.Paths = []int{1} }, "Paths"},
		{"negative path", func(s *Spec) { s.Paths = []int{0, -1} }, "Paths[1]"},
		{"path beyond the tag", func(s *Spec) { s.Paths = []int{MaxPath + 1, 0} }, "Paths[0]"},
	} {
		s := testSpec(IPv4, 2, 64)
		tc.mod(&s)
		if _, err := s.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one about %s", tc.name, err, tc.want)
		}
	}
	if got := MinFrameBytes(IPv6); got != 82 {
		t.Errorf("MinFrameBytes(IPv6) = %d, want 82", got)
	}
	if got := MinFrameBytes(IPv4); got != 64 {
		t.Errorf("MinFrameBytes(IPv4) = %d, want 64", got)
	}
	v, _ := Spec{SrcMAC: macA, DstMAC: macB, Src: good.Src, Dsts: good.Dsts, IMIX: true}.check()
	var n [3]int
	for seq := range uint64(1200) {
		for i, sz := range v.sizes {
			if v.frameSize(seq) == sz {
				n[i]++
			}
		}
	}
	if n != [3]int{700, 400, 100} {
		t.Errorf("IMIX mix over 1200 frames %v, want 700/400/100", n)
	}
	if got, want := v.bytesFor(1201), uint64(100*(7*64+4*594+1518)+64); got != want {
		t.Errorf("IMIX bytes for 1201 frames %d, want %d", got, want)
	}
}

// onCPU runs fn on a thread pinned to cpu that is discarded afterwards, so
// per-CPU state seen by consecutive BPF_PROG_RUNs is one CPU's.
func onCPU(cpu int, fn func()) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			done <- err
			return
		}
		defer func() { done <- nil }()
		fn()
	}()
	return <-done
}
