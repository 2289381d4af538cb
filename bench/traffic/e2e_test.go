//go:build linux

package traffic

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// pair is a generator namespace and a receiver namespace joined by one veth
// pair (one queue each), with the Receiver attached on the far end.
type pair struct {
	gen, rcv *lab.NS
	gl, rl   *lab.Link
	r        *Receiver
}

func newPair(tb testing.TB) *pair {
	tb.Helper()
	lab.RequireRoot(tb)
	p := &pair{gen: lab.NewNS(tb, "tgen"), rcv: lab.NewNS(tb, "trcv")}
	p.gl, p.rl = lab.Connect(tb, p.gen, "tg0", p.rcv, "tr0", lab.VethOpts{})
	p.gl.AddAddr(tb, "198.18.0.1/24")
	p.rl.AddAddr(tb, "198.18.0.2/24")
	p.gl.AddAddr(tb, "2001:2::1/64")
	p.rl.AddAddr(tb, "2001:2::2/64")
	p.r = NewReceiver(tb)
	p.r.Attach(tb, p.rcv, p.rl)
	return p
}

func (p *pair) spec(family, size int) Spec {
	s := testSpec(family, 64, size)
	s.SrcMAC, s.DstMAC = p.gl.MAC, p.rl.MAC
	return s
}

