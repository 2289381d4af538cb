package probes

import (
	"maps"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pnap-project/pnap/fib"
)

// Path is how to reach a backbone's gateway: the backbone port's MAC and
// the gateway's. OK is false while the gateway's MAC is unresolved.
type Path struct {
	SrcMAC, DstMAC net.HardwareAddr
	OK             bool
}

// DataPlane is what the prober needs of the forwarder. cmd/pnapd wires it
// to the backbone ports and the neighbour table.
type DataPlane interface {
	// Path is how to reach backbone b's gateway for family 4 or 6.
	Path(b fib.BackboneID, family int) Path
	// Transmit hands a frame to backbone b's port; false if the TX queue
	// is full. It must not block. The frame may be reused after it
	// returns.
	Transmit(b fib.BackboneID, frame []byte) bool
}

// probeSink receives what the prober measures: the Store.
type probeSink interface {
	rttSink
	AddOutcome(r fib.RouteID, b fib.BackboneID, o Outcome, at int64)
}

type probeKind uint8

const (
	probeEcho probeKind = iota + 1
	probeSYN
)

// probeKey identifies an outstanding probe: the echo identifier and
// sequence number, or the SYN's source port and sequence number.
type probeKey struct {
	kind probeKind
	id   uint16
	seq  uint32
}

type probeReq struct {
	route fib.RouteID
	b     fib.BackboneID
	kind  probeKind
	id    uint16 // echo identifier or TCP source port
	dport uint16
	dst   netip.Addr
}

type outstanding struct {
	route fib.RouteID
	b     fib.BackboneID
	dport uint16
	round uint32
	sent  int64
	dst   netip.Addr
}

// Round is one backbone's tally of a complete round of active probes:
// probes that ended (answered, lost or unreachable) and those lost
// (unreachable included).
type Round struct {
	Sent, Lost uint64
}

// roundTally counts one round's outcomes per backbone, and the probes it
// put on the wire (launched), so that a round whose probes have all ended
// is known complete without waiting out the timeout.
type roundTally struct {
	no                   uint32
	sent, lost, launched [fib.MaxBackbones]uint64
}

type sentProbe struct {
	key  probeKey
	sent int64
}

// probeQueue is one backbone's probes of the current round, sent one per
// period from nextAt on.
type probeQueue struct {
	reqs   []probeReq
	head   int
	nextAt int64
}

// Prober probes the busiest prefixes through every backbone that holds a
// route for them, once per interval: an ICMP echo and a TCP SYN per
// (prefix, backbone). A pair's probes always form the same flow (same
// addresses, ICMP identifier and TCP source port; the echo's checksum kept
// constant), so per-flow load balancing upstream keeps them on one path,
// as Paris traceroute does; the sequence number tells probes apart.
//
// A SYN probe's SYN-ACK would make a kernel that owned the source address
// answer with a RST. Nothing does here: the forwarder consumes every frame
// addressed to the probe source, so the remote end keeps a half-open
// connection until its SYN-ACK retries give up (a SYN cookie, on most
// servers). That is the same footprint as a port scanner's SYN; sending a
// RST ourselves would be politer and is left for later.
//
// Only the probes goroutine calls a Prober's methods, LastRound excepted.
type Prober struct {
	fib      *fib.FIB
	dp       DataPlane
	traffic  *Traffic
	sink     probeSink
	c        *counters
	nb       int
	top      int
	interval int64
	timeout  int64
	period   int64 // ns between two probes on one backbone
	src4     netip.Addr
	src6     netip.Addr
	port     uint16 // the TCP port when the traffic shows none
	turn     int    // rounds a prefix's turn lasts (TurnRounds)

	nextRound int64
	// Rounds are numbered from 1. The tallies of the current and the last
	// round are kept; a round is published (lastRound, the one before it
	// becoming prevRound) once all its probes have ended: when its last
	// is answered or timed out, or at the latest a timeout after the next
	// round started, since the last round's unsent probes are dropped then.
	roundNo    uint32
	roundStart int64
	tallies    [2]roundTally
	published  uint32
	lastMu     sync.Mutex
	lastRound  map[fib.BackboneID]Round
	prevRound  map[fib.BackboneID]Round
	queues     [fib.MaxBackbones]probeQueue
	syns       [fib.MaxBackbones][]probeReq // a round's SYNs, queued after its echoes
	out        map[probeKey]outstanding
	fifo       []sentProbe // ring, in send order: the order probes time out in
	fifoHead   int
	fifoLen    int
	// late are probes charged Lost within the last timeout, in the order
	// they were (lateFIFO, a ring): see keepLate.
	late              map[probeKey]outstanding
	lateFIFO          []lateProbe
	lateHead, lateLen int
	seq               uint32 // counts probes: ICMP sequence and TCP sequence offset
	isn               uint32 // random, so a restart does not reuse sequence numbers
	topBuf            []fib.RouteID
	// rotBuf and cursor share a round's budget out when the top prefixes
	// are more than it holds: see pick.
	rotBuf []fib.RouteID
	cursor int
	build  *frameBuilder
	parse  *replyParser
}

