package probes

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

var (
	probeSrc4 = addr("100.64.0.1")
	probeSrc6 = addr("2001:db8:ffff::1")
)

// lab is a Probes with a fake clock, data plane and network: backbone b
// answers after delay[b] and loses the share loss[b] of probes.
type lab struct {
	t       *testing.T
	clk     *fakeClock
	f       *fib.FIB
	dp      *fakeDP
	ring    *fakeRing
	p       *Probes
	rec     *recorder
	delay   []time.Duration
	loss    []float64
	rng     *rand.Rand
	pending []pendingReply
}

type pendingReply struct {
	at    int64
	frame []byte
}

// newLab makes Probes on a fake clock and data plane, with DefaultOptions
// changed by set.
func newLab(t *testing.T, set func(o *Options), f *fib.FIB) *lab {
	l := &lab{t: t, clk: &fakeClock{}, f: f, ring: &fakeRing{}, rng: rand.New(rand.NewPCG(1, 2))}
	l.clk.set(sec(100))
	l.dp = &fakeDP{clock: l.clk, noPath: map[fib.BackboneID]bool{}}
	l.dp.onTX = l.network
	o := DefaultOptions()
	o.Now, o.Window, o.ReplyQueue = l.clk.now, time.Hour, 4096
	set(&o)
	var err error
	if l.p, err = New(o, f, nil, l.dp); err != nil {
		t.Fatal(err)
	}
	l.p.rings = []sampleSource{l.ring}
	l.rec = &recorder{next: l.p.store}
	l.p.prober.sink = l.rec
	return l
}

// oneSecondV4 has newLab probe once a second from probeSrc4, a probe
// timing out after 500 ms.
func oneSecondV4(o *Options) {
	o.Interval, o.Timeout = time.Second, 500*time.Millisecond
	o.SourceV4 = probeSrc4
}

// network answers a probe after its backbone's delay, unless it is lost.
func (l *lab) network(s sent) {
	if l.delay == nil {
		return
	}
	if l.rng.Float64() < l.loss[s.b] {
		return
	}
	pi := decodeProbe(l.t, s.frame)
	l.pending = append(l.pending, pendingReply{at: s.at + int64(l.delay[s.b]), frame: answer(l.t, pi, false)})
}

// run steps the clock 1 ms at a time for d, delivering due replies.
func (l *lab) run(d time.Duration) {
	end := l.clk.now() + int64(d)
	for t := l.clk.now(); t < end; t += ms(1) {
		l.clk.set(t)
		keep := l.pending[:0]
		for _, r := range l.pending {
			if r.at <= t {
				if !l.p.OfferReply(r.frame, r.at) {
					l.t.Fatal("reply queue full")
				}
			} else {
				keep = append(keep, r)
			}
		}
		l.pending = keep
		l.p.step(t)
	}
	l.clk.set(end)
}

// traffic puts n traffic samples for prefix p towards dst into the ring.
func (l *lab) traffic(p string, dst string, proto uint8, port uint16, n int) {
	r := routeOf(l.t, l.f, p)
	for range n {
		l.ring.put(forwarder.Sample{Time: l.clk.now(), Kind: forwarder.SampleTraffic, Route: r, Proto: proto,
			Src: cust, Dst: addr(dst), SrcPort: 999, DstPort: port, Len: 100})
	}
}

