package probes

import (
	"sync/atomic"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// A backbone that stops delivering while its BGP session stays up (a grey
// failure) shows in the customer's own traffic: packets that provoke an
// answer (a SYN, a new TCP timestamp, an echo request) keep leaving by it
// and none is answered. One unanswered flow says little (a dead server, a
// scanner: see passive.go), but many, to several prefixes, with nothing
// answered for longer than a probe may take, are the backbone. That is how
// passive-only measurement, which has no loss, still sees a blackout
// (the passive blackout scenario broke every TCP connection without it),
// and how active probing sees one before a round is lost.

// silentMinPackets is how many unanswered packets, to at least two
// prefixes, make a backbone silent.
const silentMinPackets = 8

// silentKeepTTLs is how many TTLs a backbone stays silent after the last
// packet sent to it, unless something answers first. Silence must outlast
// the evacuation that stops the traffic showing it: ended by that, a
// blackout read as a first failure over at once and a second a Step later,
// which held the backbone 5 s past its return. Passive measurement has no
// other way to see it back, so it is not kept for ever either.
const silentKeepTTLs = 8

// silence is one backbone's run of answerable packets sent since its last
// answer.
type silence struct {
	first, last int64 // when the run's first and latest left; 0: no run
	n           uint32
	route       fib.RouteID // the run's first prefix's
	routes      bool        // a packet to another prefix joined the run
	since       atomic.Int64
}

// noteOut counts answerable packet s in its backbone's run. After a quiet
// spell (nothing sent for a TTL) the run starts afresh: an old run's
// silence says nothing about a backbone that carries traffic again.
func (m *Matcher) noteOut(s *forwarder.Sample) {
	if int(s.Backbone) >= len(m.silence) {
		return
	}
	r := &m.silence[s.Backbone]
	if r.first == 0 || s.Time-r.last >= m.ttl {
		r.first, r.n, r.route, r.routes = s.Time, 0, s.Route, false
	}
	r.last = s.Time
	r.n++
	r.routes = r.routes || s.Route != r.route
}

// noteAnswer ends backbone b's run: it delivers.
func (m *Matcher) noteAnswer(b fib.BackboneID) {
	if int(b) >= len(m.silence) {
		return
	}
	r := &m.silence[b]
	r.first, r.n, r.routes = 0, 0, false
	r.since.Store(0)
}

// checkSilence marks silent, at now, every backbone whose run holds
// silentMinPackets to two prefixes or more and began a TTL (the probe
// timeout) or more ago, until silentKeepTTLs after its last packet, and
// unmarks the others.
func (m *Matcher) checkSilence(now int64) {
	for i := range m.silence {
		r := &m.silence[i]
		silent := r.n >= silentMinPackets && r.routes && now-r.first >= m.ttl && now-r.last < silentKeepTTLs*m.ttl
		switch {
		case silent && r.since.Load() == 0:
			r.since.Store(r.first)
		case !silent && r.since.Load() != 0:
			r.since.Store(0)
		}
	}
}

// SilentSince is when backbone b went silent (the first unanswered packet
// left), or 0 while it is not. Safe from any goroutine.
func (m *Matcher) SilentSince(b fib.BackboneID) int64 {
	if int(b) >= len(m.silence) {
		return 0
	}
	return m.silence[b].since.Load()
}
