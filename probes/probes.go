package probes

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// Probes runs measurement: one goroutine (Run) drains the forwarder's sample
// rings, matches passive samples, ranks traffic, sends active probes and
// handles their replies, and keeps the Store. Snapshot, OfferReply and
// Counters may be called from any goroutine.
type Probes struct {
	opt      Options // as last set; only New and SetOptions touch it
	nb       int
	reconfig chan proberConfig // SetOptions to the prober, which Run owns
	clock    clock
	tick     time.Duration
	rings    []sampleSource
	batch    []forwarder.Sample
	store    *Store
	traffic  *Traffic
	matcher  *Matcher
	prober   *Prober // nil without a data plane: passive only

	replies   chan *replySlot
	freeSlots chan *replySlot
	nextSweep int64
	c         counters
}

// sampleSource is a forwarder.SampleRing, or a fake one in tests (the
// ring's producer side is the forwarder's own).
type sampleSource interface {
	Read(dst []forwarder.Sample) int
	Dropped() uint64
}

// replyBytes is how much of a reply frame OfferReply keeps: enough for
// Ethernet with a VLAN tag, IPv6, ICMPv6 and the quoted IPv6 header and 8
// bytes (126), or IPv4 with options on both levels (154).
const replyBytes = 256

type replySlot struct {
	at  int64
	n   int
	buf [replyBytes]byte
}

// clock reads the monotonic clock and turns its readings into wall time
// for Snapshot.
type clock struct {
	now   func() int64
	mono0 int64
	wall0 time.Time
}

func newClock(now func() int64) clock {
	return clock{now: now, mono0: now(), wall0: time.Now()}
}

func (c clock) wall(t int64) time.Time { return c.wall0.Add(time.Duration(t - c.mono0)) }

// New makes Probes. rings are the forwarder workers' sample rings; dp is
// the data plane active probes go out through, nil for passive
// measurement only. It refuses Options that do not Validate.
func New(opt Options, f *fib.FIB, rings []*forwarder.SampleRing, dp DataPlane) (*Probes, error) {
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("probes: %w", err)
	}
	nb := len(f.Backbones())
	p := &Probes{
		opt:       opt,
		nb:        nb,
		reconfig:  make(chan proberConfig, 1),
		clock:     newClock(opt.Now),
		tick:      opt.Tick,
		replies:   make(chan *replySlot, opt.ReplyQueue),
		freeSlots: make(chan *replySlot, opt.ReplyQueue),
	}
	batch := 0 // a ring's worth, so one Read can empty a full ring
	for _, r := range rings {
		p.rings = append(p.rings, r)
		batch = opt.SampleRing
	}
	p.batch = make([]forwarder.Sample, max(batch, 1024))
	for range opt.ReplyQueue {
		p.freeSlots <- new(replySlot)
	}
	p.store = NewStore(StoreOptions{
		Window:   opt.Window,
		MaxPairs: maxPairs(opt, nb),
		// Passive handshakes may take longer than a probe may.
		MaxRTT:       max(defaultMaxRTT, 2*opt.Timeout),
		ProbeTimeout: opt.Timeout,
	}, f.Prefix, p.clock.now)
	p.traffic = NewTraffic(opt.Traffic)
	p.traffic.resolve = f.Prefix
	p.matcher = newMatcher(p.store, p.traffic, opt.FlowTable, opt.Timeout, &p.c)
	if dp != nil {
		p.prober = newProber(proberConfigOf(opt, nb), f, dp, p.traffic, p.store, &p.c)
	}
	return p, nil
}

// maxPairs is how many (prefix, backbone) pairs the store keeps: every
// probed pair plus as many passive-only ones.
func maxPairs(opt Options, nb int) int {
	return min(max(opt.TopPrefixes*(nb+1), 1024), 65536)
}

func proberConfigOf(opt Options, nb int) proberConfig {
	// Room for every probe of a timeout's worth at the full rate.
	out := opt.RatePerBackbone * nb * int(opt.Timeout/time.Second+1)
	return proberConfig{
		top:             opt.TopPrefixes,
		interval:        opt.Interval,
		timeout:         opt.Timeout,
		ratePerBackbone: opt.RatePerBackbone,
		src4:            opt.SourceV4,
		src6:            opt.SourceV6,
		port:            uint16(opt.TCPPorts[0]),
		turnRounds:      opt.TurnRounds,
		maxOutstanding:  min(max(out, 1024), 1<<20),
	}
}

// RestartNeeded names the settings (as [probes] calls them) that differ
// between old and next and that SetOptions cannot change in a running
// Probes: the sources are wired into the data plane's steering, timeout
// bounds the FIB's grace period for reused route IDs, and the rest size
// tables made once.
func RestartNeeded(old, next Options) []string {
	var keys []string
	for _, c := range []struct {
		key     string
		changed bool
	}{
		{"source_v4", old.SourceV4 != next.SourceV4},
		{"source_v6", old.SourceV6 != next.SourceV6},
		{"timeout", old.Timeout != next.Timeout},
		{"sample_ring", old.SampleRing != next.SampleRing},
		{"flow_table", old.FlowTable != next.FlowTable},
		{"window", old.Window != next.Window},
		{"tick", old.Tick != next.Tick},
		{"reply_queue", old.ReplyQueue != next.ReplyQueue},
		{"traffic", old.Traffic != next.Traffic},
	} {
		if c.changed {
			keys = append(keys, c.key)
		}
	}
	return keys
}