func TestActive(t *testing.T) {
	const nb = 4 // backbone 3's gateway is unresolved
	holders := map[string][]fib.BackboneID{"198.18.0.0/24": {0, 2}}
	var v4, v6 []string
	for i := range 40 {
		p := fmt.Sprintf("203.0.%d.0/24", i)
		v4 = append(v4, p)
		holders[p] = nil
	}
	for i := range 5 {
		p := fmt.Sprintf("2001:db8:%d::/48", i)
		v6 = append(v6, p)
		holders[p] = nil
	}
	f := newFIB(t, nb, holders)
	const rate = 200 // per backbone
	l := newLab(t, func(o *Options) {
		o.TopPrefixes, o.Interval, o.Timeout = 100, time.Second, 300*time.Millisecond
		o.RatePerBackbone, o.SourceV4, o.SourceV6, o.TCPPorts = rate, probeSrc4, probeSrc6, []int{443, 80}
	}, f)
	l.dp.noPath[3] = true
	l.delay = []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond, 0}
	l.loss = []float64{0, 0.02, 0.10, 0}

	// The probe target is the traffic's destination and TCP port; without
	// TCP, the first configured port; outside the prefix, its first
	// address plus one.
	type target struct {
		dst   netip.Addr
		dport uint16
	}
	want := map[netip.Prefix]target{}
	for i, p := range v4 {
		l.traffic(p, fmt.Sprintf("203.0.%d.9", i), 6, 8443, 1+i%7)
		want[pfx(p)] = target{addr(fmt.Sprintf("203.0.%d.9", i)), 8443}
	}
	for i, p := range v6 {
		l.traffic(p, fmt.Sprintf("2001:db8:%d::53", i), 17, 53, 3)
		want[pfx(p)] = target{addr(fmt.Sprintf("2001:db8:%d::53", i)), 443}
	}
	l.traffic("198.18.0.0/24", "198.19.0.5", 6, 22, 2)
	want[pfx("198.18.0.0/24")] = target{addr("198.18.0.1"), 22}
	byDst := map[netip.Addr]netip.Prefix{}
	for p, tg := range want {
		byDst[tg.dst] = p
	}

	l.run(25 * time.Second)

	type pairKind struct {
		p    netip.Prefix
		b    fib.BackboneID
		kind probeKind
	}
	ids := map[pairKind]map[uint16]bool{}
	csums := map[pairKind]map[uint16]bool{}
	seqs := map[pairKind]map[uint32]bool{}
	times := map[fib.BackboneID][]int64{}
	for _, s := range l.dp.frames {
		pi := decodeProbe(t, s.frame)
		if !slices.Equal(pi.srcMAC, mac(byte(s.b), 1)) || !slices.Equal(pi.dstMAC, mac(byte(s.b), 2)) {
			t.Fatalf("backbone %d frame %v -> %v", s.b, pi.srcMAC, pi.dstMAC)
		}
		if pi.ttl != 64 {
			t.Fatalf("TTL %d", pi.ttl)
		}
		p, ok := byDst[pi.dst]
		if !ok {
			t.Fatalf("probe to %v, not a target", pi.dst)
		}
		if (p.Addr().Is4() && pi.src != probeSrc4) || (p.Addr().Is6() && pi.src != probeSrc6) {
			t.Fatalf("probe from %v", pi.src)
		}
		k := pairKind{p, s.b, pi.kind}
		if ids[k] == nil {
			ids[k], csums[k], seqs[k] = map[uint16]bool{}, map[uint16]bool{}, map[uint32]bool{}
		}
		if pi.kind == probeSYN {
			ids[k][pi.sport] = true
			if pi.dport != want[p].dport {
				t.Fatalf("%v: SYN to port %d, want %d", p, pi.dport, want[p].dport)
			}
		} else {
			ids[k][pi.id] = true
			csums[k][pi.icmpCsum] = true
		}
		if seqs[k][pi.seq] {
			t.Fatalf("%v via %d: sequence %d used twice", p, s.b, pi.seq)
		}
		seqs[k][pi.seq] = true
		times[s.b] = append(times[s.b], s.at)
	}

	// Every holder with a gateway probed, with both kinds, every round;
	// the same identity every time.
	rounds := int(l.p.Counters().Rounds)
	if rounds < 24 {
		t.Fatalf("%d rounds in 25 s at a 1 s interval", rounds)
	}
	for p, hs := range holders {
		if hs == nil {
			hs = []fib.BackboneID{0, 1, 2, 3}
		}
		for b := range fib.BackboneID(nb) {
			for _, kind := range []probeKind{probeEcho, probeSYN} {
				k := pairKind{pfx(p), b, kind}
				held := slices.Contains(hs, b) && b != 3
				if !held {
					if len(seqs[k]) != 0 {
						t.Errorf("%s via %d (holds no route or no gateway): %d probes", p, b, len(seqs[k]))
					}
					continue
				}
				// A lossy backbone's unsettled rounds probe each pair
				// twice: the rate's 200 a round holds two of its 92.
				if n := len(seqs[k]); n != rounds && (l.loss[b] == 0 || n < rounds || n > 2*rounds) {
					t.Errorf("%s via %d kind %d: %d probes in %d rounds", p, b, kind, n, rounds)
				}
				if len(ids[k]) != 1 {
					t.Errorf("%s via %d kind %d: identities %v, want one", p, b, kind, ids[k])
				}
				if kind == probeEcho && len(csums[k]) != 1 {
					t.Errorf("%s via %d: ICMP checksums %v, want one", p, b, csums[k])
				}
			}
		}
	}
	c := l.p.Counters()
	if want := uint64(rounds * (len(holders) - 1) * 2); c.NoPath != want {
		t.Errorf("NoPath %d, want %d (every probe for backbone 3)", c.NoPath, want)
	}

	// At most rate+1 probes in any second on one backbone, at least a
	// period (less a tick) apart.
	for b, ts := range times {
		for i := range ts {
			if j := i + rate + 1; j < len(ts) && ts[j]-ts[i] < sec(1) {
				t.Fatalf("backbone %d: %d probes within %v", b, j-i+1, time.Duration(ts[j]-ts[i]))
			}
			if i > 0 && ts[i]-ts[i-1] < ms(5-1) {
				t.Fatalf("backbone %d: probes %v apart", b, time.Duration(ts[i]-ts[i-1]))
			}
		}
	}

	// RTTs exactly the network's delay; loss within 2 points.
	perBB := map[fib.BackboneID]int{}
	for _, r := range l.rec.rtts {
		if r.rtt != l.delay[r.b] || r.src != Active {
			t.Fatalf("sample %+v, want the %v delay of backbone %d", r, l.delay[r.b], r.b)
		}
		perBB[r.b]++
	}
	snap := l.p.Snapshot()
	for b := range fib.BackboneID(3) {
		bs := snap.Backbones[b]
		t.Logf("backbone %d: %d probes, loss %.4f (emulated %.2f), %d RTT samples of %v", b, bs.ProbesSent, bs.Loss, l.loss[b], perBB[b], l.delay[b])
		if bs.ProbesSent < 2000 || math.Abs(bs.Loss-l.loss[b]) > 0.02 {
			t.Errorf("backbone %d: loss %.3f over %d probes, emulated %.2f", b, bs.Loss, bs.ProbesSent, l.loss[b])
		}
		if uint64(perBB[b]) != bs.ProbesSent-bs.ProbesLost {
			t.Errorf("backbone %d: %d RTT samples, %d answered", b, perBB[b], bs.ProbesSent-bs.ProbesLost)
		}
	}
	if _, ok := snap.Backbones[3]; ok {
		t.Error("backbone 3 has figures without a gateway")
	}
	for _, ps := range snap.Prefixes {
		for b, s := range ps.Backbones {
			within(t, fmt.Sprintf("%v via %d p50", ps.Prefix, b), s.P50, l.delay[b])
			if s.Samples[Active] == 0 || s.Samples[Passive] != 0 {
				t.Errorf("%v via %d: samples %v", ps.Prefix, b, s.Samples)
			}
		}
	}
	if len(snap.Prefixes) != len(holders) {
		t.Errorf("%d prefixes in the snapshot, want %d", len(snap.Prefixes), len(holders))
	}
	if c.ProbesSent != uint64(len(l.dp.frames)) || c.ProbesAnswered+c.ProbesLost+uint64(l.p.prober.Outstanding()) != c.ProbesSent {
		t.Errorf("counters %+v, %d frames", c, len(l.dp.frames))
	}
}

