package optimizer

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/pnap-project/pnap/internal/setting"
)

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		set  func(o *Options)
		keys []string
		msg  string
	}{
		{func(o *Options) { o.Statistic = "mean" }, []string{"statistic"}, `statistic = "mean" is not allowed; use one of "p50", "min"`},
		{func(o *Options) { o.LossPenaltyMs = math.NaN() }, []string{"loss_penalty_ms"}, "loss_penalty_ms = NaN is out of range"},
		{func(o *Options) { o.MinImprovementPct = 100 }, []string{"min_improvement_pct"}, "min_improvement_pct = 100 would never be met; use less than 100"},
		{func(o *Options) { o.MinSamples = 0 }, []string{"min_samples"}, "min_samples = 0 is out of range; use 1 or more"},
		{func(o *Options) { o.MaxOverrides = 0 }, []string{"max_overrides"}, "max_overrides = 0 is out of range"},
		{func(o *Options) { o.FailLoss = 0 }, []string{"FailLoss"}, "FailLoss = 0 is out of range"},
		{func(o *Options) { o.Backbones = []Backbone{{Name: "uunet", Cost: -1}} }, []string{"cost"}, `backbone "uunet": cost = -1 is out of range; use a number of 0 or more`},
		{func(o *Options) { o.Backbones = []Backbone{{Name: "uunet", CommitMbps: 2000, CapacityMbps: 1000}} }, []string{"commit_mbps"},
			`backbone "uunet": commit_mbps = 2000 is more than capacity_mbps = 1000`},
	}
	for _, tt := range tests {
		o := DefaultOptions()
		tt.set(&o)
		err := o.Validate()
		var e *setting.Error
		if !errors.As(err, &e) || !slices.Equal(e.Keys, tt.keys) || !strings.HasPrefix(err.Error(), tt.msg) {
			t.Errorf("got %v, want keys %q and %q", err, tt.keys, tt.msg)
		}
	}
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
