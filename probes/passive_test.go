package probes

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/internal/monotime"
)

var (
	cust   = addr("10.0.0.1")
	remote = addr("198.51.100.7")
)

// outS and inS build outbound and inbound samples of the flow
// cust:40000 <-> remote:443.
func outS(kind forwarder.SampleKind, t int64, r fib.RouteID, b fib.BackboneID) forwarder.Sample {
	return forwarder.Sample{Time: t, Kind: kind, Route: r, Backbone: b, Proto: 6,
		Src: cust, Dst: remote, SrcPort: 40000, DstPort: 443}
}

func inS(kind forwarder.SampleKind, t int64) forwarder.Sample {
	return forwarder.Sample{Time: t, Kind: kind, Proto: 6, Src: remote, Dst: cust, SrcPort: 443, DstPort: 40000}
}

func newTestMatcher(capacity int) (*Matcher, *recorder, *counters) {
	rec := &recorder{}
	c := &counters{}
	return newMatcher(rec, nil, capacity, 2*time.Second, c), rec, c
}

func wantRTTs(t *testing.T, rec *recorder, want ...rttRecord) {
	t.Helper()
	if len(rec.rtts) != len(want) {
		t.Fatalf("got %d RTT samples %v, want %d %v", len(rec.rtts), rec.rtts, len(want), want)
	}
	for i := range want {
		if rec.rtts[i] != want[i] {
			t.Errorf("sample %d: got %+v, want %+v", i, rec.rtts[i], want[i])
		}
	}
}

func TestPassiveSYN(t *testing.T) {
	m, rec, c := newTestMatcher(100)
	syn := outS(forwarder.SampleSYN, ms(1000), 7, 2)
	syn.Seq = 100
	bad := inS(forwarder.SampleSYNACK, ms(1010))
	bad.Ack = 100 // acknowledges the wrong sequence number
	sa := inS(forwarder.SampleSYNACK, ms(1023))
	sa.Ack = 101
	m.Consume([]forwarder.Sample{syn}, ms(1000))
	m.Consume([]forwarder.Sample{bad, sa}, ms(1030))
	wantRTTs(t, rec, rttRecord{7, 2, Passive, durMS(23), ms(1023)})
	if c.matched[flowSYN].Load() != 1 || c.unmatched.Load() != 1 {
		t.Errorf("matched %d unmatched %d, want 1 and 1", c.matched[flowSYN].Load(), c.unmatched.Load())
	}
	// The entry is gone: a duplicate SYN-ACK matches nothing.
	m.Consume([]forwarder.Sample{sa}, ms(1040))
	if len(rec.rtts) != 1 || c.unmatched.Load() != 2 || m.Len() != 0 {
		t.Errorf("duplicate SYN-ACK: %d samples, %d unmatched, %d flows", len(rec.rtts), c.unmatched.Load(), m.Len())
	}
}

// A reply drained in the same batch as its request, ahead of it (from
// another ring), still matches.
func TestPassiveBatchOrder(t *testing.T) {
	m, rec, _ := newTestMatcher(100)
	syn := outS(forwarder.SampleSYN, ms(5), 1, 0)
	syn.Seq = 9
	sa := inS(forwarder.SampleSYNACK, ms(5.5))
	sa.Ack = 10
	m.Consume([]forwarder.Sample{sa, syn}, ms(6))
	wantRTTs(t, rec, rttRecord{1, 0, Passive, durMS(0.5), ms(5.5)})
}

// A retransmitted SYN makes the handshake ambiguous (Karn): no sample.
func TestPassiveSYNRetransmit(t *testing.T) {
	m, rec, c := newTestMatcher(100)
	syn := outS(forwarder.SampleSYN, ms(0), 1, 0)
	syn.Seq = 50
	again := syn
	again.Time = ms(1000)
	sa := inS(forwarder.SampleSYNACK, ms(1020))
	sa.Ack = 51
	m.Consume([]forwarder.Sample{syn}, 0)
	m.Consume([]forwarder.Sample{again}, ms(1000))
	m.Consume([]forwarder.Sample{sa}, ms(1020))
	wantRTTs(t, rec)
	if c.synRetransmits.Load() != 1 || c.ambiguous.Load() != 1 {
		t.Errorf("retransmits %d ambiguous %d, want 1 and 1", c.synRetransmits.Load(), c.ambiguous.Load())
	}
	// A new connection on the same ports (another Seq) is sampled.
	syn.Seq, syn.Time = 5000, ms(1500)
	sa.Ack, sa.Time = 5001, ms(1540)
	m.Consume([]forwarder.Sample{syn, sa}, ms(1540))
	wantRTTs(t, rec, rttRecord{1, 0, Passive, durMS(40), ms(1540)})
}