// SetOptions applies new settings to running Probes: top_prefixes,
// interval, rate_per_backbone, tcp_ports and TurnRounds, from the next tick on (a
// shorter interval brings the next round forward). It refuses Options that
// do not Validate or that change what RestartNeeded names, and then
// changes nothing. One goroutine at a time may call it.
func (p *Probes) SetOptions(opt Options) error {
	if err := opt.Validate(); err != nil {
		return fmt.Errorf("probes: %w", err)
	}
	if keys := RestartNeeded(p.opt, opt); len(keys) > 0 {
		return fmt.Errorf("probes: %s cannot change while running", strings.Join(keys, ", "))
	}
	p.opt = opt
	p.store.setMaxPairs(maxPairs(opt, p.nb))
	if p.prober != nil {
		// A newer configuration replaces one the loop has not taken yet.
		select {
		case <-p.reconfig:
		default:
		}
		p.reconfig <- proberConfigOf(opt, p.nb)
	}
	return nil
}

// Run measures until ctx is done.
func (p *Probes) Run(ctx context.Context) error {
	t := time.NewTicker(p.tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			p.step(p.clock.now())
		}
	}
}

// step does one tick's work at now.
func (p *Probes) step(now int64) {
	p.drain(now)
	p.takeReplies()
	if p.prober != nil {
		select {
		case cfg := <-p.reconfig:
			p.prober.configure(cfg)
		default:
		}
		p.prober.tick(now)
	}
	if now >= p.nextSweep {
		p.nextSweep = now + int64(time.Second)
		p.sweep(now)
	}
	p.matcher.checkSilence(now)
	p.c.flows.Store(int64(p.matcher.Len()))
}

// drain reads every ring until all are empty, a batch at a time, but at
// most maxBatches batches a tick, so that workers outpacing it cannot starve
// the probes and replies: their rings overflow instead, and count it.
func (p *Probes) drain(now int64) {
	const maxBatches = 8
	for range maxBatches {
		n := 0
		for _, r := range p.rings {
			n += r.Read(p.batch[n:])
		}
		if n == 0 {
			return
		}
		p.c.samples.Add(uint64(n))
		p.matcher.Consume(p.batch[:n], now)
		if n < len(p.batch) {
			return
		}
	}
}

func (p *Probes) takeReplies() {
	for {
		select {
		case s := <-p.replies:
			if p.prober != nil {
				p.prober.HandleReply(s.buf[:s.n], s.at)
			}
			p.freeSlots <- s
		default:
			return
		}
	}
}

// sweep is the once-a-second housekeeping.
func (p *Probes) sweep(now int64) {
	p.traffic.Expire(now)
	p.store.Sweep()
	p.store.setTraffic(func(r fib.RouteID) (float64, float64) {
		return p.traffic.Rate(r, now), 8 * p.traffic.ByteRate(r, now)
	})
	p.c.trafficRoutes.Store(int64(p.traffic.Len()))
	p.c.trafficEvicted.Store(p.traffic.evicted)
	if p.prober != nil {
		p.c.outstanding.Store(int64(p.prober.Outstanding()))
	}
}

// OfferReply hands over a frame addressed to the probe source, received at
// monotonic time at (on Options.Now's clock). It copies the frame's first
// bytes into a bounded queue and returns false, dropping the frame, if
// the queue is full. It never blocks: a forwarder worker calls it.
func (p *Probes) OfferReply(frame []byte, at int64) bool {
	var s *replySlot
	select {
	case s = <-p.freeSlots:
	default:
		p.c.repliesDropped.Add(1)
		return false
	}
	s.at, s.n = at, copy(s.buf[:], frame)
	p.replies <- s // never blocks: it holds as many as there are slots
	return true
}

// LastRound is each backbone's tally of the last complete round of active
// probes (nil before the first, or without a data plane), so that a
// backbone whose whole round went unanswered can be failed at once.
func (p *Probes) LastRound() map[fib.BackboneID]Round {
	if p.prober == nil {
		return nil
	}
	return p.prober.LastRound()
}

// PreviousRound is LastRound's for the round before (nil until two have
// ended), so that a change in a backbone's loss can be told from chance
// over more probes than one round holds.
func (p *Probes) PreviousRound() map[fib.BackboneID]Round {
	if p.prober == nil {
		return nil
	}
	return p.prober.PreviousRound()
}

// Active reports whether p sends probes: false when New had no data
// plane, and every measurement comes from in-band samples.
func (p *Probes) Active() bool { return p.prober != nil }

// Store is the measurement store.
func (p *Probes) Store() *Store { return p.store }