// newOneLab is a lab with one prefix held by one backbone, after its
// first round's two probes went out.
func newOneLab(t *testing.T) (*lab, []probeInfo) {
	f := newFIB(t, 1, map[string][]fib.BackboneID{"203.0.113.0/24": nil})
	l := newLab(t, func(o *Options) {
		oneSecondV4(o)
		o.RatePerBackbone = 1000
	}, f)
	l.traffic("203.0.113.0/24", "203.0.113.7", 6, 443, 1)
	l.run(1100 * time.Millisecond)
	if len(l.dp.frames) != 2 {
		t.Fatalf("%d probes sent, want 2", len(l.dp.frames))
	}
	return l, []probeInfo{decodeProbe(t, l.dp.frames[0].frame), decodeProbe(t, l.dp.frames[1].frame)}
}

func TestActiveReplies(t *testing.T) {
	l, probes := newOneLab(t)
	echo, syn := probes[0], probes[1]
	if echo.kind != probeEcho || syn.kind != probeSYN {
		t.Fatalf("probes %v %v", echo.kind, syn.kind)
	}
	echoAt, synAt := l.dp.frames[0].at, l.dp.frames[1].at
	h := l.p.prober.HandleReply

	// Replies that answer no probe: another sequence number, another
	// sender, another port, garbage.
	bad := echo
	bad.seq++
	h(answer(t, bad, false), echoAt+ms(1))
	stranger := syn
	stranger.dst = addr("203.0.113.8")
	h(answer(t, stranger, false), synAt+ms(1))
	port := syn
	port.dport = 444
	h(answer(t, port, false), synAt+ms(1))
	h([]byte{1, 2, 3}, synAt+ms(1))
	c := l.p.Counters()
	if c.RepliesUnmatched != 3 || c.RepliesIgnored != 1 || len(l.rec.rtts) != 0 {
		t.Fatalf("unmatched %d ignored %d samples %d", c.RepliesUnmatched, c.RepliesIgnored, len(l.rec.rtts))
	}

	// A RST answers a SYN, with an RTT; so does the echo reply.
	h(answer(t, syn, true), synAt+ms(7))
	h(answer(t, echo, false), echoAt+ms(8))
	h(answer(t, echo, false), echoAt+ms(9)) // a duplicate: unmatched
	if len(l.rec.rtts) != 2 || l.rec.rtts[0].rtt != durMS(7) || l.rec.rtts[1].rtt != durMS(8) {
		t.Fatalf("samples %+v", l.rec.rtts)
	}
	if c := l.p.Counters(); c.ProbesAnswered != 2 || c.RepliesUnmatched != 4 {
		t.Fatalf("answered %d unmatched %d", c.ProbesAnswered, c.RepliesUnmatched)
	}

	// Next round: an ICMP error from a router is Unreachable; one from the
	// target itself got there, an RTT.
	l.run(time.Second)
	if len(l.dp.frames) != 4 {
		t.Fatalf("%d probes after two rounds", len(l.dp.frames))
	}
	h(icmpError(t, l.dp.frames[2].frame, addr("192.0.2.254")), l.dp.frames[2].at+ms(3))
	h(icmpError(t, l.dp.frames[3].frame, addr("203.0.113.7")), l.dp.frames[3].at+ms(4))
	c = l.p.Counters()
	if c.ProbesUnreachable != 1 || c.ProbesAnswered != 3 || l.rec.rtts[2].rtt != durMS(4) {
		t.Fatalf("unreachable %d answered %d samples %+v", c.ProbesUnreachable, c.ProbesAnswered, l.rec.rtts)
	}
	// Third round, unanswered: lost after the timeout. Round 2 lost one
	// probe and answered one, so round 3 probes unsettledRepeat times.
	l.run(1500 * time.Millisecond)
	snap := l.p.Snapshot()
	s := snap.Prefixes[0].Backbones[0]
	if s.Sent != 4+2*unsettledRepeat || s.Lost != 1+2*unsettledRepeat || s.Unreachable != 1 || s.Samples[Active] != 3 {
		t.Fatalf("stats %+v, counters %+v", s, l.p.Counters())
	}
}

