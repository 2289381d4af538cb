package fib

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
)

// fullTables caches the shared full tables across tests and benchmarks.
var fullTables struct {
	sync.Mutex
	m map[string][]routes.Route
}

func loadTable(tb testing.TB, name string) []routes.Route {
	tb.Helper()
	path := shareddata.File(tb, name)
	fullTables.Lock()
	defer fullTables.Unlock()
	if r, ok := fullTables.m[name]; ok {
		return r
	}
	r, err := routes.ReadPrefixFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if fullTables.m == nil {
		fullTables.m = map[string][]routes.Route{}
	}
	fullTables.m[name] = r
	return r
}

// probeAddrs draws n addresses over the whole table: each inside a random
// prefix with random host bits, so every part of the table is exercised
// and consecutive lookups share no cache lines.
func probeAddrs(rs []routes.Route, n int, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, 99))
	out := make([]netip.Addr, n)
	for i := range out {
		p := rs[rng.IntN(len(rs))].Prefix
		b := p.Addr().AsSlice()
		for k := p.Bits(); k < len(b)*8; k++ {
			if rng.IntN(2) == 1 {
				b[k/8] |= 1 << (7 - k%8)
			}
		}
		// One in eight addresses is uniformly random, to hit the gaps too.
		if rng.IntN(8) == 0 {
			for k := range b {
				b[k] = byte(rng.Uint32())
			}
		}
		out[i], _ = netip.AddrFromSlice(b)
	}
	return out
}

// buildFIB gives every backbone every route of the tables, in one Update.
func buildFIB(tb testing.TB, nBackbones int, tables ...[]routes.Route) *FIB {
	tb.Helper()
	return buildFIBWith(tb, Options{}, nBackbones, tables...)
}

// buildFIBWith is buildFIB with options other than the defaults.
func buildFIBWith(tb testing.TB, opts Options, nBackbones int, tables ...[]routes.Route) *FIB {
	tb.Helper()
	f, err := New(testBackbones(nBackbones), opts)
	if err != nil {
		tb.Fatal(err)
	}
	err = f.Update(func(tx *Txn) error {
		for b := 0; b < nBackbones; b++ {
			for _, rs := range tables {
				for _, r := range rs {
					if err := tx.Add(BackboneID(b), r.Prefix, r.PathLen); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}
