package optimizer

import (
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/pnap-project/pnap/internal/setting"
)

// Options configure an Optimizer. The first fields are the [optimizer]
// settings of pnapd's configuration file, named after their keys, then the
// backbones' parameters; the rest are not in the file. Start from
// DefaultOptions: the zero value is not valid.
type Options struct {
	// Interval is how often Run steps (interval).
	Interval time.Duration
	// Statistic summarises a backbone's RTT samples for a prefix
	// (statistic).
	Statistic Statistic
	// LossPenaltyMs is milliseconds added to a score per percentage point
	// of loss (loss_penalty_ms).
	LossPenaltyMs float64
	// A prefix moves only when the new backbone is better by both
	// MinImprovementMs (min_improvement_ms) and MinImprovementPct percent
	// (min_improvement_pct) of the current score. The percentage is below
	// 100: no backbone can be 100 % faster than another, so nothing would
	// ever move.
	MinImprovementMs  float64
	MinImprovementPct float64
	// MinSamples is how many samples a backbone needs for a prefix before
	// its score counts (min_samples): 1 or more.
	MinSamples int
	// HoldDown is the least time between two moves of one prefix
	// (hold_down).
	HoldDown time.Duration
	// MaxOverrides bounds the prefixes routed away from their default
	// (max_overrides): 1 or more.
	MaxOverrides int
	// FailureHold is how long a failed backbone stays excluded after the
	// last Step that saw it failing (failure_hold), when it keeps failing:
	// a first failure holds it not at all, a second soon after half of
	// that (see strike).
	FailureHold time.Duration
	// Backbones are the [[backbone]] parameters, matched to the FIB's
	// backbones by name; a FIB backbone not among them has no cost and
	// no limits.
	Backbones []Backbone

	// Now is the clock Run passes to Step and pins are stamped with.
	Now func() time.Time
	// RateWindow is how many rate samples (one per Step) the 95th
	// percentile of a backbone's rate is taken over.
	RateWindow int
	// MeanPacketBytes converts a prefix's packets per second
	// (PrefixStats.Traffic) into bits per second for the commit and
	// capacity checks.
	MeanPacketBytes float64
	// CommitWinMs is the win, in ms of score, that justifies moving a
	// prefix onto a backbone that would then run above its commit, and
	// the most a prefix may lose when shed from a backbone above its
	// commit.
	CommitWinMs float64
	// A backbone fails when, over the store's window, at least
	// FailMinProbes probes were sent and at least FailLoss (0 to 1) of
	// them were lost, or when a whole round of at least FailRoundMin
	// probes was lost (RoundSource).
	FailLoss      float64
	FailMinProbes uint64
	FailRoundMin  uint64
	// StaleAfter is how long an override may go without measurements
	// (its prefix left the snapshot) before it returns to the default,
	// so that overrides nobody measures do not hold MaxOverrides slots
	// forever.
	StaleAfter time.Duration
	// Events is how many events are kept.
	Events int
	// Log, if set, gets a line for every selection change with the numbers
	// behind it (an evacuation: one line per failed backbone and Step,
	// not one per prefix), and for every backbone failure and recovery.
	Log *slog.Logger
}

// Statistic is how a backbone's RTT samples for a prefix are summarised.
type Statistic string

// The statistics.
const (
	StatisticP50 Statistic = "p50" // median: robust to outliers
	StatisticMin Statistic = "min" // minimum: closest to the path's propagation delay
)

// Backbone is one backbone's parameters. The zero values mean no cost, no
// commit and an unknown capacity.
type Backbone struct {
	Name string
	// Cost is milliseconds added to the backbone's score (cost).
	Cost float64
	// CommitMbps is the committed rate (commit_mbps); 0 for none.
	CommitMbps float64
	// CapacityMbps is the link's capacity (capacity_mbps); 0 when
	// unknown, else at least CommitMbps.
	CapacityMbps float64
}

