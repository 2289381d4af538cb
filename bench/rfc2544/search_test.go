package rfc2544

import (
	"math"
	"testing"
)

// The search converges on a forwarder's loss threshold from above and
// below, and reports the achieved rate of the best passing trial.
func TestSearchFindsThreshold(t *testing.T) {
	for _, limit := range []float64{5_000, 123_456, 799_999, 1e6} {
		shortfall := 0.98 // the generator reaches 98 % of what it is asked
		best, all, err := Search(10_000, 1e6, 12, 0.001, func(rate float64) (Trial, error) {
			off := rate * shortfall
			tr := Trial{Offered: off, Sent: uint64(off)}
			if off > limit {
				tr.Lost = uint64(off - limit)
			}
			tr.Received = tr.Sent - tr.Lost
			return tr, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) > 12+8 {
			t.Fatalf("limit %v: %d trials, want at most 8 doublings and 12 halvings", limit, len(all))
		}
		want := math.Min(limit*1.001/(1-0.001), 1e6*shortfall) // within tolerance of the threshold
		if best.Offered > want || best.Offered < want-1e6/4096-limit*0.002 {
			t.Errorf("limit %v: best %v, want just under %v", limit, best.Offered, want)
		}
		if best.LossRatio() > 0.001 {
			t.Errorf("limit %v: best trial lost %v", limit, best.LossRatio())
		}
	}
}

// A forwarder that loses everything yields no passing trial.
func TestSearchNothingPasses(t *testing.T) {
	best, all, err := Search(1000, 1e6, 5, 0, func(rate float64) (Trial, error) {
		return Trial{Offered: rate, Sent: 100, Lost: 100}, nil
	})
	if err != nil || best.Offered != 0 || len(all) != 6 {
		t.Fatalf("best %+v, %d trials, err %v", best, len(all), err)
	}
}

// A forwarder whose zero-loss rate is far above what it carries when
// flooded (livelock) is still found: the search climbs from below.
func TestSearchClimbsPastOverloadRate(t *testing.T) {
	best, _, err := Search(50_000, 4e6, 8, 0, func(rate float64) (Trial, error) {
		tr := Trial{Offered: rate, Sent: uint64(rate)}
		if rate > 300_000 {
			tr.Lost = tr.Sent / 2
		}
		return tr, nil
	})
	if err != nil || best.Offered < 290_000 || best.Offered > 300_000 {
		t.Fatalf("best %.0f, want just under 300000 (err %v)", best.Offered, err)
	}
}