func TestActiveIPv6Replies(t *testing.T) {
	f := newFIB(t, 2, map[string][]fib.BackboneID{"2001:db8:5::/48": nil})
	l := newLab(t, func(o *Options) {
		oneSecondV4(o)
		o.SourceV6, o.RatePerBackbone = probeSrc6, 1000
	}, f)
	l.delay = []time.Duration{3 * time.Millisecond, 4 * time.Millisecond}
	l.loss = []float64{0, 0}
	l.traffic("2001:db8:5::/48", "2001:db8:5::80", 6, 80, 1)
	l.run(1100 * time.Millisecond)
	if len(l.dp.frames) != 4 || len(l.rec.rtts) != 4 {
		t.Fatalf("%d probes, %d samples", len(l.dp.frames), len(l.rec.rtts))
	}
	// An ICMPv6 error from a router about the next round's first probe.
	l.delay = nil
	l.run(time.Second)
	l.p.prober.HandleReply(icmpError(t, l.dp.frames[4].frame, addr("2001:db8:ff::1")), l.clk.now())
	if c := l.p.Counters(); c.ProbesUnreachable != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// newBusyLab is a lab of n prefixes, 203.0.i.0/24, held by one backbone
// and probed at rate a second in rounds of a second, prefix i sending
// 1+i packets a second to 203.0.i.1 (turnRounds 0: the default).
func newBusyLab(t *testing.T, n, rate, turnRounds int) *lab {
	holders := map[string][]fib.BackboneID{}
	for i := range n {
		holders[fmt.Sprintf("203.0.%d.0/24", i)] = nil
	}
	l := newLab(t, func(o *Options) {
		oneSecondV4(o)
		o.RatePerBackbone = rate
		if turnRounds > 0 {
			o.TurnRounds = turnRounds
		}
	}, newFIB(t, 1, holders))
	for i := range n {
		l.traffic(fmt.Sprintf("203.0.%d.0/24", i), fmt.Sprintf("203.0.%d.1", i), 6, 443, 1+i)
	}
	return l
}

// When a round holds more probes than the rate allows in an interval, the
// busiest prefixes are probed every round and the rest take turns, so that
// every one is measured.
func TestActiveRateBudget(t *testing.T) {
	l := newBusyLab(t, 10, 10, 1)  // 5 prefixes a round: the busiest 2, and 3 in turn
	l.run(3990 * time.Millisecond) // rounds at 1, 2 and 3 s, each sent whole
	probed := map[netip.Addr]int{}
	for _, s := range l.dp.frames {
		probed[decodeProbe(t, s.frame).dst]++
	}
	for i := range 10 {
		n, busiest := probed[addr(fmt.Sprintf("203.0.%d.1", i))], i >= 8
		if busiest && n != 6 || !busiest && (n < 2 || n > 4) {
			t.Errorf("prefix %d (among the busiest %v): %d probes, want 6 for the busiest (every round) and 2-4 for the rest (a turn or two in 3 rounds)", i, busiest, n)
		}
	}
	if c := l.p.Counters(); c.Skipped != 0 {
		t.Errorf("skipped %d, want none: a round holds what the rate sends", c.Skipped)
	}
}

// A prefix's turn lasts TurnRounds rounds, so that it is probed often
// enough for the optimizer to score it.
func TestActiveTurnsLast(t *testing.T) {
	l := newBusyLab(t, 20, 16, 2)  // 8 prefixes a round: the busiest 4, and 4 in turn
	l.run(3990 * time.Millisecond) // rounds at 1, 2 and 3 s
	rounds := map[netip.Addr]map[int64]bool{}
	for _, s := range l.dp.frames {
		d := decodeProbe(t, s.frame).dst
		if rounds[d] == nil {
			rounds[d] = map[int64]bool{}
		}
		rounds[d][s.at/sec(1)] = true
	}
	probed, twice := 0, 0
	for i := range 16 { // the 16 least busy take turns
		r := rounds[addr(fmt.Sprintf("203.0.%d.1", i))]
		if len(r) > 0 {
			probed++
		}
		if len(r) == 2 {
			twice++
		}
	}
	// Turns of 4 that move on by 2 a round: 8 prefixes in 3 rounds, the
	// middle 4 in two rounds each (turns of one round: 12, once each).
	if probed != 8 || twice != 4 {
		t.Errorf("%d prefixes took turns, %d of them in two rounds; want 8 and 4", probed, twice)
	}
}

// A pair's echo and SYN go half a round apart, so that one stall cannot
// take both: a round of 10 prefixes at 20 probes a second sends every
// echo in its first half and every SYN half a second after its echo.
func TestActiveSpreadsPairProbes(t *testing.T) {
	l := newBusyLab(t, 10, 20, 0)
	l.run(1990 * time.Millisecond) // one round, at 1 s
	echoAt, synAt := map[netip.Addr]int64{}, map[netip.Addr]int64{}
	for _, s := range l.dp.frames {
		pi := decodeProbe(t, s.frame)
		if pi.kind == probeSYN {
			synAt[pi.dst] = s.at
		} else {
			echoAt[pi.dst] = s.at
		}
	}
	if len(echoAt) != 10 || len(synAt) != 10 {
		t.Fatalf("echoes to %d prefixes and SYNs to %d, want 10 each", len(echoAt), len(synAt))
	}
	for d, e := range echoAt {
		if gap := synAt[d] - e; gap < ms(450) {
			t.Errorf("%v: SYN %v after the echo, want half a round (500 ms)", d, time.Duration(gap))
		}
	}
}

func TestActiveTXFull(t *testing.T) {
	f := newFIB(t, 1, map[string][]fib.BackboneID{"203.0.113.0/24": nil})
	l := newLab(t, oneSecondV4, f)
	l.dp.full = true
	l.traffic("203.0.113.0/24", "203.0.113.7", 6, 443, 1)
	l.run(2 * time.Second)
	c := l.p.Counters()
	if c.TXFull != 2 || c.ProbesSent != 0 || c.ProbesLost != 0 || l.p.prober.Outstanding() != 0 {
		t.Fatalf("counters %+v", c)
	}
}

// Without a source address of the prefix's family nothing is probed.
func TestActiveNoSource(t *testing.T) {
	f := newFIB(t, 1, map[string][]fib.BackboneID{"2001:db8::/32": nil})
	l := newLab(t, oneSecondV4, f)
	l.traffic("2001:db8::/32", "2001:db8::1", 6, 443, 1)
	l.run(1500 * time.Millisecond)
	if c := l.p.Counters(); c.NoSource != 1 || len(l.dp.frames) != 0 {
		t.Fatalf("counters %+v, %d frames", c, len(l.dp.frames))
	}
}

func TestFlowIdentity(t *testing.T) {
	seen := map[[2]uint16]bool{}
	for i := range 256 {
		for b := range fib.BackboneID(4) {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i), 0}), 24)
			id, sport := flowIdentity(p, b)
			if id2, sport2 := flowIdentity(p, b); id2 != id || sport2 != sport {
				t.Fatal("identity not stable")
			}
			if sport < 49152 {
				t.Fatalf("source port %d outside the dynamic range", sport)
			}
			seen[[2]uint16{id, sport}] = true
		}
	}
	if len(seen) < 1020 {
		t.Errorf("%d distinct identities for 1024 pairs", len(seen))
	}
	for in, want := range map[string]string{"203.0.113.0/24": "203.0.113.1", "192.0.2.7/32": "192.0.2.7", "2001:db8::/32": "2001:db8::1"} {
		if got := defaultTarget(pfx(in)); got != addr(want) {
			t.Errorf("default target of %s: %v, want %s", in, got, want)
		}
	}
}