// DefaultOptions are the defaults of every setting, those the
// configuration file leaves out included. Backbones is empty.
func DefaultOptions() Options {
	return Options{
		Interval:          time.Second,
		Statistic:         StatisticP50,
		LossPenaltyMs:     100,
		MinImprovementMs:  5,
		MinImprovementPct: 10,
		MinSamples:        6,
		HoldDown:          60 * time.Second,
		MaxOverrides:      10000,
		FailureHold:       30 * time.Second,

		Now: time.Now,
		// Five minutes at the default one-second interval.
		RateWindow: 300,
		// Above the simple-IMIX mean (340 bytes) and near the
		// large-packet-dominated mix transit carries toward eyeballs, so a
		// move's load is overestimated rather than under: the checks err
		// on the side of not moving.
		MeanPacketBytes: 1000,
		// A path that much better (a continent's detour) is worth burst
		// pricing; ordinary differences between transits in one metro are
		// a few ms and are not.
		CommitWinMs: 50,
		// At a 10 % baseline loss, 10 or more lost of 20 has probability
		// 7e-6 and 10 of 10 1e-10, so a noisy but working backbone is not
		// failed.
		FailLoss:      0.5,
		FailMinProbes: 20,
		FailRoundMin:  10,
		StaleAfter:    10 * time.Minute,
		Events:        10000,
	}
}

// Validate checks every setting. A wrong one comes back as a
// *setting.Error naming its key; a backbone's, wrapped in its name.
func (o Options) Validate() error {
	for _, b := range o.Backbones {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("backbone %q: %w", b.Name, err)
		}
	}
	var statistic, pct, clock, failLoss, failCounts error
	if o.Statistic != StatisticP50 && o.Statistic != StatisticMin {
		statistic = setting.Errorf("statistic", "statistic = %q is not allowed; use one of %q, %q", o.Statistic, StatisticP50, StatisticMin)
	}
	if o.MinImprovementPct >= 100 {
		pct = setting.Errorf("min_improvement_pct", "min_improvement_pct = %v would never be met; use less than 100", o.MinImprovementPct)
	}
	if o.Now == nil {
		clock = setting.Errorf("Now", "Now is nil; use time.Now")
	}
	if !(o.FailLoss > 0 && o.FailLoss <= 1) {
		failLoss = setting.Errorf("FailLoss", "FailLoss = %v is out of range; use more than 0, at most 1", o.FailLoss)
	}
	if o.FailMinProbes == 0 || o.FailRoundMin == 0 {
		failCounts = setting.Errorf("FailMinProbes", "FailMinProbes and FailRoundMin must be 1 or more")
	}
	return setting.First(
		setting.Positive("interval", o.Interval),
		statistic,
		setting.Number("loss_penalty_ms", o.LossPenaltyMs),
		setting.Number("min_improvement_ms", o.MinImprovementMs),
		setting.Number("min_improvement_pct", o.MinImprovementPct),
		pct,
		setting.Int("min_samples", o.MinSamples, 1, math.MaxInt),
		setting.Positive("hold_down", o.HoldDown),
		setting.Int("max_overrides", o.MaxOverrides, 1, math.MaxInt),
		setting.Positive("failure_hold", o.FailureHold),
		clock,
		setting.Int("RateWindow", o.RateWindow, 1, math.MaxInt),
		positiveNumber("MeanPacketBytes", o.MeanPacketBytes),
		setting.Number("CommitWinMs", o.CommitWinMs),
		failLoss,
		failCounts,
		setting.Positive("StaleAfter", o.StaleAfter),
		setting.Int("Events", o.Events, 0, math.MaxInt),
	)
}

// Validate checks the backbone's parameters; a wrong one comes back as a
// *setting.Error naming its key. Whether the name is a FIB backbone is
// New's and SetBackbones' to check.
func (b Backbone) Validate() error {
	if err := setting.First(
		setting.Number("cost", b.Cost),
		setting.Number("commit_mbps", b.CommitMbps),
		setting.Number("capacity_mbps", b.CapacityMbps),
	); err != nil {
		return err
	}
	if b.CommitMbps > 0 && b.CapacityMbps > 0 && b.CommitMbps > b.CapacityMbps {
		return setting.Errorf("commit_mbps", "commit_mbps = %v is more than capacity_mbps = %v; lower the commit or fix the capacity", b.CommitMbps, b.CapacityMbps)
	}
	return nil
}

// positiveNumber checks that key's value x is a finite number above 0.
func positiveNumber(key string, x float64) error {
	if x > 0 && !math.IsInf(x, 1) {
		return nil
	}
	return setting.Errorf(key, "%s = %v is out of range; use a number above 0", key, x)
}