// trial resets the receiver, runs g from CPU 0 and returns what was sent
// and received.
func (p *pair) trial(tb testing.TB, g *Generator, rate float64, d time.Duration) (Sent, Stats) {
	tb.Helper()
	if err := p.r.Reset(); err != nil {
		tb.Fatal(err)
	}
	sent, err := g.Run(0, rate, d)
	if err != nil {
		tb.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // frames in flight
	st, err := p.r.Stats()
	if err != nil {
		tb.Fatal(err)
	}
	return sent, st
}

// TestPaced sends 50 kpps for 0.5 s and expects every frame, once and in
// order, at the asked rate, with plausible latencies.
func TestPaced(t *testing.T) {
	p := newPair(t)
	for _, tc := range []struct {
		name   string
		family int
		size   int
	}{{"ipv4-64B", IPv4, 64}, {"ipv6-82B", IPv6, 82}, {"ipv4-imix", IPv4, 0}, {"ipv6-imix", IPv6, 0}, {"ipv4-1518B", IPv4, 1518}} {
		t.Run(tc.name, func(t *testing.T) {
			s := p.spec(tc.family, tc.size)
			s.IMIX = tc.size == 0
			g := NewGenerator(t, p.gen, p.gl, s)
			const rate, d = 50_000, 500 * time.Millisecond
			// This VM loses its vCPU for ms now and then (see slack), more so
			// when other work shares the host: a trial that lost more than 3 %
			// of its time that way cannot show the asked rate. It is repeated
			// up to three times; if all were disturbed, the rate is not judged
			// (the pacing's exactness still is).
			for try := 1; ; try++ {
				start := time.Now()
				sent, st := p.trial(t, g, rate, d)
				wall := time.Since(start)
				t.Logf("sent %d (%.0f pps over %v, stalled %v, wall %v), received %d, latency p50 %v p99 %v max %v",
					sent.Packets, sent.Rate(), sent.Took, sent.Stalled, wall, st.Received(), st.LatencyP50, st.LatencyP99, st.LatencyMax)
				if st.Received() != sent.Packets || st.Duplicates != 0 || st.Reordered != 0 || st.Bytes != sent.Bytes {
					t.Fatalf("sent %d frames (%d bytes), received %+v: want all, no duplicates or reordering", sent.Packets, sent.Bytes, st)
				}
				if st.LatencyP50 <= 0 || st.LatencyP50 > 2*time.Millisecond || st.LatencyMax < st.LatencyP99 || st.LatencyP99 < st.LatencyP50 {
					t.Errorf("latency p50 %v p99 %v max %v: want 0 < p50 < 2 ms", st.LatencyP50, st.LatencyP99, st.LatencyMax)
				}
				if wall < d || wall > d+200*time.Millisecond {
					t.Errorf("Run took %v, asked %v", wall, d)
				}
				// The pacing itself is exact: one frame per interval of the
				// time not lost to stalls.
				if want := rate * (sent.Took - sent.Stalled).Seconds(); float64(sent.Packets) < 0.99*want-2 || float64(sent.Packets) > 1.01*want+2 {
					t.Errorf("sent %d frames in %v (%v stalled), want %.0f", sent.Packets, sent.Took, sent.Stalled, want)
				}
				if sent.Took > d || sent.Took < d*9/10 && sent.Stalled < d*3/100 {
					t.Errorf("sending took %v (%v stalled), asked %v", sent.Took, sent.Stalled, d)
				}
				r := sent.Rate()
				if r > 1.01*rate {
					t.Errorf("rate %.0f pps, asked %d", r, rate)
				}
				if r >= 0.95*rate {
					break
				}
				if sent.Stalled < d*3/100 {
					t.Fatalf("rate %.0f pps, asked %d, and only %v stalled", r, rate, sent.Stalled)
				}
				if try == 3 {
					t.Logf("rate not judged: the CPU stalled more than 3 %% of each of %d trials", try)
					break
				}
			}
		})
	}
}

// TestWrongPath sends to two destinations, one tagged for backbone 0 and
// one for backbone 1, into a receiver attached as backbone 1: the frames
// for backbone 0 are counted as WrongPath and not received, the others
// received, and nothing is lost in between.
func TestWrongPath(t *testing.T) {
	p := newPair(t) // its Receiver, of no path, stays idle on tr0
	rcv := lab.NewNS(t, "trcv")
	gl, rl := lab.Connect(t, p.gen, "tg1", rcv, "tr1", lab.VethOpts{})
	r := NewReceiver(t)
	r.AttachPath(t, rcv, rl, 1)
	s := p.spec(IPv4, 64)
	s.SrcMAC, s.DstMAC = gl.MAC, rl.MAC
	s.Dsts = s.Dsts[:2]
	s.Paths = []int{0, 1}
	g := NewGenerator(t, p.gen, gl, s)
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	sent, err := g.Run(0, 20_000, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	var toBB0 uint64
	for seq := range sent.Packets {
		if dstIndex(uint32(seq), 2) == 0 {
			toBB0++
		}
	}
	t.Logf("sent %d (%d for backbone 0), received %d, wrong path %d", sent.Packets, toBB0, st.Received(), st.WrongPath)
	if toBB0 == 0 || toBB0 == sent.Packets {
		t.Fatalf("%d of %d frames for backbone 0: the test needs both kinds", toBB0, sent.Packets)
	}
	if st.WrongPath != toBB0 || st.Received() != sent.Packets-toBB0 || st.Duplicates != 0 {
		t.Errorf("%d received (%d duplicates), %d on the wrong path; want %d on the wrong path and the other %d received",
			st.Received(), st.Duplicates, st.WrongPath, toBB0, sent.Packets-toBB0)
	}
}

// TestUnpaced sends as fast as it can for 0.2 s. The receiver's work runs on
// the generator's CPU (veth's default), so this is what one CPU does for
// both; it must be far above the forwarders' ~1 Mpps.
func TestUnpaced(t *testing.T) {
	p := newPair(t)
	for _, family := range []int{IPv4, IPv6} {
		t.Run(fmt.Sprintf("ipv%d", family), func(t *testing.T) {
			g := NewGenerator(t, p.gen, p.gl, p.spec(family, MinFrameBytes(family)))
			sent, st := p.trial(t, g, 0, 200*time.Millisecond)
			t.Logf("sent %d (%.2f Mpps over %v), received %d (%.2f Mpps), latency p50 %v p99 %v",
				sent.Packets, sent.Rate()/1e6, sent.Took, st.Received(), float64(st.Received())/sent.Took.Seconds()/1e6, st.LatencyP50, st.LatencyP99)
			if sent.Rate() < 1e6 {
				t.Errorf("unpaced rate %.0f pps, want > 1 Mpps", sent.Rate())
			}
			// The peer's ring (256 frames) overflows when another process
			// takes the CPU from its softirq for a moment: a little loss is
			// the machine's (CI saw 3.3-4.1 % in runs where nothing was
			// wrong: 50 µs of stall at 5 Mpps), more is a bug.
			if lost := sent.Packets - st.Received(); float64(lost) > 0.1*float64(sent.Packets) || st.Received() > sent.Packets || st.Duplicates != 0 || st.Reordered != 0 {
				t.Errorf("sent %d, received %d (duplicates %d, reordered %d)", sent.Packets, st.Received(), st.Duplicates, st.Reordered)
			}
		})
	}
}

// TestPassThrough: with the receiver attached (and a generator sending),
// the kernel of the receiving namespace still gets ARP, neighbour discovery
// and untagged UDP.
func TestPassThrough(t *testing.T) {
	p := newPair(t)
	g := NewGenerator(t, p.gen, p.gl, p.spec(IPv4, 64))
	capture := p.rl.Capture(t)
	done := make(chan error, 1)
	go func() {
		_, err := g.Run(0, 10_000, 300*time.Millisecond)
		done <- err
	}()
	for _, dst := range []netip.AddrPort{
		netip.MustParseAddrPort("198.18.0.2:7001"),  // needs ARP both ways
		netip.MustParseAddrPort("[2001:2::2]:7002"), // needs neighbour discovery
	} {
		payload := []byte("untagged " + dst.String())
		if err := p.gen.SendUDP(netip.AddrPort{}, dst, payload); err != nil {
			t.Fatal(err)
		}
		_, err := capture.NextMatch(3*time.Second, func(f []byte) bool {
			return len(f) > 42 && string(f[len(f)-len(payload):]) == string(payload)
		})
		if err != nil {
			t.Errorf("untagged UDP to %s did not reach the receiving kernel: %v", dst, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if st, err := p.r.Stats(); err != nil || st.Packets == 0 {
		t.Errorf("receiver counted %+v (%v) while passing the rest", st, err)
	}
}

// TestReceiverTwoLinks attaches one Receiver to two links: frames that
// arrive on both are counted once plus duplicates, as for a trial spread
// over two backbones.
func TestReceiverTwoLinks(t *testing.T) {
	p := newPair(t)
	gen2 := lab.NewNS(t, "tgen")
	gl2, rl2 := lab.Connect(t, gen2, "tg1", p.rcv, "tr1", lab.VethOpts{})
	p.r.Attach(t, p.rcv, rl2)
	s2 := p.spec(IPv6, 100)
	s2.SrcMAC, s2.DstMAC = gl2.MAC, rl2.MAC
	g1 := NewGenerator(t, p.gen, p.gl, p.spec(IPv4, 64))
	g2 := NewGenerator(t, gen2, gl2, s2)
	if err := p.r.Reset(); err != nil {
		t.Fatal(err)
	}
	// The same sequence numbers arrive on tr0, then on tr1.
	s1, err := g1.Run(0, 20_000, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	sent2, err := g2.Run(1, 20_000, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	st, err := p.r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != s1.Packets+sent2.Packets || st.Duplicates != min(s1.Packets, sent2.Packets) || st.Bytes != s1.Bytes+sent2.Bytes {
		t.Errorf("sent %d on tr0 and %d on tr1, received %+v: want all, the overlap as duplicates", s1.Packets, sent2.Packets, st)
	}
}
