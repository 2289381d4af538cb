package fib

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/pnap-project/pnap/internal/shareddata"
)

// batchSetup builds a FIB of two backbones that both hold the table in
// file, every third route selected via backbone 1, and draws the addresses
// to look up.
func batchSetup(t *testing.T, file string) (*FIB, []netip.Addr) {
	t.Helper()
	rs := loadTable(t, file)
	f := buildFIB(t, 2, rs)
	for i := 0; i < len(rs); i += 3 {
		if err := f.Select(rs[i].Prefix, 1); err != nil {
			t.Fatal(err)
		}
	}
	return f, probeAddrs(rs, 100000, 9)
}

func TestForward4BatchMatchesForward(t *testing.T) {
	f, addrs := batchSetup(t, shareddata.IPv4Full)
	var dsts []uint32
	for _, a := range addrs {
		if a.Is4() {
			b := a.As4()
			dsts = append(dsts, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
		}
	}
	v := f.Load()
	routes := make([]RouteID, len(dsts))
	bbs := make([]BackboneID, len(dsts))
	v.Forward4Batch(dsts, routes, bbs)
	for i, d := range dsts {
		r, b, ok := v.Forward4(d)
		if routes[i] != r || ok && bbs[i] != b {
			t.Fatalf("%v: batch (%d,%d), single (%d,%d,%v)", netip.AddrFrom4([4]byte{byte(d >> 24), byte(d >> 16), byte(d >> 8), byte(d)}), routes[i], bbs[i], r, b, ok)
		}
	}
	if allocs := testing.AllocsPerRun(10, func() { v.Forward4Batch(dsts[:200], routes, bbs) }); allocs != 0 {
		t.Fatalf("Forward4Batch allocates %.1f times", allocs)
	}
}

func TestForward6BatchMatchesForward(t *testing.T) {
	f, addrs := batchSetup(t, shareddata.IPv6Full)
	var dsts [][2]uint64
	for _, a := range addrs {
		b := a.As16()
		dsts = append(dsts, [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])})
	}
	v := f.Load()
	routes := make([]RouteID, len(dsts))
	bbs := make([]BackboneID, len(dsts))
	v.Forward6Batch(dsts, routes, bbs)
	for i, d := range dsts {
		r, b, ok := v.Forward6(d[0], d[1])
		if routes[i] != r || ok && bbs[i] != b {
			t.Fatalf("%x: batch (%d,%d), single (%d,%d,%v)", d, routes[i], bbs[i], r, b, ok)
		}
	}
	if allocs := testing.AllocsPerRun(10, func() { v.Forward6Batch(dsts[:200], routes, bbs) }); allocs != 0 {
		t.Fatalf("Forward6Batch allocates %.1f times", allocs)
	}
}
