package setting

import (
	"errors"
	"math"
	"slices"
	"testing"
	"time"
)

func TestChecks(t *testing.T) {
	tests := []struct {
		err  error
		want string // "" for no error
	}{
		{Int("top_prefixes", 1, 1, 10), ""},
		{Int("top_prefixes", 0, 1, 10), "top_prefixes = 0 is out of range; use 1 to 10"},
		{Int("min_samples", 0, 1, math.MaxInt), "min_samples = 0 is out of range; use 1 or more"},
		{PowerOfTwo("sample_ring", 1024, 16, 1<<24), ""},
		{PowerOfTwo("sample_ring", 1000, 16, 1<<24), "sample_ring = 1000 is not a power of two; use 512 or 1024"},
		{PowerOfTwo("sample_ring", 8, 16, 1<<24), "sample_ring = 8 is out of range; use 16 to 16777216"},
		{Number("cost", 0), ""},
		{Number("cost", -1), "cost = -1 is out of range; use a number of 0 or more"},
		{Number("loss_penalty_ms", math.NaN()), "loss_penalty_ms = NaN is out of range; use a number of 0 or more"},
		{Number("cost", math.Inf(1)), "cost = +Inf is out of range; use a number of 0 or more"},
		{Positive("interval", time.Second), ""},
		{Positive("interval", 0), `interval = "0s" is not positive; use a duration greater than zero`},
	}
	for _, tt := range tests {
		got := ""
		if tt.err != nil {
			got = tt.err.Error()
		}
		if got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}

func TestFirstKeepsKeys(t *testing.T) {
	err := First(nil, Int("a", 0, 1, 2), Int("b", 0, 1, 2))
	var e *Error
	if !errors.As(err, &e) || !slices.Equal(e.Keys, []string{"a"}) {
		t.Fatalf("First = %#v, want the error about a", err)
	}
	if First(nil, nil) != nil {
		t.Fatal("First of nils is not nil")
	}
}