type proberConfig struct {
	top             int
	interval        time.Duration
	timeout         time.Duration
	ratePerBackbone int
	src4, src6      netip.Addr
	port            uint16
	turnRounds      int
	maxOutstanding  int
}

func newProber(cfg proberConfig, f *fib.FIB, dp DataPlane, traffic *Traffic, sink probeSink, c *counters) *Prober {
	p := &Prober{
		fib:      f,
		dp:       dp,
		traffic:  traffic,
		sink:     sink,
		c:        c,
		nb:       len(f.Backbones()),
		top:      cfg.top,
		interval: int64(cfg.interval),
		timeout:  int64(cfg.timeout),
		period:   int64(time.Second) / int64(cfg.ratePerBackbone),
		src4:     cfg.src4,
		src6:     cfg.src6,
		port:     cfg.port,
		turn:     max(cfg.turnRounds, 1),
		out:      make(map[probeKey]outstanding, cfg.maxOutstanding),
		late:     make(map[probeKey]outstanding),
		lateFIFO: make([]lateProbe, cfg.maxOutstanding),
		fifo:     make([]sentProbe, cfg.maxOutstanding),
		isn:      rand.Uint32(),
		build:    newFrameBuilder(),
		parse:    newReplyParser(),
	}
	if p.period <= 0 {
		p.period = 1
	}
	return p
}

// configure applies what SetOptions may change: how many prefixes, how
// often, how fast and to which port. The sources and the timeout stay.
func (p *Prober) configure(cfg proberConfig) {
	p.top = cfg.top
	p.interval = int64(cfg.interval)
	if p.roundNo > 0 && p.nextRound > p.roundStart+p.interval {
		p.nextRound = p.roundStart + p.interval
	}
	p.period = max(int64(time.Second)/int64(cfg.ratePerBackbone), 1)
	p.port = cfg.port
	p.turn = max(cfg.turnRounds, 1)
	if cfg.maxOutstanding > len(p.fifo) {
		// A faster rate keeps more probes out: the same ring, in order, larger.
		fifo := make([]sentProbe, cfg.maxOutstanding)
		for i := range p.fifoLen {
			fifo[i] = p.fifo[(p.fifoHead+i)%len(p.fifo)]
		}
		p.fifo, p.fifoHead = fifo, 0
	}
}

// lateProbe is a probe in Prober.lateFIFO: charged Lost at sent, sent
// itself at sentProbe (which tells it from a later probe with its key).
type lateProbe struct {
	key             probeKey
	sent, sentProbe int64
}

// flowIdentity is the (prefix, backbone) pair's ICMP identifier and TCP
// source port: a hash (FNV-1a), so it is stable across rounds and restarts
// without a table.
func flowIdentity(pfx netip.Prefix, b fib.BackboneID) (id, sport uint16) {
	h := uint32(2166136261)
	mix := func(x byte) { h = (h ^ uint32(x)) * 16777619 }
	a := pfx.Addr().As16()
	for _, x := range a {
		mix(x)
	}
	mix(byte(pfx.Bits()))
	mix(byte(b))
	// Source ports from the IANA dynamic range, 49152-65535.
	return uint16(h), 49152 + uint16((h>>16)%16384)
}

// defaultTarget is the address probed when the traffic shows none: the
// prefix's first address plus one (often a router or a host), or the
// address itself for a host route.
func defaultTarget(pfx netip.Prefix) netip.Addr {
	a := pfx.Masked().Addr()
	if pfx.Bits() < a.BitLen() {
		if n := a.Next(); n.IsValid() {
			return n
		}
	}
	return a
}

