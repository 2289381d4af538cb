package probes

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
)

// resolver names route r 10.r.0.0/16 until renamed.
type resolver struct {
	mu    sync.Mutex
	names map[fib.RouteID]netip.Prefix
}

func (rs *resolver) prefix(r fib.RouteID) netip.Prefix {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if p, ok := rs.names[r]; ok {
		return p
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(r >> 8), byte(r), 0}), 24)
}

func (rs *resolver) rename(r fib.RouteID, p netip.Prefix) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.names == nil {
		rs.names = map[fib.RouteID]netip.Prefix{}
	}
	rs.names[r] = p
}

func newTestStore(opt StoreOptions) (*Store, *fakeClock, *resolver) {
	clk := &fakeClock{}
	rs := &resolver{}
	return NewStore(opt, rs.prefix, clk.now), clk, rs
}

func statsOf(t *testing.T, snap Snapshot, r fib.RouteID, b fib.BackboneID) (Stats, bool) {
	t.Helper()
	for _, ps := range snap.Prefixes {
		if ps.Route == r {
			s, ok := ps.Backbones[b]
			return s, ok
		}
	}
	return Stats{}, false
}

func TestStorePercentiles(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{})
	// 1..1000 ms, shuffled order does not matter to a histogram.
	for i := 1000; i >= 1; i-- {
		st.AddRTT(1, 0, Active, durMS(float64(i)), ms(float64(i)))
	}
	st.AddRTT(1, 0, Passive, durMS(500.5), ms(1000))
	clk.set(ms(1001))
	s, ok := statsOf(t, st.Snapshot(), 1, 0)
	if !ok {
		t.Fatal("no stats")
	}
	within(t, "min", s.Min, durMS(1))
	within(t, "p50", s.P50, durMS(501))
	within(t, "p95", s.P95, durMS(951))
	within(t, "p99", s.P99, durMS(991))
	if s.Samples != [numSources]uint64{Passive: 1, Active: 1000} || s.RTTSamples() != 1001 {
		t.Errorf("samples %v", s.Samples)
	}
	if s.Sent != 0 || s.Loss != 0 {
		t.Errorf("no probe outcomes recorded, yet sent %d loss %v", s.Sent, s.Loss)
	}
}

// With a 10 s window the histograms rotate every 5 s: a sample is kept
// for 5 to 10 s.
func TestStoreWindow(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{Window: 10 * time.Second})
	st.AddRTT(1, 0, Active, durMS(100), sec(1))
	st.AddOutcome(1, 0, Lost, sec(1))
	clk.set(sec(4.9))
	if s, _ := statsOf(t, st.Snapshot(), 1, 0); s.RTTSamples() != 1 || s.Lost != 1 {
		t.Fatalf("at 4.9 s: %+v", s)
	}
	st.AddRTT(1, 0, Active, durMS(20), sec(6)) // next half-window
	clk.set(sec(9.9))
	s, _ := statsOf(t, st.Snapshot(), 1, 0)
	if s.RTTSamples() != 2 || s.Lost != 1 || s.Min > durMS(20.1) {
		t.Fatalf("at 9.9 s, both halves: %+v", s)
	}
	within(t, "p99 of both", s.P99, durMS(100))
	clk.set(sec(10.1)) // the first half-window has rotated out
	s, _ = statsOf(t, st.Snapshot(), 1, 0)
	if s.RTTSamples() != 1 || s.Lost != 0 || s.Sent != 0 {
		t.Fatalf("at 10.1 s: %+v", s)
	}
	within(t, "p99 of the second", s.P99, durMS(20))
	if bs := st.Snapshot().Backbones[0]; bs.ProbesSent != 0 {
		t.Fatalf("backbone totals kept the old loss: %+v", bs)
	}
	clk.set(sec(15.1)) // and then the second
	if snap := st.Snapshot(); len(snap.Prefixes) != 0 {
		t.Fatalf("at 15.1 s: %+v", snap.Prefixes)
	}
	st.Sweep()
	if c := st.Counters(); c.Pairs != 0 || c.Expired != 1 {
		t.Fatalf("after Sweep: %+v", c)
	}
}

