package daemon

import (
	"slices"
	"testing"
)

// The watchdog is fed only while every worker's round count moves.
func TestStuckLoops(t *testing.T) {
	for _, c := range []struct {
		before, now []uint64
		stuck       []int
	}{
		{nil, []uint64{5, 9}, nil},                 // first reading
		{[]uint64{5, 9}, []uint64{6, 10}, nil},     // both ran
		{[]uint64{5, 9}, []uint64{6, 9}, []int{1}}, // queue 1 stuck
		{[]uint64{5, 9}, []uint64{5, 9}, []int{0, 1}},
	} {
		if got := stuckLoops(c.before, c.now); !slices.Equal(got, c.stuck) {
			t.Errorf("stuckLoops(%v, %v) = %v, want %v", c.before, c.now, got, c.stuck)
		}
	}
}