// tick does what is due at now: start a round, send the probes the rate
// allows, time out the unanswered.
func (p *Prober) tick(now int64) {
	if p.nextRound == 0 {
		// The first round waits a little for traffic to rank.
		p.nextRound = now + min(p.interval, int64(time.Second))
	}
	if now >= p.nextRound {
		p.round(now)
		p.nextRound += p.interval
		if p.nextRound <= now {
			p.nextRound = now + p.interval
		}
	}
	for b := range p.queues[:p.nb] {
		q := &p.queues[b]
		for q.head < len(q.reqs) && q.nextAt <= now {
			p.send(&q.reqs[q.head], now)
			q.head++
			q.nextAt += p.period
		}
	}
	p.expire(now)
	switch {
	case p.roundNo > p.published && p.roundEnded():
		p.publish(p.roundNo)
	case p.roundNo > p.published+1 && now-p.roundStart >= p.timeout:
		p.publish(p.roundNo - 1)
	}
}

// roundEnded reports whether the current round has sent everything it
// queued and every probe it sent has ended. A clean round is then known a
// timeout sooner, which is most of how soon a backbone that came back is
// seen to have (the optimizer's level shifts of loss).
func (p *Prober) roundEnded() bool {
	t := &p.tallies[p.roundNo%2]
	for b := range p.queues[:p.nb] {
		if p.queues[b].head < len(p.queues[b].reqs) || t.sent[b] != t.launched[b] {
			return false
		}
	}
	return true
}

// tally counts a probe's end in its round's tally, if still kept.
func (p *Prober) tally(o outstanding, lost bool) {
	t := &p.tallies[o.round%2]
	if t.no != o.round {
		return
	}
	t.sent[o.b]++
	if lost {
		t.lost[o.b]++
	}
}

func (p *Prober) publish(no uint32) {
	p.published = no
	t := &p.tallies[no%2]
	m := make(map[fib.BackboneID]Round)
	for b := range p.nb {
		if t.sent[b] > 0 {
			m[fib.BackboneID(b)] = Round{Sent: t.sent[b], Lost: t.lost[b]}
		}
	}
	p.lastMu.Lock()
	p.prevRound, p.lastRound = p.lastRound, m
	p.lastMu.Unlock()
}

// LastRound is each backbone's tally of the last complete round; backbones
// that sent no probe in it are left out. Safe from any goroutine.
func (p *Prober) LastRound() map[fib.BackboneID]Round {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	return maps.Clone(p.lastRound)
}

// PreviousRound is LastRound's for the round published before the last.
// Safe from any goroutine.
func (p *Prober) PreviousRound() map[fib.BackboneID]Round {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	return maps.Clone(p.prevRound)
}

// round queues this interval's probes, busiest prefix first. What the last
// round could not send at the rate limit is dropped (and counted): fresh
// probes of the busiest prefixes matter more than stale ones of the rest.
func (p *Prober) round(now int64) {
	p.c.rounds.Add(1)
	p.roundNo++
	p.roundStart = now
	p.tallies[p.roundNo%2] = roundTally{no: p.roundNo}
	for b := range p.queues[:p.nb] {
		q := &p.queues[b]
		p.c.skipped.Add(uint64(len(q.reqs) - q.head))
		q.reqs, q.head = q.reqs[:0], 0
		// No credit for an idle spell: the round starts spread from now.
		q.nextAt = max(q.nextAt, now)
	}
	p.topBuf = p.traffic.Top(p.top, now, p.topBuf[:0])
	for _, r := range p.pick(p.topBuf) {
		pfx := p.fib.Prefix(r)
		if !pfx.IsValid() {
			continue
		}
		e, ok := p.fib.Route(pfx)
		if !ok || e.Route != r {
			continue // withdrawn, or the ID was reused
		}
		if (pfx.Addr().Is4() && !p.src4.IsValid()) || (pfx.Addr().Is6() && !p.src6.IsValid()) {
			p.c.noSource.Add(1)
			continue
		}
		dst, port, _ := p.traffic.Target(r)
		if !dst.IsValid() || !pfx.Contains(dst) {
			dst = defaultTarget(pfx)
		}
		if port == 0 {
			port = p.port
		}
		for h := uint32(e.Holders); h != 0; h &= h - 1 {
			b := fib.BackboneID(bits.TrailingZeros32(h))
			if int(b) >= p.nb {
				continue
			}
			id, sport := flowIdentity(pfx, b)
			p.queues[b].reqs = append(p.queues[b].reqs, probeReq{route: r, b: b, kind: probeEcho, id: id, dst: dst})
			p.syns[b] = append(p.syns[b], probeReq{route: r, b: b, kind: probeSYN, id: sport, dport: port, dst: dst})
		}
	}
	// A pair's SYN goes half a round after its echo, not right behind it:
	// a stall (of the box, a router, this VM) then takes at most one of
	// its two probes, and one lost probe is not the pair's loss (see the
	// optimizer's pairLossMin), where two back to back lost together
	// moved prefixes off backbones that had lost nothing else.
	for b := range p.queues[:p.nb] {
		p.queues[b].reqs = append(p.queues[b].reqs, p.syns[b]...)
		p.syns[b] = p.syns[b][:0]
	}
	p.repeatUnsettled()
}