func TestStoreLoss(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{})
	for i := range 100 {
		o := Answered
		switch {
		case i%10 == 3:
			o = Lost
		case i == 50 || i == 60 || i == 70:
			o = Unreachable
		}
		st.AddOutcome(5, 2, o, ms(float64(i)))
		st.AddOutcome(6, 2, Lost, ms(float64(i))) // a dead prefix on the same backbone
	}
	clk.set(ms(200))
	snap := st.Snapshot()
	s, _ := statsOf(t, snap, 5, 2)
	if s.Sent != 100 || s.Lost != 10+3-0 || s.Unreachable != 3 {
		// i%10==3 gives 10 losses; 50, 60, 70 are not ≡ 3 mod 10.
		t.Fatalf("stats %+v", s)
	}
	if s.Loss != 0.13 {
		t.Errorf("loss %v, want 0.13", s.Loss)
	}
	bs := snap.Backbones[2]
	if bs.ProbesSent != 200 || bs.ProbesLost != 113 || bs.Unreachable != 3 || bs.Loss != 113.0/200 {
		t.Errorf("backbone %+v", bs)
	}
	if _, ok := snap.Backbones[1]; ok {
		t.Error("backbone 1 has no probes, yet is in the snapshot")
	}
}

func TestStoreEviction(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{MaxPairs: 3})
	st.AddRTT(1, 0, Active, durMS(1), ms(1))
	st.AddRTT(1, 1, Active, durMS(2), ms(2))
	st.AddRTT(2, 0, Active, durMS(3), ms(3))
	st.AddRTT(1, 0, Active, durMS(4), ms(4)) // (1,0) is now the most recent
	st.AddRTT(3, 0, Active, durMS(5), ms(5)) // evicts (1,1)
	st.AddRTT(3, 1, Active, durMS(6), ms(6)) // evicts (2,0), and route 2
	clk.set(ms(10))
	snap := st.Snapshot()
	var got []string
	for _, ps := range snap.Prefixes {
		for b := range ps.Backbones {
			got = append(got, fmt.Sprintf("%d/%d", ps.Route, b))
		}
	}
	if c := st.Counters(); c.Pairs != 3 || c.Evicted != 2 || len(got) != 3 {
		t.Fatalf("counters %+v, pairs %v", c, got)
	}
	for _, gone := range []struct{ r, b int }{{1, 1}, {2, 0}} {
		if _, ok := statsOf(t, snap, fib.RouteID(gone.r), fib.BackboneID(gone.b)); ok {
			t.Errorf("pair %v survived eviction: %v", gone, got)
		}
	}
	if s, ok := statsOf(t, snap, 1, 0); !ok || s.RTTSamples() != 2 {
		t.Errorf("pair 1/0 lost its samples: %+v", s)
	}
}

func TestStoreRouteRenamed(t *testing.T) {
	st, clk, rs := newTestStore(StoreOptions{})
	st.AddRTT(1, 0, Active, durMS(1), ms(1))
	st.AddRTT(2, 0, Active, durMS(1), ms(1))
	rs.rename(1, pfx("192.0.2.0/24")) // ID 1 reused for another prefix
	rs.rename(3, netip.Prefix{})      // ID 3 names nothing
	st.Sweep()
	st.AddRTT(3, 0, Active, durMS(1), ms(2))
	clk.set(ms(3))
	snap := st.Snapshot()
	if len(snap.Prefixes) != 1 || snap.Prefixes[0].Route != 2 {
		t.Fatalf("prefixes %+v", snap.Prefixes)
	}
	if c := st.Counters(); c.Gone != 2 {
		t.Errorf("gone %d, want 2", c.Gone)
	}
}

func TestStoreOrderAndDeepCopy(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{})
	for r := fib.RouteID(1); r <= 3; r++ {
		st.AddRTT(r, 0, Active, durMS(10), ms(1))
	}
	st.SetTraffic(1, 5)
	st.SetTraffic(2, 50)
	st.SetTraffic(3, 20)
	clk.set(ms(2))
	snap := st.Snapshot()
	var order []fib.RouteID
	for _, ps := range snap.Prefixes {
		order = append(order, ps.Route)
	}
	if fmt.Sprint(order) != "[2 3 1]" {
		t.Fatalf("order %v, want busiest first [2 3 1]", order)
	}
	before := fmt.Sprintf("%+v", snap)
	for i := range 100 {
		st.AddRTT(2, 0, Active, durMS(500), ms(3+float64(i)))
		st.AddRTT(2, 1, Active, durMS(500), ms(3+float64(i)))
		st.AddOutcome(2, 0, Lost, ms(3+float64(i)))
	}
	st.SetTraffic(1, 1000)
	clk.set(ms(200))
	later := st.Snapshot()
	if after := fmt.Sprintf("%+v", snap); after != before {
		t.Fatalf("an earlier snapshot changed:\nbefore %s\nafter  %s", before, after)
	}
	if later.Prefixes[0].Route != 1 || len(later.Prefixes[1].Backbones) != 2 {
		t.Fatalf("later snapshot %+v", later.Prefixes)
	}
	// And a reader mutating its copy does not reach the store.
	later.Prefixes[1].Backbones[0] = Stats{}
	if s, _ := statsOf(t, st.Snapshot(), 2, 0); s.RTTSamples() != 101 {
		t.Fatalf("store changed through a snapshot: %+v", s)
	}
}

