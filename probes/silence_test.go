package probes

import (
	"testing"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// echoes is n echo requests on backbone b, 10 ms apart from t, to the
// prefixes of routes in turn; each has its own sequence number.
func echoes(n int, t int64, b fib.BackboneID, seq uint32, routes ...fib.RouteID) []forwarder.Sample {
	var out []forwarder.Sample
	for i := range n {
		s := outS(forwarder.SampleEchoRequest, t+int64(i)*ms(10), routes[i%len(routes)], b)
		s.Seq = seq + uint32(i)
		out = append(out, s)
	}
	return out
}

// A backbone is silent once many answerable packets to several prefixes
// have gone unanswered for a TTL while they still go; one answer, a single
// prefix or a quiet spell each keeps it from being.
func TestSilence(t *testing.T) {
	m, _, _ := newTestMatcher(1000) // TTL 2 s
	// Backbone 1 carries 20 echoes to two prefixes over 190 ms, unanswered.
	m.Consume(echoes(20, ms(1000), 1, 100, 7, 8), ms(1190))
	m.checkSilence(ms(2500))
	if got := m.SilentSince(1); got != 0 {
		t.Fatalf("silent since %d after 1.5 s, less than the TTL", got)
	}
	// Still sending at 3.1 s: silent since the first went, at 1 s.
	m.Consume(echoes(5, ms(3100), 1, 200, 7, 8), ms(3150))
	m.checkSilence(ms(3200))
	if got := m.SilentSince(1); got != ms(1000) {
		t.Fatalf("silent since %d, want %d", got, ms(1000))
	}
	if m.SilentSince(0) != 0 {
		t.Fatal("backbone 0, which carried nothing, silent")
	}
	// One answer ends it.
	reply := inS(forwarder.SampleEchoReply, ms(3210))
	reply.SrcPort, reply.Seq = 40000, 204
	m.Consume([]forwarder.Sample{reply}, ms(3210))
	m.checkSilence(ms(3220))
	if got := m.SilentSince(1); got != 0 {
		t.Fatalf("silent since %d after an answer", got)
	}

	// Unanswered packets to one prefix: a dead server, not the backbone.
	m.Consume(echoes(20, ms(4000), 2, 300, 9), ms(4200))
	m.Consume(echoes(5, ms(6100), 2, 400, 9), ms(6150))
	m.checkSilence(ms(6200))
	if m.SilentSince(2) != 0 {
		t.Fatal("silent on one prefix's unanswered packets")
	}

	// A silent backbone that carries nothing more (its prefixes moved
	// away) stays silent for silentKeepTTLs; traffic back on it starts a
	// new run.
	m.Consume(echoes(20, ms(10000), 3, 500, 7, 8), ms(10200))
	m.Consume(echoes(2, ms(12100), 3, 600, 7, 8), ms(12110))
	m.checkSilence(ms(12250))
	if m.SilentSince(3) == 0 {
		t.Fatal("backbone 3 not silent")
	}
	m.checkSilence(ms(14300))
	if m.SilentSince(3) == 0 {
		t.Fatal("backbone 3 no longer silent 2.2 s after its last packet")
	}
	m.Consume(echoes(20, ms(14500), 3, 700, 7, 8), ms(14700))
	m.checkSilence(ms(14800))
	if got := m.SilentSince(3); got != 0 {
		t.Fatalf("silent since %d 300 ms into a new run", got)
	}
	// Nothing answered, nothing sent: silent until silentKeepTTLs.
	m.Consume(echoes(20, ms(20000), 4, 800, 7, 8), ms(20200))
	m.Consume(echoes(2, ms(22100), 4, 900, 7, 8), ms(22110))
	m.checkSilence(ms(22110 + silentKeepTTLs*2000 - 10))
	if m.SilentSince(4) == 0 {
		t.Fatal("backbone 4 not silent within silentKeepTTLs")
	}
	m.checkSilence(ms(22110 + silentKeepTTLs*2000 + 10))
	if got := m.SilentSince(4); got != 0 {
		t.Fatalf("silent since %d past silentKeepTTLs", got)
	}
}
