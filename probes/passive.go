package probes

import (
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// The passive matcher follows ePPing (Kathie Nichols' pping, as in
// eBPF-based passive ping): an outbound packet that will provoke an answer
// (a SYN, the first segment with a new TCP timestamp, an echo request) is
// remembered by flow; the inbound packet that answers it (the SYN-ACK
// acknowledging Seq+1, the first segment echoing that TSval, the echo reply
// with that identifier and sequence) gives the RTT between pnap and the
// remote end, which is what the backbone choice changes. The sample is
// charged to the outbound packet's route and backbone.
//
// Passive measurement yields RTTs only, never loss: an unanswered SYN or
// echo tells of a dead server, a firewall or a scanner more often than of
// the backbone. A SYN seen again (same flow, same Seq) is counted as a
// retransmission and, after Karn, makes that handshake's RTT ambiguous:
// the SYN-ACK may answer either copy, so it is not sampled.

// rttSink receives RTT samples: the Store, or a recorder in tests.
type rttSink interface {
	AddRTT(r fib.RouteID, b fib.BackboneID, src Source, rtt time.Duration, at int64)
}

type flowKind uint8

const (
	flowSYN flowKind = iota + 1
	flowTS
	flowEcho
)

// flowKey names an outbound packet awaiting its answer, in the outbound
// orientation: local is the customer's end. val is the TSval (flowTS) or
// the echo sequence (flowEcho); for an echo lport is its identifier.
type flowKey struct {
	local, remote netip.Addr
	lport, rport  uint16
	kind          flowKind
	val           uint32
}

type flowEntry struct {
	t     int64
	route fib.RouteID
	b     fib.BackboneID
	flags uint8
	seq   uint32 // the SYN's
}

const (
	flowMatched = 1 << iota // a TSval already echoed: kept so that later echoes are ignored
	flowRetrans             // a SYN seen more than once
)

// Matcher pairs outbound and inbound samples into passive RTT samples. Its
// table is bounded two ways: at most FlowTable entries (an outbound sample
// that finds it full is dropped and counted), and an entry lives between
// one and two TTLs: entries sit in two generations, the older dropped
// wholesale when the newer is a TTL old, so expiry never scans.
type Matcher struct {
	sink     rttSink
	traffic  *Traffic
	ttl      int64
	cap      int
	gen      [2]map[flowKey]flowEntry
	cur      int
	genStart int64
	open     [2]uint64 // unmatched entries per generation
	c        *counters
	silence  [fib.MaxBackbones]silence
}

// newMatcher makes a matcher that keeps at most capacity flows for ttl.
func newMatcher(sink rttSink, traffic *Traffic, capacity int, ttl time.Duration, c *counters) *Matcher {
	m := &Matcher{sink: sink, traffic: traffic, ttl: int64(ttl), cap: capacity, c: c}
	// Sized up front: the table's steady state, so a busy second does not
	// grow (allocate) maps on the probes goroutine.
	for i := range m.gen {
		m.gen[i] = make(map[flowKey]flowEntry, min(capacity, 1<<16))
	}
	return m
}

// Consume matches a batch of samples drained from the rings at time now.
// Outbound samples go first: a reply drained from one ring in the same batch
// as its request from another must find it.
func (m *Matcher) Consume(batch []forwarder.Sample, now int64) {
	m.advance(now)
	for i := range batch {
		s := &batch[i]
		switch s.Kind {
		case forwarder.SampleTraffic:
			m.c.trafficSamples.Add(1)
			if m.traffic != nil && s.Route != 0 {
				m.traffic.Add(s)
			}
		case forwarder.SampleSYN, forwarder.SampleTSOut, forwarder.SampleEchoRequest:
			m.out(s)
		}
	}
	for i := range batch {
		s := &batch[i]
		switch s.Kind {
		case forwarder.SampleSYNACK, forwarder.SampleTSIn, forwarder.SampleEchoReply:
			m.in(s)
		}
	}
}

// advance drops the older generation once the newer is a TTL old; its
// unmatched entries are counted as expired.
func (m *Matcher) advance(now int64) {
	for n := 0; n < 2 && now-m.genStart >= m.ttl; n++ {
		old := 1 - m.cur
		m.c.expired.Add(m.open[old])
		clear(m.gen[old])
		m.open[old] = 0
		m.cur = old
		m.genStart += m.ttl
		if now-m.genStart >= m.ttl {
			m.genStart = now - m.ttl // idle for long: catch up without looping
		}
	}
}

func outKey(s *forwarder.Sample, kind flowKind, val uint32) flowKey {
	k := flowKey{local: s.Src, remote: s.Dst, lport: s.SrcPort, rport: s.DstPort, kind: kind, val: val}
	if kind == flowEcho {
		k.rport = 0
	}
	return k
}

// inKey is outKey of the outbound packet that s answers.
func inKey(s *forwarder.Sample, kind flowKind, val uint32) flowKey {
	k := flowKey{local: s.Dst, remote: s.Src, lport: s.DstPort, rport: s.SrcPort, kind: kind, val: val}
	if kind == flowEcho {
		// Both directions carry the echo identifier in SrcPort.
		k.lport, k.rport = s.SrcPort, 0
	}
	return k
}

func (m *Matcher) get(k flowKey) (flowEntry, int, bool) {
	if e, ok := m.gen[m.cur][k]; ok {
		return e, m.cur, true
	}
	if e, ok := m.gen[1-m.cur][k]; ok {
		return e, 1 - m.cur, true
	}
	return flowEntry{}, 0, false
}

func (m *Matcher) insert(k flowKey, s *forwarder.Sample) {
	m.noteOut(s)
	if len(m.gen[0])+len(m.gen[1]) >= m.cap {
		m.c.tableFull.Add(1)
		return
	}
	m.gen[m.cur][k] = flowEntry{t: s.Time, route: s.Route, b: s.Backbone, seq: s.Seq}
	m.open[m.cur]++
}

func (m *Matcher) out(s *forwarder.Sample) {
	if s.Route == 0 {
		return // not forwarded by a route: nothing to charge it to
	}
	var k flowKey
	switch s.Kind {
	case forwarder.SampleSYN:
		k = outKey(s, flowSYN, 0)
		if e, g, ok := m.get(k); ok {
			if e.seq == s.Seq {
				m.c.synRetransmits.Add(1)
				e.flags |= flowRetrans
				m.gen[g][k] = e
				return
			}
			// A new connection reusing the ports: the old SYN will not
			// be answered any more.
			delete(m.gen[g], k)
			m.open[g]--
			m.c.expired.Add(1)
		}
	case forwarder.SampleTSOut:
		k = outKey(s, flowTS, s.TSval)
		if _, _, ok := m.get(k); ok {
			m.c.duplicates.Add(1) // only the first packet with a TSval counts
			return
		}
	case forwarder.SampleEchoRequest:
		k = outKey(s, flowEcho, s.Seq)
		if _, _, ok := m.get(k); ok {
			m.c.duplicates.Add(1)
			return
		}
	}
	m.insert(k, s)
}

func (m *Matcher) in(s *forwarder.Sample) {
	var k flowKey
	switch s.Kind {
	case forwarder.SampleSYNACK:
		k = inKey(s, flowSYN, 0)
	case forwarder.SampleTSIn:
		if s.TSecr == 0 {
			return // echoes nothing yet
		}
		k = inKey(s, flowTS, s.TSecr)
	default: // forwarder.SampleEchoReply
		k = inKey(s, flowEcho, s.Seq)
	}
	e, g, ok := m.get(k)
	if !ok || (s.Kind == forwarder.SampleSYNACK && s.Ack != e.seq+1) {
		m.c.unmatched.Add(1)
		return
	}
	if e.flags&flowMatched != 0 {
		m.c.rematched.Add(1)
		return
	}
	m.noteAnswer(e.b)
	m.open[g]--
	if s.Kind == forwarder.SampleTSIn {
		// Kept, matched, until it expires: a later segment echoing the
		// same TSval is ignored, and a later one sending it is not new.
		e.flags |= flowMatched
		m.gen[g][k] = e
	} else {
		delete(m.gen[g], k)
	}
	if e.flags&flowRetrans != 0 {
		m.c.ambiguous.Add(1)
		return
	}
	rtt := s.Time - e.t
	if rtt <= 0 {
		m.c.badRTT.Add(1) // stamped before its request: clocks of two workers disagree
		return
	}
	m.c.matched[k.kind].Add(1)
	m.sink.AddRTT(e.route, e.b, Passive, time.Duration(rtt), s.Time)
}

// Len is the number of flows held.
func (m *Matcher) Len() int { return len(m.gen[0]) + len(m.gen[1]) }
