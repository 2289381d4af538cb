package probes

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

func trafficSample(t int64, r fib.RouteID, dst string, proto uint8, port uint16) *forwarder.Sample {
	return &forwarder.Sample{Time: t, Kind: forwarder.SampleTraffic, Route: r, Proto: proto,
		Src: cust, Dst: addr(dst), SrcPort: 1234, DstPort: port, Len: 1500}
}

// feed sends route r samples at pps for the span [from, to).
func feed(tr *Traffic, r fib.RouteID, pps float64, from, to int64) {
	step := int64(float64(time.Second) / pps)
	for t := from; t < to; t += step {
		tr.Add(trafficSample(t, r, "198.51.100.1", 6, 443))
	}
}

func TestTrafficRanking(t *testing.T) {
	tr := NewTraffic(TrafficOptions{SampleEvery: 10})
	// 60 s of steady traffic: six time constants, the EWMA has settled.
	feed(tr, 1, 10, 0, sec(60))
	feed(tr, 2, 100, 0, sec(60))
	feed(tr, 3, 50, 0, sec(60))
	feed(tr, 4, 1, 0, sec(60))
	now := sec(60)
	if got := fmt.Sprint(tr.Top(3, now, nil)); got != "[2 3 1]" {
		t.Fatalf("top 3 %s, want [2 3 1]", got)
	}
	// Rates read as forwarded packets: samples × 10. At one sample a
	// second the estimate saws by ±5% between samples.
	for r, want := range map[fib.RouteID]float64{1: 100, 2: 1000, 3: 500, 4: 10} {
		if got := tr.Rate(r, now); math.Abs(got-want) > want*0.1 {
			t.Errorf("route %d: %.1f pps, want %.0f ± 10%%", r, got, want)
		}
	}
	// Route 2 goes quiet; after one time constant it has decayed to 1/e,
	// after two it is below route 3, which kept going.
	feed(tr, 3, 50, now, now+sec(20))
	feed(tr, 1, 10, now, now+sec(20))
	if got, want := tr.Rate(2, now+sec(10)), 1000/math.E; math.Abs(got-want) > want*0.02 {
		t.Errorf("after 10 s silence: %.1f pps, want %.1f", got, want)
	}
	if got := fmt.Sprint(tr.Top(2, now+sec(20), nil)); got != "[3 2]" {
		t.Errorf("top 2 after route 2 went quiet: %s, want [3 2]", got)
	}
	// Silent long enough, routes are dropped.
	tr.Expire(now + sec(200))
	if tr.Len() != 0 {
		t.Errorf("%d routes left after 200 s of silence", tr.Len())
	}
}

func TestTrafficTarget(t *testing.T) {
	tr := NewTraffic(TrafficOptions{Stick: 10 * time.Second})
	if _, _, ok := tr.Target(1); ok {
		t.Fatal("target of an unseen route")
	}
	tr.Add(trafficSample(sec(1), 1, "198.51.100.1", 17, 53)) // UDP: no port
	tr.Add(trafficSample(sec(2), 1, "198.51.100.2", 6, 443))
	dst, port, _ := tr.Target(1)
	if dst != addr("198.51.100.1") || port != 443 {
		t.Fatalf("target %v:%d, want the first destination, sticky, and the TCP port", dst, port)
	}
	tr.Add(trafficSample(sec(5), 1, "198.51.100.1", 6, 443)) // seen again: keeps sticking
	tr.Add(trafficSample(sec(14), 1, "198.51.100.2", 6, 80))
	if dst, port, _ = tr.Target(1); dst != addr("198.51.100.1") || port != 443 {
		t.Fatalf("target %v:%d moved before 10 s unseen", dst, port)
	}
	tr.Add(trafficSample(sec(16), 1, "198.51.100.2", 6, 80))
	if dst, port, _ = tr.Target(1); dst != addr("198.51.100.2") || port != 80 {
		t.Fatalf("target %v:%d, want it moved after 10 s unseen", dst, port)
	}
}

func TestTrafficCap(t *testing.T) {
	tr := NewTraffic(TrafficOptions{MaxRoutes: 80})
	// Route r gets r samples: the coldest are the lowest IDs.
	for r := fib.RouteID(1); r <= 80; r++ {
		for range r {
			tr.Add(trafficSample(sec(1), r, "198.51.100.1", 6, 443))
		}
	}
	tr.Add(trafficSample(sec(1), 100, "198.51.100.1", 6, 443))
	if tr.Len() != 71 || tr.evicted != 10 {
		t.Fatalf("%d routes, %d evicted; want 71 and 10", tr.Len(), tr.evicted)
	}
	for r := fib.RouteID(1); r <= 10; r++ {
		if tr.Rate(r, sec(1)) != 0 {
			t.Errorf("route %d, among the coldest, was kept", r)
		}
	}
	if tr.Rate(11, sec(1)) == 0 || tr.Rate(100, sec(1)) == 0 {
		t.Error("a warmer route or the new one was evicted")
	}
}

// A route new to the ranking reads at its rate within seconds, not a time
// constant (10 s) later, in packets and in bytes.
func TestTrafficNewRouteReadsItsRate(t *testing.T) {
	tr := NewTraffic(TrafficOptions{SampleEvery: 10})
	feed(tr, 1, 100, sec(5), sec(7)) // 2 s of 1000 packets/s of 1500 bytes
	now := sec(7)
	if got, want := tr.Rate(1, now), 1000.0; math.Abs(got-want) > want*0.1 {
		t.Errorf("after 2 s: %.0f packets/s, want %.0f ± 10 %%", got, want)
	}
	if got, want := tr.ByteRate(1, now), 1500*1000.0; math.Abs(got-want) > want*0.1 {
		t.Errorf("after 2 s: %.0f bytes/s, want %.0f ± 10 %%", got, want)
	}
	// Quiet for a time constant after 2 s of traffic: it has faded.
	if got := tr.Rate(1, sec(17)); got > 150 {
		t.Errorf("10 s after: %.0f packets/s, want it faded under 150", got)
	}
}