// unsettledRepeat is how many times a round probes each pair on an
// unsettled backbone, as far as the rate allows. A loss that ended is
// then told from luck within a round: 160 answers in a row are chance 3
// in 10,000 at 5 % loss, where the 32 of the brownout lab's round were
// chance 1 in 5, and a prefix waited out the window (2 s) to return.
const unsettledRepeat = 5

// repeatUnsettled queues a round's probes again, up to unsettledRepeat
// times in all, on every backbone whose last two rounds both lost and
// answered probes: a partial loss, which may be starting or ending. Only
// slack in the rate is spent (a round holds interval/period probes), so a
// box that probes its whole budget's worth of prefixes gets no repeats.
// A dead backbone gets none either: its first answer is news enough.
func (p *Prober) repeatUnsettled() {
	slots := int(p.interval / p.period)
	for b := range p.queues[:p.nb] {
		q := &p.queues[b]
		n := len(q.reqs)
		if n == 0 || !p.unsettled(fib.BackboneID(b)) {
			continue
		}
		for range min(unsettledRepeat, slots/n) - 1 {
			q.reqs = append(q.reqs, q.reqs[:n]...)
		}
	}
}

// unsettled reports whether b's last two published rounds lost some
// probes and answered some. Only the probes goroutine writes the rounds,
// so it reads them without the lock.
func (p *Prober) unsettled(b fib.BackboneID) bool {
	last, prev := p.lastRound[b], p.prevRound[b]
	lost := last.Lost + prev.Lost
	return lost > 0 && lost < last.Sent+prev.Sent
}

// pick is the prefixes of a round, from top (busiest first): all of them
// if the rate lets every one be probed within the interval (two probes per
// prefix and backbone), else the busiest half of what it allows, which are
// probed every round, and a turn of the rest, taken in route order. A turn
// lasts p.turn rounds at least (each round's turn starts a p.turn-th of
// its length further on), so that a prefix in turn gathers the samples the
// optimizer needs. With only the busiest, a box with more prefixes than
// its probe budget would never learn that an alternative had become
// better for the others.
func (p *Prober) pick(top []fib.RouteID) []fib.RouteID {
	budget := int(p.interval / p.period / 2)
	if len(top) <= budget || budget < 2 {
		return top
	}
	hot := budget / 2
	rest := p.rotBuf[:0]
	rest = append(rest, top[hot:]...)
	slices.Sort(rest)
	p.rotBuf = rest
	n := min(budget-hot, len(rest))
	start := p.cursor % len(rest)
	p.cursor = start + max(1, n/p.turn)
	out := top[:hot]
	for i := range n {
		out = append(out, rest[(start+i)%len(rest)])
	}
	return out
}

func (p *Prober) send(req *probeReq, now int64) {
	src, family := p.src4, 4
	if req.dst.Is6() {
		src, family = p.src6, 6
	}
	path := p.dp.Path(req.b, family)
	if !path.OK {
		p.c.noPath.Add(1)
		return
	}
	if p.fifoLen == len(p.fifo) {
		p.c.outstandingFull.Add(1)
		return
	}
	p.seq++
	var key probeKey
	var frame []byte
	var err error
	switch req.kind {
	case probeEcho:
		key = probeKey{kind: probeEcho, id: req.id, seq: uint32(uint16(p.seq))}
		frame, err = p.build.echo(path, src, req.dst, req.id, uint16(key.seq))
	default:
		key = probeKey{kind: probeSYN, id: req.id, seq: p.isn + p.seq}
		frame, err = p.build.syn(path, src, req.dst, req.id, req.dport, key.seq)
	}
	if err != nil {
		p.c.buildErrors.Add(1) // a MAC of the wrong length, say
		return
	}
	if !p.dp.Transmit(req.b, frame) {
		p.c.txFull.Add(1)
		return
	}
	p.out[key] = outstanding{route: req.route, b: req.b, dport: req.dport, round: p.roundNo, sent: now, dst: req.dst}
	p.tallies[p.roundNo%2].launched[req.b]++
	p.fifo[(p.fifoHead+p.fifoLen)%len(p.fifo)] = sentProbe{key, now}
	p.fifoLen++
	p.c.probesSent.Add(1)
}