// Snapshot is the store's Snapshot, with the backbones that went silent
// (see silence.go).
func (p *Probes) Snapshot() Snapshot {
	snap := p.store.Snapshot()
	for b := range p.nb {
		id := fib.BackboneID(b)
		if since := p.matcher.SilentSince(id); since != 0 {
			bs := snap.Backbones[id]
			bs.SilentSince = p.clock.wall(since)
			snap.Backbones[id] = bs
		}
	}
	return snap
}

// counters are written by the probes goroutine (repliesDropped by
// OfferReply's callers) and read by Counters from any goroutine.
type counters struct {
	samples, trafficSamples                                                   atomic.Uint64
	matched                                                                   [4]atomic.Uint64 // by flowKind
	expired, tableFull, unmatched, synRetransmits                             atomic.Uint64
	ambiguous, duplicates, rematched, badRTT                                  atomic.Uint64
	rounds, probesSent, probesAnswered, probesLost, probesUnreachable         atomic.Uint64
	noPath, noSource, txFull, skipped, outstandingFull, buildErrors           atomic.Uint64
	replies, repliesDropped, repliesIgnored, repliesUnmatched, trafficEvicted atomic.Uint64
	lateAnswers                                                               atomic.Uint64
	flows, trafficRoutes, outstanding                                         atomic.Int64
}

// Counters are Probes' event counts since New, for metrics.
type Counters struct {
	Samples   uint64 // read from the rings
	RingDrops uint64 // samples that found a ring full (the forwarder's side)

	// Passive matching.
	MatchedSYN, MatchedTS, MatchedEcho uint64 // RTT samples
	Expired                            uint64 // outbound samples never answered
	TableFull                          uint64 // outbound samples dropped: flow table full
	Unmatched                          uint64 // inbound samples answering nothing held
	SYNRetransmits                     uint64 // a SYN seen again, same flow and Seq
	Ambiguous                          uint64 // handshakes not sampled for a retransmitted SYN
	Duplicates                         uint64 // an outbound TSval or echo already held
	Rematched                          uint64 // a TSecr already matched
	BadRTT                             uint64 // an answer stamped before its request
	Flows                              int    // flow table entries now

	// Traffic ranking.
	TrafficSamples uint64
	TrafficRoutes  int    // routes ranked now
	TrafficEvicted uint64 // routes evicted at the cap

	// Active probing.
	Rounds                           uint64
	ProbesSent, ProbesAnswered       uint64
	ProbesLost, ProbesUnreachable    uint64
	NoPath                           uint64 // probes not sent: gateway MAC unknown
	NoSource                         uint64 // prefixes not probed: no source address of the family
	TXFull                           uint64 // probes not sent: TX queue full
	Skipped                          uint64 // probes a round could not send at the rate limit
	OutstandingFull, BuildErrors     uint64
	Outstanding                      int // awaiting an answer now
	Replies, RepliesDropped          uint64
	RepliesIgnored, RepliesUnmatched uint64 // not a probe reply; no such probe outstanding
	LateAnswers                      uint64 // answers after the timeout, whose loss was taken back

	Store StoreCounters
}

// Counters returns the current counts.
func (p *Probes) Counters() Counters {
	c := &p.c
	out := Counters{
		Samples:           c.samples.Load(),
		MatchedSYN:        c.matched[flowSYN].Load(),
		MatchedTS:         c.matched[flowTS].Load(),
		MatchedEcho:       c.matched[flowEcho].Load(),
		Expired:           c.expired.Load(),
		TableFull:         c.tableFull.Load(),
		Unmatched:         c.unmatched.Load(),
		SYNRetransmits:    c.synRetransmits.Load(),
		Ambiguous:         c.ambiguous.Load(),
		Duplicates:        c.duplicates.Load(),
		Rematched:         c.rematched.Load(),
		BadRTT:            c.badRTT.Load(),
		Flows:             int(c.flows.Load()),
		TrafficSamples:    c.trafficSamples.Load(),
		TrafficRoutes:     int(c.trafficRoutes.Load()),
		TrafficEvicted:    c.trafficEvicted.Load(),
		Rounds:            c.rounds.Load(),
		ProbesSent:        c.probesSent.Load(),
		ProbesAnswered:    c.probesAnswered.Load(),
		ProbesLost:        c.probesLost.Load(),
		ProbesUnreachable: c.probesUnreachable.Load(),
		NoPath:            c.noPath.Load(),
		NoSource:          c.noSource.Load(),
		TXFull:            c.txFull.Load(),
		Skipped:           c.skipped.Load(),
		OutstandingFull:   c.outstandingFull.Load(),
		BuildErrors:       c.buildErrors.Load(),
		Outstanding:       int(c.outstanding.Load()),
		Replies:           c.replies.Load(),
		RepliesDropped:    c.repliesDropped.Load(),
		RepliesIgnored:    c.repliesIgnored.Load(),
		RepliesUnmatched:  c.repliesUnmatched.Load(),
		LateAnswers:       c.lateAnswers.Load(),
		Store:             p.store.Counters(),
	}
	for _, r := range p.rings {
		out.RingDrops += r.Dropped()
	}
	return out
}