// LastRound tallies the last round once all its probes have ended: as
// soon as the last is answered, or once the lost ones time out.
// PreviousRound is the one before.
func TestLastRound(t *testing.T) {
	f := newFIB(t, 2, map[string][]fib.BackboneID{"203.0.113.0/24": nil, "198.51.100.0/24": nil})
	l := newLab(t, func(o *Options) {
		o.Interval, o.Timeout = time.Second, 300*time.Millisecond
		o.SourceV4, o.RatePerBackbone = probeSrc4, 1000
	}, f)
	l.delay = []time.Duration{5 * time.Millisecond, 5 * time.Millisecond}
	l.loss = []float64{0, 1} // backbone 1 has failed
	l.traffic("203.0.113.0/24", "203.0.113.7", 6, 443, 2)
	l.traffic("198.51.100.0/24", "198.51.100.7", 6, 443, 1)
	l.run(1200 * time.Millisecond) // round 1 at 1 s: backbone 1's probes not yet timed out
	if lr := l.p.LastRound(); lr != nil {
		t.Fatalf("last round %v before round 1's probes ended", lr)
	}
	l.run(200 * time.Millisecond)
	want := map[fib.BackboneID]Round{0: {Sent: 4}, 1: {Sent: 4, Lost: 4}}
	if lr := l.p.LastRound(); fmt.Sprint(lr) != fmt.Sprint(want) {
		t.Fatalf("last round %v, want %v", lr, want)
	}
	if pr := l.p.PreviousRound(); pr != nil {
		t.Fatalf("previous round %v after one round", pr)
	}
	l.loss = []float64{0, 0} // backbone 1 is back
	l.run(700 * time.Millisecond)
	// Round 2, at 2 s, all answered: published within the 20 ms its
	// probes take, not a timeout later.
	l.run(20 * time.Millisecond)
	clean := map[fib.BackboneID]Round{0: {Sent: 4}, 1: {Sent: 4}}
	if lr := l.p.LastRound(); fmt.Sprint(lr) != fmt.Sprint(clean) {
		t.Fatalf("last round %v 20 ms into round 2, want %v", lr, clean)
	}
	if pr := l.p.PreviousRound(); fmt.Sprint(pr) != fmt.Sprint(want) {
		t.Fatalf("previous round %v, want %v", pr, want)
	}
}

