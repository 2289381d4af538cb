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
		best, all, err := Search(1e6, 12, 0.001, func(rate float64) (Trial, error) {
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
		if len(all) != 12 && limit < 1e6*shortfall {
			t.Fatalf("limit %v: %d trials, want 12", limit, len(all))
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
	best, all, err := Search(1e6, 5, 0, func(rate float64) (Trial, error) {
		return Trial{Offered: rate, Sent: 100, Lost: 100}, nil
	})
	if err != nil || best.Offered != 0 || len(all) != 5 {
		t.Fatalf("best %+v, %d trials, err %v", best, len(all), err)
	}
}