func TestPassiveTimestamps(t *testing.T) {
	m, rec, c := newTestMatcher(100)
	ts := func(t int64, val uint32) forwarder.Sample {
		s := outS(forwarder.SampleTSOut, t, 3, 1)
		s.TSval = val
		return s
	}
	echo := func(t int64, ecr uint32) forwarder.Sample {
		s := inS(forwarder.SampleTSIn, t)
		s.TSecr = ecr
		return s
	}
	m.Consume([]forwarder.Sample{
		ts(ms(100), 5),
		ts(ms(105), 5), // same TSval: only the first counts
		ts(ms(110), 6),
	}, ms(110))
	m.Consume([]forwarder.Sample{
		echo(ms(130), 5),  // 30 ms after the first TSval 5
		echo(ms(135), 5),  // already matched: ignored
		echo(ms(150), 6),  // 40 ms
		echo(ms(151), 99), // unknown
		echo(ms(152), 0),  // echoes nothing
	}, ms(152))
	// A later packet sending TSval 5 again is no new request.
	m.Consume([]forwarder.Sample{ts(ms(160), 5), echo(ms(170), 5)}, ms(170))
	wantRTTs(t, rec,
		rttRecord{3, 1, Passive, durMS(30), ms(130)},
		rttRecord{3, 1, Passive, durMS(40), ms(150)})
	if c.duplicates.Load() != 2 || c.rematched.Load() != 2 || c.unmatched.Load() != 1 {
		t.Errorf("duplicates %d rematched %d unmatched %d, want 2 2 1", c.duplicates.Load(), c.rematched.Load(), c.unmatched.Load())
	}
}

func TestPassiveEcho(t *testing.T) {
	m, rec, c := newTestMatcher(100)
	req := forwarder.Sample{Time: ms(10), Kind: forwarder.SampleEchoRequest, Route: 4, Backbone: 3, Proto: 1,
		Src: cust, Dst: remote, SrcPort: 77, Seq: 1}
	rep := forwarder.Sample{Time: ms(22), Kind: forwarder.SampleEchoReply, Proto: 1,
		Src: remote, Dst: cust, SrcPort: 77, Seq: 1}
	other := rep
	other.Seq = 2 // no such request
	stranger := rep
	stranger.Src = addr("192.0.2.1") // from another host
	m.Consume([]forwarder.Sample{req}, ms(10))
	m.Consume([]forwarder.Sample{other, stranger, rep}, ms(22))
	wantRTTs(t, rec, rttRecord{4, 3, Passive, durMS(12), ms(22)})
	if c.matched[flowEcho].Load() != 1 || c.unmatched.Load() != 2 {
		t.Errorf("matched %d unmatched %d", c.matched[flowEcho].Load(), c.unmatched.Load())
	}
}

func TestPassiveCapAndExpiry(t *testing.T) {
	m, rec, c := newTestMatcher(10)
	var batch []forwarder.Sample
	for i := range 15 {
		s := outS(forwarder.SampleSYN, ms(1), 1, 0)
		s.SrcPort = uint16(1000 + i)
		batch = append(batch, s)
	}
	m.Consume(batch, ms(1))
	if m.Len() != 10 || c.tableFull.Load() != 5 {
		t.Fatalf("flows %d table-full %d, want 10 and 5", m.Len(), c.tableFull.Load())
	}
	// Still held before one TTL (2 s) has passed...
	m.Consume(nil, ms(1900))
	if m.Len() != 10 || c.expired.Load() != 0 {
		t.Fatalf("at 1.9 s: flows %d expired %d", m.Len(), c.expired.Load())
	}
	// ...and gone, counted, after two.
	m.Consume(nil, ms(4100))
	if m.Len() != 0 || c.expired.Load() != 10 {
		t.Fatalf("at 4.1 s: flows %d expired %d, want 0 and 10", m.Len(), c.expired.Load())
	}
	// A late answer to an expired SYN is unmatched.
	sa := inS(forwarder.SampleSYNACK, ms(4200))
	sa.DstPort, sa.Ack = 1000, 1
	m.Consume([]forwarder.Sample{sa}, ms(4200))
	if len(rec.rtts) != 0 || c.unmatched.Load() != 1 {
		t.Fatalf("late SYN-ACK: %d samples, %d unmatched", len(rec.rtts), c.unmatched.Load())
	}
}