// Snapshots taken while the store is written; run with -race.
func TestStoreConcurrentSnapshot(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{MaxPairs: 500})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				snap := st.Snapshot()
				for _, ps := range snap.Prefixes {
					for _, s := range ps.Backbones {
						if s.P50 < s.Min || s.P99 < s.P95 {
							t.Errorf("inconsistent stats %+v", s)
							return
						}
					}
				}
			}
		}()
	}
	for i := range 3000 {
		at := ms(float64(i))
		clk.set(at)
		r, b := fib.RouteID(i%300), fib.BackboneID(i%4)
		st.AddRTT(r, b, Source(i%2), durMS(float64(1+i%50)), at)
		st.AddOutcome(r, b, Outcome(i%3), at)
		st.SetTraffic(r, float64(i%17))
		if i%500 == 0 {
			st.Sweep()
		}
	}
	close(done)
	wg.Wait()
}

// Stats.Recent is the last RecentSamples RTTs, once there are that many
// within the window.
func TestStoreRecent(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{Window: 10 * time.Second})
	for i, ms := range []float64{20, 21, 150, 152} {
		st.AddRTT(1, 0, Active, durMS(ms), sec(1+float64(i)/10))
	}
	clk.set(sec(2))
	if s, _ := statsOf(t, st.Snapshot(), 1, 0); s.Recent.N != RecentSamples || s.Recent.Lo > durMS(20.1) || s.Recent.Hi < durMS(151.9) {
		t.Fatalf("4 samples: recent %+v", s.Recent)
	}
	for i, ms := range []float64{149, 151, 150} {
		st.AddRTT(1, 0, Passive, durMS(ms), sec(2+float64(i)/10))
	}
	clk.set(sec(3))
	s, _ := statsOf(t, st.Snapshot(), 1, 0)
	if r := s.Recent; r.N != RecentSamples || r.Lo < durMS(148.9) || r.Hi > durMS(152.1) {
		t.Fatalf("the last 4 of 7: recent %+v, want 149 to 152 ms", r)
	}
	within(t, "recent median", s.Recent.P50, durMS(150.5))
	within(t, "window median", s.P50, durMS(150))
	st.AddRTT(1, 0, Active, durMS(30), sec(12.1)) // the others are out of the window
	clk.set(sec(12.5))
	if s, _ := statsOf(t, st.Snapshot(), 1, 0); s.Recent.N != 0 {
		t.Fatalf("one sample in the window: recent %+v, want none", s.Recent)
	}
}

// BackboneStats.LastLossSent is when the latest-sent lost probe left: a
// timeout before it was charged, or when an ICMP error came for it.
// Recent.Since is when the first of the recent samples was sent.
func TestStoreLossSentAndSince(t *testing.T) {
	st, clk, _ := newTestStore(StoreOptions{Window: 10 * time.Second, ProbeTimeout: 300 * time.Millisecond})
	st.AddOutcome(1, 0, Lost, sec(2))   // sent at 1.7 s
	st.AddOutcome(1, 0, Lost, sec(1.9)) // sent before that one, charged after
	for i := range 4 {
		st.AddRTT(1, 0, Active, durMS(20), sec(1.8+0.1*float64(i))) // the first sent at 1.78 s
	}
	clk.set(sec(3))
	snap := st.Snapshot()
	s, _ := statsOf(t, snap, 1, 0)
	within(t, "first recent sample sent after the last loss", s.Recent.Since.Sub(snap.Backbones[0].LastLossSent), durMS(80))
	st.AddOutcome(2, 0, Unreachable, sec(2.5))
	snap = st.Snapshot()
	s, _ = statsOf(t, snap, 1, 0)
	within(t, "an ICMP error after the first recent sample", snap.Backbones[0].LastLossSent.Sub(s.Recent.Since), durMS(720))
	if !snap.Backbones[1].LastLossSent.IsZero() {
		t.Errorf("backbone 1 lost nothing, LastLossSent %v", snap.Backbones[1].LastLossSent)
	}
}
