package rfc2544

import "time"

// Trial is the outcome of offering one rate for one trial.
type Trial struct {
	Asked    float64 // the rate asked of the generator, frames/s
	Offered  float64 // the rate it achieved
	Sent     uint64
	Received uint64 // distinct frames received
	Lost     uint64
	Dups     uint64
	P50, P99 time.Duration
	Max      time.Duration
	// CDF is the trial's latency distribution: (latency, share arrived
	// within it) pairs.
	CDF []CDFPoint `json:"-"`
}

// CDFPoint is one point of a latency distribution.
type CDFPoint struct {
	Latency  time.Duration
	Fraction float64
}

// LossRatio is the share of sent frames that did not arrive.
func (t Trial) LossRatio() float64 {
	if t.Sent == 0 {
		return 1
	}
	return float64(t.Lost) / float64(t.Sent)
}

// Search finds the highest rate in (0, hi] whose trial loses at most
// tolerance of its frames, by binary search over the asked rate in steps
// halvings (RFC 2544 26.1). trial runs one trial at a rate. It returns the
// best passing trial (zero if none passed) and every trial run.
//
// The search is over the asked rate, the result is the rate achieved in the
// best passing trial: a generator may fall short of what it was asked.
func Search(hi float64, steps int, tolerance float64, trial func(rate float64) (Trial, error)) (best Trial, all []Trial, err error) {
	lo := 0.0
	rate := hi
	for range steps {
		t, err := trial(rate)
		if err != nil {
			return best, all, err
		}
		t.Asked = rate
		all = append(all, t)
		if t.LossRatio() <= tolerance {
			if t.Offered > best.Offered {
				best = t
			}
			lo = rate
		} else {
			hi = rate
		}
		if lo == hi {
			break
		}
		rate = (lo + hi) / 2
	}
	return best, all, nil
}
