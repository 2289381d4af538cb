package probes

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// fillStore puts routes × backbones pairs of samples RTT samples each in a
// store, and traffic for every route.
func fillStore(b *testing.B, routes, backbones, samples int) (*Store, *fakeClock) {
	st, clk, _ := newTestStore(StoreOptions{MaxPairs: routes * backbones})
	for r := range routes {
		for bb := range backbones {
			for i := range samples {
				st.AddRTT(fib.RouteID(r+1), fib.BackboneID(bb), Active, durMS(float64(5+i%100+bb*10)), ms(float64(i)))
				st.AddOutcome(fib.RouteID(r+1), fib.BackboneID(bb), Outcome(i%10/9), ms(float64(i)))
			}
		}
		st.SetTraffic(fib.RouteID(r+1), float64(r%97))
	}
	clk.set(ms(float64(samples)))
	return st, clk
}

// BenchmarkSnapshot is Snapshot at 1000 prefixes × 4 backbones: "clean"
// when no pair changed since the last Snapshot (figures reused), "dirty"
// when every pair got a sample since (every histogram walked).
func BenchmarkSnapshot(b *testing.B) {
	b.Run("clean", func(b *testing.B) {
		st, _ := fillStore(b, 1000, 4, 50)
		st.Snapshot()
		b.ReportAllocs()
		for b.Loop() {
			st.Snapshot()
		}
	})
	b.Run("dirty", func(b *testing.B) {
		st, clk := fillStore(b, 1000, 4, 50)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			for r := range 1000 {
				for bb := range 4 {
					st.AddRTT(fib.RouteID(r+1), fib.BackboneID(bb), Passive, durMS(20), clk.now())
				}
			}
			b.StartTimer()
			st.Snapshot()
		}
	})
}

// BenchmarkMatch drains a batch of samples through the matcher into a
// Store of 1000 routes: a quarter SYNs, their SYN-ACKs, TS pairs and
// traffic samples, every flow new.
func BenchmarkMatch(b *testing.B) {
	const batch, batches = 4096, 64
	st, clk, _ := newTestStore(StoreOptions{})
	c := &counters{}
	tr := NewTraffic(TrafficOptions{})
	m := newMatcher(st, tr, 65536, 100*time.Millisecond, c)
	var bs [batches][]forwarder.Sample
	for k := range bs {
		bs[k] = make([]forwarder.Sample, 0, batch)
		for i := 0; i < batch; i += 8 {
			t := ms(float64(k * 10))
			r := fib.RouteID(1 + (k*batch+i)%1000)
			port := uint16(1024 + (k*batch+i)/8%60000)
			s := forwarder.Sample{Time: t, Kind: forwarder.SampleSYN, Route: r, Backbone: fib.BackboneID(i % 4), Proto: 6,
				Src: cust, Dst: remote, SrcPort: port, DstPort: 443, Seq: uint32(i)}
			in := forwarder.Sample{Time: t + ms(20), Kind: forwarder.SampleSYNACK, Proto: 6,
				Src: remote, Dst: cust, SrcPort: 443, DstPort: port, Ack: uint32(i) + 1}
			ts := s
			ts.Kind, ts.TSval = forwarder.SampleTSOut, uint32(k)
			tsIn := in
			tsIn.Kind, tsIn.TSecr = forwarder.SampleTSIn, uint32(k)
			traffic := s
			traffic.Kind = forwarder.SampleTraffic
			bs[k] = append(bs[k], s, in, ts, tsIn, traffic, traffic, traffic, traffic)
		}
	}
	cycle := ms(batches * 10)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k := n % batches
		if k == 0 && n > 0 {
			for j := range bs {
				for i := range bs[j] {
					bs[j][i].Time += cycle
				}
			}
		}
		clk.set(bs[k][0].Time)
		m.Consume(bs[k], bs[k][0].Time+ms(20))
		n++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*batch), "ns/sample")
	if c.matched[flowSYN].Load() == 0 || c.matched[flowTS].Load() == 0 {
		b.Fatalf("nothing matched: %+v", c)
	}
}

// BenchmarkProbeFrame builds a TCP SYN and an ICMP echo probe.
func BenchmarkProbeFrame(b *testing.B) {
	fb := newFrameBuilder()
	path := Path{SrcMAC: mac(1, 1), DstMAC: mac(1, 2), OK: true}
	b.ReportAllocs()
	seq := uint32(0)
	for b.Loop() {
		seq++
		if _, err := fb.syn(path, probeSrc4, remote, 50000, 443, seq); err != nil {
			b.Fatal(err)
		}
		if _, err := fb.echo(path, probeSrc4, remote, 7, uint16(seq)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplyParse decodes a SYN-ACK.
func BenchmarkReplyParse(b *testing.B) {
	fb := newFrameBuilder()
	path := Path{SrcMAC: mac(1, 1), DstMAC: mac(1, 2), OK: true}
	frame, _ := fb.syn(path, probeSrc4, remote, 50000, 443, 99)
	reply := answer(b, decodeProbe(b, frame), false)
	rp := newReplyParser()
	b.ReportAllocs()
	for b.Loop() {
		if r, ok := rp.parse(reply); !ok || r.key.seq != 99 {
			b.Fatal("not parsed")
		}
	}
}