// Samples reach the Store charged to the outbound packet's route (as its
// prefix) and backbone.
func TestPassiveAttribution(t *testing.T) {
	f := newFIB(t, 3, map[string][]fib.BackboneID{"198.51.100.0/24": nil, "203.0.113.0/24": {1}})
	r1, r2 := routeOf(t, f, "198.51.100.0/24"), routeOf(t, f, "203.0.113.0/24")
	clk := &fakeClock{}
	st := NewStore(StoreOptions{}, f.Prefix, clk.now)
	m := newMatcher(st, nil, 100, 2*time.Second, &counters{})
	for i, c := range []struct {
		r   fib.RouteID
		b   fib.BackboneID
		rtt float64
	}{{r1, 2, 31}, {r2, 1, 17}, {r1, 0, 5}} {
		syn := outS(forwarder.SampleSYN, ms(100), c.r, c.b)
		syn.SrcPort, syn.Seq = uint16(2000+i), 1
		sa := inS(forwarder.SampleSYNACK, ms(100+c.rtt))
		sa.DstPort, sa.Ack = uint16(2000+i), 2
		m.Consume([]forwarder.Sample{syn, sa}, ms(200))
	}
	clk.set(ms(300))
	snap := st.Snapshot()
	got := map[string]map[fib.BackboneID]time.Duration{}
	for _, ps := range snap.Prefixes {
		got[ps.Prefix.String()] = map[fib.BackboneID]time.Duration{}
		for b, s := range ps.Backbones {
			got[ps.Prefix.String()][b] = s.P50
			if s.Samples[Passive] != 1 || s.Samples[Active] != 0 {
				t.Errorf("%v via %d: samples %v", ps.Prefix, b, s.Samples)
			}
		}
	}
	want := map[string]map[fib.BackboneID]float64{
		"198.51.100.0/24": {2: 31, 0: 5},
		"203.0.113.0/24":  {1: 17},
	}
	if len(got) != len(want) {
		t.Fatalf("prefixes %v, want %v", got, want)
	}
	for p, bs := range want {
		if len(got[p]) != len(bs) {
			t.Fatalf("%s: backbones %v, want %v", p, got[p], bs)
		}
		for b, rtt := range bs {
			within(t, p, got[p][b], durMS(rtt))
		}
	}
}

// within checks d against want at the histograms' precision: 1%, or one
// 32.8 µs step.
func within(t *testing.T, what string, d, want time.Duration) {
	t.Helper()
	tol := max(want/100, histUnit)
	if d < want-tol || d > want+tol {
		t.Errorf("%s: %v, want %v ± %v", what, d, want, tol)
	}
}

// A route's ID may go to another prefix only once nothing probes holds can
// name the old one: an answer arriving after the route was withdrawn and
// its ID's grace period passed is not charged to the prefix that took the
// ID. With the FIB's former fixed grace (1 s, shorter than the 2-4 s a
// passive sample waits with the default timeout) it was.
func TestReusedRouteIDGetsNoRTT(t *testing.T) {
	o := DefaultOptions()
	f, err := fib.New([]fib.Backbone{{Name: "bb0"}}, fib.Options{Grace: o.RouteHold()})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Add(0, pfx("198.51.100.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	old := routeOf(t, f, "198.51.100.0/24")
	clk := &fakeClock{}
	st := NewStore(StoreOptions{}, f.Prefix, clk.now)
	m := newMatcher(st, nil, 100, o.Timeout, &counters{})
	t0 := monotime.Now()
	syn := outS(forwarder.SampleSYN, t0, old, 0)
	syn.Seq = 1
	m.Consume([]forwarder.Sample{syn}, t0)
	if _, err := f.Withdraw(0, pfx("198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the former grace
	if err := f.Add(0, pfx("203.0.113.0/24"), 1); err != nil {
		t.Fatal(err)
	}
	if routeOf(t, f, "203.0.113.0/24") == old {
		t.Errorf("route ID %d reused %v after its withdrawal, while a sample naming it may still be answered (for %v)", old, 1100*time.Millisecond, o.RouteHold())
	}
	// The answer comes 1.5 s after the SYN: within the timeout.
	sa := inS(forwarder.SampleSYNACK, t0+sec(1.5))
	sa.Ack = 2
	m.Consume([]forwarder.Sample{sa}, t0+sec(1.5))
	clk.set(t0 + sec(1.6))
	for _, ps := range st.Snapshot().Prefixes {
		t.Errorf("%v has RTT samples %+v; the only answer was for a withdrawn route", ps.Prefix, ps.Backbones)
	}
}
