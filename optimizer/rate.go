package optimizer

import (
	"slices"
	"time"
)

// recentSpan is how much of a backbone's rate history admission looks at
// (fits): long enough to cover a Step or two of sampling noise, short
// enough that a backbone that shed load can take traffic back soon after.
const recentSpan = 2 * time.Second

// rateWindow keeps a backbone's last samples of its carried rate (one per
// Step) and estimates their 95th percentile the way burstable billing does:
// sort, drop the top 5 %, take the highest left. With the default 300
// one-second samples that is the 285th: the 15 busiest seconds of the last
// five minutes are free, like the 15 busiest of 300 five-minute samples on
// a bill. It tracks the bill's shape on a window short enough to react to.
type rateWindow struct {
	samples []float64 // ring
	next    int
	n       int
}

func newRateWindow(size int) rateWindow {
	return rateWindow{samples: make([]float64, size)}
}

func (w *rateWindow) add(bps float64) {
	w.samples[w.next] = bps
	w.next = (w.next + 1) % len(w.samples)
	w.n = min(w.n+1, len(w.samples))
}

// p95 uses scratch (len >= the window) so a Step allocates nothing.
func (w *rateWindow) p95(scratch []float64) float64 {
	if w.n == 0 {
		return 0
	}
	s := scratch[:w.n]
	copy(s, w.samples[:w.n]) // before the ring wraps the first n are the samples; after, all are
	slices.Sort(s)
	k := (w.n*95+99)/100 - 1 // ceil(0.95 n) - 1
	return s[k]
}

// recentMax is the largest of the last k samples (all there are, if fewer).
func (w *rateWindow) recentMax(k int) float64 {
	k = min(k, w.n)
	m := 0.0
	for i := 1; i <= k; i++ {
		m = max(m, w.samples[(w.next-i+len(w.samples))%len(w.samples)])
	}
	return m
}
