package rfc2544

import "time"

// Trial is the outcome of offering one rate for one trial.
type Trial struct {
	Asked    float64 // the rate asked of the generator, frames/s
	Offered  float64 // the rate it achieved
	Sent     uint64
	Received uint64 // distinct frames received on their backbone
	Lost     uint64 // Sent - Received: wrong-path frames included
	Dups     uint64
	// WrongPath counts frames that arrived on another backbone than their
	// destination's: lost, since they went where they must not.
	WrongPath uint64
	P50, P99  time.Duration
	Max       time.Duration
	// CDF is the trial's latency distribution: (latency, share arrived
	// within it) pairs.
	CDF []CDFPoint `json:"-"`
}

// CDFPoint is one point of a latency distribution.
type CDFPoint struct {
	Latency  time.Duration
	Fraction float64
}

// Delivered is the rate that arrived: Received over the sending time.
func (t Trial) Delivered() float64 {
	if t.Sent == 0 || t.Offered <= 0 {
		return 0
	}
	return float64(t.Received) * t.Offered / float64(t.Sent)
}

// LossRatio is the share of sent frames that did not arrive.
func (t Trial) LossRatio() float64 {
	if t.Sent == 0 {
		return 1
	}
	return float64(t.Lost) / float64(t.Sent)
}

// Search finds the highest rate up to hi whose trial loses at most
// tolerance of its frames (RFC 2544 26.1). It first doubles from start
// until a trial fails (or hi passes), then halves the interval between the
// best pass and the first failure for steps more trials. The rate carried
// under overload is no upper bound: a forwarder that livelocks (a user-space
// one whose receive work starves it) carries far less when flooded than at
// its zero-loss rate, so the search climbs from below instead.
//
// It returns the best passing trial (zero if none passed) and every trial
// run. The search is over the asked rate; the result is the rate achieved
// in the best passing trial, since a generator may fall short of what it
// was asked.
func Search(start, hi float64, steps int, tolerance float64, trial func(rate float64) (Trial, error)) (best Trial, all []Trial, err error) {
	run := func(rate float64) (bool, error) {
		t, err := trial(rate)
		if err != nil {
			return false, err
		}
		t.Asked = rate
		all = append(all, t)
		ok := t.LossRatio() <= tolerance
		if ok && t.Offered > best.Offered {
			best = t
		}
		return ok, nil
	}
	lo, fail := 0.0, 0.0
	for rate := min(start, hi); ; rate = min(2*rate, hi) {
		ok, err := run(rate)
		if err != nil {
			return best, all, err
		}
		if !ok {
			fail = rate
			break
		}
		lo = rate
		if rate == hi {
			return best, all, nil
		}
	}
	for range steps {
		rate := (lo + fail) / 2
		ok, err := run(rate)
		if err != nil {
			return best, all, err
		}
		if ok {
			lo = rate
		} else {
			fail = rate
		}
	}
	return best, all, nil
}