// A backbone whose last two rounds both lost and answered probes has each
// pair probed unsettledRepeat times in the next round, within the rate:
// a loss that ended shows in a round. A backbone that settles, or died,
// gets one probe per pair again.
func TestUnsettledBackboneRepeats(t *testing.T) {
	for _, c := range []struct {
		name string
		rate int
		want int // bb-1's probes in round 3
	}{{"room", 1000, 2 * unsettledRepeat}, {"rate-bound", 4, 4}} {
		t.Run(c.name, func(t *testing.T) {
			f := newFIB(t, 2, map[string][]fib.BackboneID{"203.0.113.0/24": nil})
			l := newLab(t, func(o *Options) {
				o.Interval, o.Timeout = time.Second, 300*time.Millisecond
				o.SourceV4, o.RatePerBackbone = probeSrc4, c.rate
			}, f)
			l.delay = []time.Duration{5 * time.Millisecond, 5 * time.Millisecond}
			l.loss = []float64{0, 1}
			l.traffic("203.0.113.0/24", "203.0.113.7", 6, 443, 1)
			perRound := func() [2]int {
				var n [2]int
				for _, s := range l.dp.frames {
					n[s.b]++
				}
				l.dp.frames = nil
				return n
			}
			l.run(1900 * time.Millisecond) // round 1 at 1 s: bb-1 loses all
			if n := perRound(); n != [2]int{2, 2} {
				t.Fatalf("round 1 sent %v, want 2 each", n)
			}
			l.loss = []float64{0, 0}
			l.run(time.Second) // round 2: bb-1 answers all, so it lost and answered
			if n := perRound(); n != [2]int{2, 2} {
				t.Fatalf("round 2 sent %v, want 2 each: a dead backbone is not repeated", n)
			}
			l.run(time.Second)
			if n := perRound(); n != [2]int{2, c.want} {
				t.Fatalf("round 3 sent %v, want [2 %d]", n, c.want)
			}
			l.run(time.Second) // rounds 2 and 3 clean: settled
			if n := perRound(); n != [2]int{2, 2} {
				t.Fatalf("round 4 sent %v, want 2 each once settled", n)
			}
		})
	}
}