// expire charges a loss for every probe unanswered after the timeout.
func (p *Prober) expire(now int64) {
	p.forgetLate(now)
	for p.fifoLen > 0 {
		sp := p.fifo[p.fifoHead]
		if now-sp.sent < p.timeout {
			return
		}
		p.fifoHead = (p.fifoHead + 1) % len(p.fifo)
		p.fifoLen--
		// An answered probe, or one whose key a later probe took over
		// (sequence wrap), is not this one's loss.
		if o, ok := p.out[sp.key]; ok && o.sent == sp.sent {
			delete(p.out, sp.key)
			p.tally(o, true)
			p.c.probesLost.Add(1)
			p.sink.AddOutcome(o.route, o.b, Lost, now)
			p.keepLate(sp.key, o, now)
		}
	}
}

// keepLate remembers a probe charged Lost at now for one more timeout, so
// that an answer arriving meanwhile takes the loss back (LateAnswer): a
// worker or VM stalled for longer than the timeout made answered probes
// read as a lossy backbone and moved every prefix off it.
func (p *Prober) keepLate(key probeKey, o outstanding, now int64) {
	if p.lateLen == len(p.lateFIFO) {
		p.forgetOldestLate()
	}
	p.late[key] = o
	p.lateFIFO[(p.lateHead+p.lateLen)%len(p.lateFIFO)] = lateProbe{key: key, sent: now, sentProbe: o.sent}
	p.lateLen++
}

// forgetLate forgets the probes charged Lost a timeout or more before now.
func (p *Prober) forgetLate(now int64) {
	for p.lateLen > 0 && now-p.lateFIFO[p.lateHead].sent >= p.timeout {
		p.forgetOldestLate()
	}
}

func (p *Prober) forgetOldestLate() {
	old := p.lateFIFO[p.lateHead]
	if lo, ok := p.late[old.key]; ok && lo.sent == old.sentProbe {
		delete(p.late, old.key)
	}
	p.lateHead = (p.lateHead + 1) % len(p.lateFIFO)
	p.lateLen--
}

// HandleReply matches a frame addressed to the probe source, received at
// monotonic time at, to its probe. An echo reply, SYN-ACK or RST from the
// target gives an RTT sample. An ICMP error about a probe gives one too
// when the target itself sent it (the probe got there); from a router on
// the way it counts as Unreachable, a loss: the backbone did not deliver.
// Anything else is counted and ignored.
func (p *Prober) HandleReply(frame []byte, at int64) {
	p.c.replies.Add(1)
	r, ok := p.parse.parse(frame)
	if !ok || (r.to != p.src4 && r.to != p.src6) {
		p.c.repliesIgnored.Add(1)
		return
	}
	o, ok := p.out[r.key]
	if !ok || !answers(r, o) {
		if lo, late := p.late[r.key]; late && r.kind != replyError && answers(r, lo) {
			delete(p.late, r.key)
			p.c.lateAnswers.Add(1)
			p.sink.AddOutcome(lo.route, lo.b, LateAnswer, at)
			return
		}
		p.c.repliesUnmatched.Add(1) // foreign, forged, or later still
		return
	}
	delete(p.out, r.key)
	unreachable := r.kind == replyError && r.from != o.dst
	p.tally(o, unreachable)
	if unreachable {
		p.c.probesUnreachable.Add(1)
		p.sink.AddOutcome(o.route, o.b, Unreachable, at)
		return
	}
	p.c.probesAnswered.Add(1)
	p.sink.AddOutcome(o.route, o.b, Answered, at)
	p.sink.AddRTT(o.route, o.b, Active, time.Duration(at-o.sent), at)
}

// answers reports whether reply r is the target's (or, for an error, a
// router's about the target) to probe o.
func answers(r reply, o outstanding) bool {
	switch r.kind {
	case replyEcho:
		return r.from == o.dst
	case replyTCP:
		return r.from == o.dst && r.port == o.dport
	case replyError:
		return r.quoted == o.dst
	}
	return false
}

// Outstanding is the number of probes awaiting an answer.
func (p *Prober) Outstanding() int { return len(p.out) }
