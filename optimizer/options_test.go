package optimizer

import (
	"math"
	"testing"

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