// SetOptions changes a running prober's interval, rate, prefix count and
// port from the next tick; a change it cannot make live is refused by name
// and changes nothing.
func TestSetOptionsAppliesLive(t *testing.T) {
	holders := map[string][]fib.BackboneID{}
	var prefixes []string
	for i := range 20 {
		p := fmt.Sprintf("203.0.%d.0/24", i)
		prefixes = append(prefixes, p)
		holders[p] = nil
	}
	f := newFIB(t, 2, holders)
	var opt Options
	l := newLab(t, func(o *Options) {
		oneSecondV4(o)
		o.TopPrefixes, o.RatePerBackbone = 5, 10
		opt = *o
	}, f)
	l.delay, l.loss = []time.Duration{durMS(10), durMS(10)}, []float64{1, 1} // nothing answers: probes stay out
	for i, p := range prefixes {
		l.traffic(p, fmt.Sprintf("203.0.%d.9", i), 17, 53, 20-i)
	}
	sentIn := func(d time.Duration) (rounds, sent uint64) {
		r0, s0 := l.p.c.rounds.Load(), l.p.c.probesSent.Load()
		l.run(d)
		return l.p.c.rounds.Load() - r0, l.p.c.probesSent.Load() - s0
	}
	sentIn(2 * time.Second)
	if r, s := sentIn(4 * time.Second); r != 4 || s != 4*5*2*2 {
		t.Fatalf("before: %d rounds and %d probes in 4 s, want 4 and 80 (5 prefixes × 2 backbones × echo and SYN a round)", r, s)
	}

	refused := opt
	refused.Timeout, refused.TopPrefixes = 400*time.Millisecond, 10
	if err := l.p.SetOptions(refused); err == nil || !strings.Contains(err.Error(), "timeout cannot change") {
		t.Fatalf("a new timeout: %v, want it refused by name", err)
	}
	if r, s := sentIn(2 * time.Second); r != 2 || s != 2*5*2*2 {
		t.Fatalf("after a refused change: %d rounds and %d probes in 2 s, want 2 and 40", r, s)
	}

	for l.p.prober.Outstanding() == 0 { // a round's probes are out
		l.run(10 * time.Millisecond)
	}
	fifo := len(l.p.prober.fifo)
	out := l.p.prober.Outstanding()
	next := opt
	next.Interval, next.TopPrefixes, next.RatePerBackbone, next.TCPPorts = 600*time.Millisecond, 10, 2000, []int{8080}
	if err := l.p.SetOptions(next); err != nil {
		t.Fatal(err)
	}
	l.run(time.Millisecond) // the next tick applies it
	if len(l.p.prober.fifo) <= fifo || l.p.prober.Outstanding() != out {
		t.Fatalf("rate 10 to 2000: fifo %d to %d slots, outstanding %d to %d; want it larger, keeping every probe out",
			fifo, len(l.p.prober.fifo), out, l.p.prober.Outstanding())
	}
	if r, s := sentIn(6 * time.Second); r < 9 || r > 11 || s < 9*10*2*2 {
		t.Fatalf("after: %d rounds and %d probes in 6 s, want 10 rounds of 10 prefixes × 2 backbones × 2", r, s)
	}
	if l.p.prober.port != 8080 {
		t.Fatalf("tcp_ports: probing port %d, want 8080", l.p.prober.port)
	}
}

