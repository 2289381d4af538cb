package fib

import (
	"net/netip"
	"testing"

	"github.com/gaissmai/bart"
	"github.com/pnap-project/pnap/internal/shareddata"
)

// TestFullTablesAgainstBart compares ≥1M random lookups per family on the
// real full tables with gaissmai/bart as the oracle.
func TestFullTablesAgainstBart(t *testing.T) {
	if testing.Short() {
		t.Skip("full tables: not in -short")
	}
	for _, tc := range []struct{ name, file string }{
		{"ipv4", shareddata.IPv4Full},
		{"ipv6", shareddata.IPv6Full},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := loadTable(t, tc.file)
			f := buildFIB(t, 1, rs)
			var oracle bart.Table[netip.Prefix]
			for _, r := range rs {
				oracle.Insert(r.Prefix, r.Prefix)
			}
			st := f.Stats()
			if got := st.IPv4Routes + st.IPv6Routes; got != len(rs) {
				t.Fatalf("FIB holds %d routes, file has %d", got, len(rs))
			}
			v := f.Load()
			addrs := probeAddrs(rs, 1<<20, 1)
			misses := 0
			for _, a := range addrs {
				want, wok := oracle.Lookup(a)
				e, ok := v.Lookup(a)
				if ok != wok {
					t.Fatalf("lookup %v: found=%v, bart found=%v (%v)", a, ok, wok, want)
				}
				if !ok {
					misses++
					continue
				}
				if got := f.Prefix(e.Route); got != want {
					t.Fatalf("lookup %v: got %v, bart says %v", a, got, want)
				}
			}
			if misses > len(addrs)/4 {
				t.Fatalf("%d of %d probe addresses matched nothing: the probes do not exercise the table", misses, len(addrs))
			}
			t.Logf("%d lookups agree with bart (%d without a route); trie %d bytes for %d routes", len(addrs), misses, st.TrieBytes, len(rs))
		})
	}
}
