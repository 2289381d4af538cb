package optimizer

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/pnap-project/pnap/internal/setting/settingtest"
)

func TestOptionsValidate(t *testing.T) {
	settingtest.Validate(t, DefaultOptions, []settingtest.Case[Options]{
		{Set: func(o *Options) { o.Statistic = "mean" }, Keys: []string{"statistic"}, Msg: `statistic = "mean" is not allowed; use one of "p50", "min"`},
		{Set: func(o *Options) { o.LossPenaltyMs = math.NaN() }, Keys: []string{"loss_penalty_ms"}, Msg: "loss_penalty_ms = NaN is out of range"},
		{Set: func(o *Options) { o.MinImprovementPct = 100 }, Keys: []string{"min_improvement_pct"}, Msg: "min_improvement_pct = 100 would never be met; use less than 100"},
		{Set: func(o *Options) { o.MinSamples = 0 }, Keys: []string{"min_samples"}, Msg: "min_samples = 0 is out of range; use 1 or more"},
		{Set: func(o *Options) { o.MaxOverrides = 0 }, Keys: []string{"max_overrides"}, Msg: "max_overrides = 0 is out of range"},
		{Set: func(o *Options) { o.FailLoss = 0 }, Keys: []string{"FailLoss"}, Msg: "FailLoss = 0 is out of range"},
		{Set: func(o *Options) { o.Backbones = []Backbone{{Name: "uunet", Cost: -1}} }, Keys: []string{"cost"}, Msg: `backbone "uunet": cost = -1 is out of range; use a number of 0 or more`},
		{Set: func(o *Options) { o.Backbones = []Backbone{{Name: "uunet", CommitMbps: 2000, CapacityMbps: 1000}} }, Keys: []string{"commit_mbps"},
			Msg: `backbone "uunet": commit_mbps = 2000 is more than capacity_mbps = 1000`},
	})
}

func TestSetBackbonesRefusesWrongValues(t *testing.T) {
	r := newRig(t, 1, testOptions())
	if err := r.o.SetBackbones([]Backbone{{Name: "b", Cost: 5}, {Name: "c", CapacityMbps: -1}}); err == nil {
		t.Fatal("a negative capacity was accepted")
	}
	if r.o.bb[bbB].cost != 0 {
		t.Fatal("a refused reload changed b's cost")
	}
}

// SetOptions changes how prefixes are scored and moved from the next Step,
// and Run's interval at once; wrong settings change nothing.
func TestSetOptionsAppliesFromNextStep(t *testing.T) {
	opt := testOptions()
	opt.MinImprovementPct = 30
	r := newRig(t, 1, opt)
	p := pfx(0)
	r.measure(p, 50, 40, 60) // b is 20 % faster than a: not enough at 30 %
	r.stepExpect(time.Second, p, bbA)

	bad := opt
	bad.MinImprovementPct, bad.MinSamples = 10, 0
	if err := r.o.SetOptions(bad); err == nil {
		t.Fatal("min_samples = 0 was accepted")
	}
	r.stepExpect(time.Second, p, bbA)
	sized := opt
	sized.MinImprovementPct, sized.Events = 10, opt.Events+1
	if err := r.o.SetOptions(sized); err == nil {
		t.Fatal("a new event ring size was accepted")
	}
	r.stepExpect(time.Second, p, bbA)

	next := opt
	next.MinImprovementPct = 10
	next.Backbones = []Backbone{{Name: "c", Cost: 7}}
	if err := r.o.SetOptions(next); err != nil {
		t.Fatal(err)
	}
	r.stepExpect(time.Second, p, bbB)
	if r.o.bb[bbC].cost != 7 {
		t.Fatalf("c's cost is %v after SetOptions, want 7", r.o.bb[bbC].cost)
	}
}

// Run takes a new interval at once, not after the old one's next tick.
func TestSetOptionsRetimesRun(t *testing.T) {
	opt := testOptions()
	opt.Interval = time.Hour
	r := newRig(t, 1, opt)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	opt.Interval = 10 * time.Millisecond
	if err := r.o.SetOptions(opt); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.o.Counters().Steps < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d Steps 10 s after the interval went from 1 h to 10 ms", r.o.Counters().Steps)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