// An answer after its probe's timeout takes back the loss the probe was
// charged, if it comes within one more timeout: the path delivered, and
// a slow box must not read as a lossy backbone. Later than that, the loss
// stands. Neither gives an RTT.
func TestLateAnswerTakesBackTheLoss(t *testing.T) {
	f := newFIB(t, 3, map[string][]fib.BackboneID{"203.0.113.0/24": nil})
	l := newLab(t, oneSecondV4, f) // timeout 500 ms
	l.delay = []time.Duration{durMS(20), durMS(700), durMS(1200)}
	l.loss = []float64{0, 0, 0}
	l.traffic("203.0.113.0/24", "203.0.113.9", 17, 53, 5)
	l.run(10 * time.Second)
	snap := l.p.store.Snapshot()
	for b, want := range []float64{0, 0, 1} {
		st, ok := statsOf(t, snap, routeOf(t, f, "203.0.113.0/24"), fib.BackboneID(b))
		if !ok {
			t.Fatalf("backbone %d: no stats", b)
		}
		if st.Loss != want || st.Sent == 0 {
			t.Errorf("backbone %d (%v answers): loss %.2f over %d probes, want %.0f", b, l.delay[b], st.Loss, st.Sent, want)
		}
		if b > 0 && st.RTTSamples() != 0 {
			t.Errorf("backbone %d: %d RTT samples from answers after the timeout", b, st.RTTSamples())
		}
	}
	c := l.p.Counters()
	if c.LateAnswers == 0 || c.RepliesUnmatched == 0 {
		t.Fatalf("late answers %d, unmatched %d: want both (700 ms ones taken back, 1.2 s ones not)", c.LateAnswers, c.RepliesUnmatched)
	}
}
