package optimizer

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/fib"
)

// Reason says why a prefix moved.
type Reason uint8

// The reasons. A move to a clearly better backbone is attributed to the
// score component (RTT, loss, cost) that contributed most to the win.
const (
	BetterRTT      Reason = iota // lower RTT statistic
	LowerLoss                    // lower loss penalty
	LowerCost                    // lower configured backbone cost
	BackboneFailed               // the selected backbone failed: moved at once, ignoring hysteresis and hold-down
	CommitExceeded               // shed from a backbone running above its commit, to one at most CommitWinMs worse
	ResetToDefault               // back to the default, unmeasured: its evacuation is over, or the override went stale
	Displaced                    // back to the default to free an override slot for a larger win elsewhere
	Pinned                       // an operator pinned the prefix to a backbone (the API)
	Unpinned                     // an operator unpinned it: back to the default and to the optimizer
	Returned                     // back to the backbone it was evacuated from, which recovered and has no score for it
	NumReasons
)

var reasonNames = [NumReasons]string{
	BetterRTT:      "better-rtt",
	LowerLoss:      "lower-loss",
	LowerCost:      "lower-cost",
	BackboneFailed: "backbone-failed",
	CommitExceeded: "commit-exceeded",
	ResetToDefault: "reset-to-default",
	Displaced:      "displaced",
	Pinned:         "pinned",
	Unpinned:       "unpinned",
	Returned:       "returned",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// MarshalText writes the reason's name, for JSON status output.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Choice is one side of a decision: a backbone and what was known of it
// for the prefix at the time.
type Choice struct {
	Backbone fib.BackboneID
	Name     string
	// Measured is false when the backbone had fewer than MinSamples
	// samples for the prefix (or none); the numbers below are then only
	// what was there.
	Measured bool
	Score    float64       // milliseconds: RTT statistic + loss penalty + cost
	RTT      time.Duration // the configured statistic (p50 or min)
	Loss     float64       // 0..1
	Samples  uint64        // RTT samples plus lost ones
}

// Event is one selection change the optimizer made.
type Event struct {
	Time     time.Time
	Prefix   netip.Prefix
	From, To Choice
	Reason   Reason
}

func (e Event) String() string {
	score := func(c Choice) string {
		if !c.Measured {
			return "unmeasured"
		}
		return fmt.Sprintf("%.1fms", c.Score)
	}
	return fmt.Sprintf("%s %v %s->%s %s (%s -> %s)", e.Time.Format(time.RFC3339), e.Prefix,
		e.From.Name, e.To.Name, e.Reason, score(e.From), score(e.To))
}

// eventRing keeps the newest events in a fixed slice: a burst of moves (a
// failed backbone's whole table) overwrites old events instead of growing
// memory.
type eventRing struct {
	buf  []Event
	next int // where the next event goes
	full bool
}

func (r *eventRing) push(e Event) {
	if len(r.buf) == 0 {
		return
	}
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

func (r *eventRing) len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// newest returns up to n of the newest events, oldest first.
func (r *eventRing) newest(n int) []Event {
	n = min(n, r.len())
	if n <= 0 {
		return nil
	}
	out := make([]Event, n)
	start := r.next - n
	if start >= 0 {
		copy(out, r.buf[start:r.next])
		return out
	}
	k := copy(out, r.buf[len(r.buf)+start:])
	copy(out[k:], r.buf[:r.next])
	return out
}

// Counters are the optimizer's running totals since New, for metrics.
type Counters struct {
	Steps uint64
	Moves [NumReasons]uint64 // by reason
	// Failures counts backbones newly marked failed.
	Failures uint64
	// Gone counts prefixes found in the snapshot or in a sweep that were
	// withdrawn before they could be moved; NotHeld counts swaps refused
	// because the target withdrew its route meanwhile; SwapErrors any
	// other refusal.
	Gone, NotHeld, SwapErrors uint64
	// Moves not made because the target would run above its commit
	// (without a large enough win), above its capacity, or because
	// MaxOverrides was reached and no smaller override could make room.
	BlockedCommit, BlockedCapacity, BlockedCap uint64
	// Stranded counts prefixes left on a failed backbone because no other
	// backbone holds a route for them (once per prefix per Step).
	Stranded uint64
}

func (c *Counters) add(d *Counters) {
	c.Steps += d.Steps
	for i := range c.Moves {
		c.Moves[i] += d.Moves[i]
	}
	c.Failures += d.Failures
	c.Gone += d.Gone
	c.NotHeld += d.NotHeld
	c.SwapErrors += d.SwapErrors
	c.BlockedCommit += d.BlockedCommit
	c.BlockedCapacity += d.BlockedCapacity
	c.BlockedCap += d.BlockedCap
	c.Stranded += d.Stranded
}
