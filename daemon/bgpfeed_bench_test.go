package daemon

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
	"github.com/pnap-project/pnap/routes/bgp"
)

// BenchmarkFeedFullTables is what pnapd does with 4 full feeds once the
// sessions have decoded them (bench/bgpbench measures the whole daemon):
// the full IPv4 and IPv6 tables reach 4 backbones' feeds as BIRD sends
// them, in its FIB's hash order (effectively random) and about 1,000
// prefixes per UPDATE, the 4 feeds interleaved UPDATE by UPDATE as 4
// sessions' goroutines are, into a FIB of 5 backbones. One op is the whole
// load; it reports routes/s and the heap the FIB is left with.
func BenchmarkFeedFullTables(b *testing.B) {
	var table []netip.Prefix
	for _, name := range []string{shareddata.IPv4Full, shareddata.IPv6Full} {
		rs, err := routes.ReadPrefixFile(shareddata.File(b, name))
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rs {
			table = append(table, r.Prefix)
		}
	}
	rand.New(rand.NewPCG(12, 12)).Shuffle(len(table), func(i, j int) { table[i], table[j] = table[j], table[i] })
	nh4, nh6 := netip.MustParseAddr("198.18.100.1"), netip.MustParseAddr("2001:2:0:100::1")
	var updates [][]bgp.Change
	const perUpdate = 1000
	for i := 0; i < len(table); i += perUpdate {
		var u []bgp.Change
		for _, p := range table[i:min(i+perUpdate, len(table))] {
			nh := nh4
			if p.Addr().Is6() {
				nh = nh6
			}
			u = append(u, bgp.Change{Prefix: p, PathLen: 1, NextHop: nh})
		}
		updates = append(updates, u)
	}
	const feeds = 4
	var heap float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		var bbs []fib.Backbone
		for i := range feeds + 1 {
			bbs = append(bbs, fib.Backbone{Name: fmt.Sprintf("bb-%d", i), Preference: i})
		}
		f, err := fib.New(bbs, fib.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var fs []*bgpFeed
		for i := range feeds {
			fs = append(fs, &bgpFeed{fib: f, b: fib.BackboneID(i), log: slog.New(slog.DiscardHandler),
				peer:   bgpPeerPlan{Policy: importPolicy{AllowDefault: true, AllowMartians: true, MaxLen4: 32, MaxLen6: 128}},
				onLink: []netip.Prefix{netip.PrefixFrom(nh4, 32), netip.PrefixFrom(nh6, 128)}})
		}
		b.StartTimer()
		for _, u := range updates {
			for _, fd := range fs {
				fd.changes(u)
			}
		}
		for _, fd := range fs {
			fd.flush()
		}
		b.StopTimer()
		for _, fd := range fs {
			if st := fd.stats(); st.Held[0]+st.Held[1] != len(table) {
				b.Fatalf("feed holds %d of %d routes", st.Held[0]+st.Held[1], len(table))
			}
		}
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		heap = float64(m.HeapAlloc) / (1 << 20)
		runtime.KeepAlive(f)
		b.StartTimer()
	}
	b.ReportMetric(float64(feeds*len(table)*b.N)/b.Elapsed().Seconds(), "routes/s")
	b.ReportMetric(heap, "heap-MiB")
}
