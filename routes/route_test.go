package routes

import (
	"net/netip"
	"testing"
)

// PathLens yields the routes in order, a missing path as -1, and stops when
// the consumer does.
func TestPathLens(t *testing.T) {
	rs := []Route{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PathLen: 3},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), PathLen: -1},
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), PathLen: 0},
	}
	i := 0
	for p, n := range PathLens(rs) {
		if p != rs[i].Prefix || n != rs[i].PathLen {
			t.Fatalf("pair %d = %v %d, want %v %d", i, p, n, rs[i].Prefix, rs[i].PathLen)
		}
		i++
	}
	if i != len(rs) {
		t.Fatalf("%d pairs, want %d", i, len(rs))
	}
	i = 0
	for range PathLens(rs) {
		i++
		if i == 2 {
			break
		}
	}
	if i != 2 {
		t.Fatalf("loop ran %d times after break at 2", i)
	}
}
