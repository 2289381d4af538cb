package fib

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gaissmai/bart"
	"github.com/pnap-project/pnap/internal/shareddata"
)

// The benchmarks here run side by side with gaissmai/bart on the shared full
// tables; bench_report_test.go prints one table of ratios at the end.

const probeCount = 1 << 21 // 2M distinct addresses: far more than any cache holds

func familyFile(fam string) string {
	if fam == "ipv4" {
		return shareddata.IPv4Full
	}
	return shareddata.IPv6Full
}

// BenchmarkLookup times 2M random lookups per round, pnap then bart.Fast then
// bart.Table, for several rounds, and reports the median of each and the
// median of the per-round ratios: on a shared VM the speed of memory drifts
// between runs, and interleaving keeps the comparison within one moment.
func BenchmarkLookup(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		rs := loadTable(b, familyFile(fam))
		addrs := probeAddrs(rs, probeCount, 2)
		var dsts4 []uint32
		var dsts6 [][2]uint64
		for _, a := range addrs {
			if a.Is4() {
				x := a.As4()
				dsts4 = append(dsts4, uint32(x[0])<<24|uint32(x[1])<<16|uint32(x[2])<<8|uint32(x[3]))
			} else {
				x := a.As16()
				dsts6 = append(dsts6, [2]uint64{binary.BigEndian.Uint64(x[:8]), binary.BigEndian.Uint64(x[8:])})
			}
		}
		f := buildFIB(b, 1, rs)
		var fast bart.Fast[uint32]
		var table bart.Table[uint32]
		for i, r := range rs {
			fast.Insert(r.Prefix, uint32(i))
			table.Insert(r.Prefix, uint32(i))
		}
		contenders := []struct {
			name string
			run  func() uint32
		}{
			{"pnap", func() uint32 {
				v := f.Load()
				var sink uint32
				for _, a := range addrs {
					_, bb, _ := v.Forward(a)
					sink += uint32(bb)
				}
				return sink
			}},
			{"pnap-batch", func() uint32 {
				v := f.Load()
				var routes [64]RouteID
				var bbs [64]BackboneID
				var sink uint32
				for k := 0; k+64 <= len(dsts4); k += 64 {
					v.Forward4Batch(dsts4[k:k+64], routes[:], bbs[:])
					sink += uint32(bbs[0])
				}
				for k := 0; k+64 <= len(dsts6); k += 64 {
					v.Forward6Batch(dsts6[k:k+64], routes[:], bbs[:])
					sink += uint32(bbs[0])
				}
				return sink
			}},
			{"bart.Fast", func() uint32 {
				var sink uint32
				for _, a := range addrs {
					x, _ := fast.Lookup(a)
					sink += x
				}
				return sink
			}},
			{"bart.Table", func() uint32 {
				var sink uint32
				for _, a := range addrs {
					x, _ := table.Lookup(a)
					sink += x
				}
				return sink
			}},
		}
		b.Run(fam, func(b *testing.B) {
			rounds := max(b.N, 5)
			ns := make([][]float64, len(contenders))
			for r := 0; r < rounds; r++ {
				for c, ct := range contenders {
					start := time.Now()
					ct.run()
					ns[c] = append(ns[c], float64(time.Since(start).Nanoseconds())/float64(len(addrs)))
				}
			}
			for c, ct := range contenders {
				med := median(ns[c])
				b.ReportMetric(med, ct.name+"-ns/lookup")
				recordValue("lookup "+fam, ct.name, med, "ns/op")
			}
			ratios := make([]float64, rounds)
			for r := range ratios {
				ratios[r] = ns[0][r] / ns[2][r]
			}
			b.ReportMetric(median(ratios), "pnap/bart.Fast")
			allocs := testing.AllocsPerRun(10, func() { f.Load().Forward(addrs[0]) })
			b.ReportMetric(allocs, "allocs/lookup")
		})
	}
}

func median(x []float64) float64 {
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemory reports bytes per route; its ns/op is meaningless.
//   - forwarding: what a lookup can touch: for pnap the trie and the
//     selection bytes; for bart its whole table;
//   - whole FIB heap: pnap's heap including the writer's control plane, with
//     MaxRoutes sized to the table (the default reserves 4M routes' state);
//   - per backbone: what one more backbone holding the same table adds.
func BenchmarkMemory(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		rs := loadTable(b, familyFile(fam))
		b.Run(fam, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				n := float64(len(rs))
				build := func(backbones int) (*FIB, float64) {
					h0 := heapAlloc()
					f := buildFIBWith(b, Options{MaxRoutes: len(rs) + 1024}, backbones, rs)
					return f, float64(heapAlloc() - h0)
				}
				f, one := build(1)
				st := f.Stats()
				fwd := float64(st.TrieBytes+st.SelectionBytes) / n
				f = nil
				f, two := build(2)
				runtime.KeepAlive(f)
				f = nil
				h0 := heapAlloc()
				var bt bart.Table[uint32]
				for i, r := range rs {
					bt.Insert(r.Prefix, uint32(i))
				}
				bartTable := float64(heapAlloc()-h0) / n
				runtime.KeepAlive(&bt)
				h0 = heapAlloc()
				var bf bart.Fast[uint32]
				for i, r := range rs {
					bf.Insert(r.Prefix, uint32(i))
				}
				bartFast := float64(heapAlloc()-h0) / n
				runtime.KeepAlive(&bf)
				b.ReportMetric(fwd, "fwd-B/route")
				b.ReportMetric(one/n, "heap-B/route")
				b.ReportMetric((two-one)/n, "backbone-B/route")
				recordValue("bytes/route "+fam+" forwarding", "pnap", fwd, "B")
				recordValue("bytes/route "+fam+" forwarding", "bart.Fast", bartFast, "B")
				recordValue("bytes/route "+fam+" forwarding", "bart.Table", bartTable, "B")
				recordValue("bytes/route "+fam+" whole FIB heap", "pnap", one/n, "B")
				recordValue("bytes/route "+fam+" whole FIB heap", "bart.Table", bartTable, "B")
				recordValue("bytes/route "+fam+" per backbone", "pnap", (two-one)/n, "B")
				recordValue("bytes/route "+fam+" per backbone", "bart.Table", bartTable, "B")
			}
		})
	}
}

// BenchmarkSelect measures selection changes per second on the full IPv4
// table (every route held by two backbones, changes spread over 64k routes)
// while readers look up continuously: one reader per CPU (the writer then
// shares a CPU with a reader), and one reader per CPU but one (the writer
// has a CPU of its own, as the optimizer would on a real appliance).
func BenchmarkSelect(b *testing.B) {
	rs := loadTable(b, shareddata.IPv4Full)
	f := buildFIB(b, 2, rs)
	ids := make([]RouteID, 0, 1<<16)
	for i := 0; i < cap(ids); i++ {
		e, ok := f.Route(rs[(i*7919)%len(rs)].Prefix)
		if !ok {
			b.Fatal("route missing")
		}
		ids = append(ids, e.Route)
	}
	addrs := probeAddrs(rs, 1<<20, 3)
	for _, readers := range []int{runtime.NumCPU(), runtime.NumCPU() - 1} {
		if readers < 1 {
			continue
		}
		b.Run(fmt.Sprintf("readers=%d", readers), func(b *testing.B) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var lookups atomic.Int64
			for r := 0; r < readers; r++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					n := 0
					for {
						v := f.Load()
						for _, a := range addrs[n&(len(addrs)-1) : n&(len(addrs)-1)+4096] {
							v.Forward(a)
						}
						n += 4096
						select {
						case <-stop:
							lookups.Add(int64(n))
							return
						default:
						}
					}
				}()
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := f.SelectRoute(ids[i&(len(ids)-1)], BackboneID(i>>16&1)); err != nil {
					b.Fatal(err)
				}
			}
			el := b.Elapsed()
			close(stop)
			wg.Wait()
			rate := float64(b.N) / el.Seconds()
			b.ReportMetric(rate, "selections/s")
			b.ReportMetric(float64(lookups.Load())/el.Seconds(), "lookups/s")
			recordValue(fmt.Sprintf("selection changes, %d readers", readers), "pnap", rate, "1/s")
		})
	}
}

// BenchmarkRouteChurn withdraws routes of the full IPv4 table completely and
// adds them back: one change and one published Version per operation
// (batch=1), or 1000 changes per Version (batch=1000).
func BenchmarkRouteChurn(b *testing.B) {
	rs := loadTable(b, shareddata.IPv4Full)
	for _, batch := range []int{1, 1000} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			f := buildFIB(b, 1, rs)
			rng := rand.New(rand.NewPCG(5, 5))
			var out []int // routes withdrawn, to add back
			change := func(tx *Txn) error {
				if len(out) == 0 || len(out) < 512 && rng.IntN(2) == 0 {
					k := rng.IntN(len(rs))
					ok, err := tx.Withdraw(0, rs[k].Prefix)
					if ok {
						out = append(out, k)
					}
					return err
				}
				k := out[len(out)-1]
				out = out[:len(out)-1]
				return tx.Add(0, rs[k].Prefix, rs[k].PathLen)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				err := f.Update(func(tx *Txn) error {
					for j := 0; j < batch && i+j < b.N; j++ {
						if err := change(tx); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "changes/s")
			recordValue(fmt.Sprintf("route add|withdraw, batch %d", batch), "pnap", rate, "1/s")
		})
	}
}

// BenchmarkLoad builds a FIB of 4 backbones each holding the full IPv4 and
// IPv6 tables, from parsed routes (file parsing is measured in routes).
func BenchmarkLoad(b *testing.B) {
	v4 := loadTable(b, shareddata.IPv4Full)
	v6 := loadTable(b, shareddata.IPv6Full)
	h0 := heapAlloc()
	b.ResetTimer()
	var f *FIB
	for i := 0; i < b.N; i++ {
		f = nil
		f = buildFIB(b, 4, v4, v6)
	}
	b.StopTimer()
	heap := float64(heapAlloc()-h0) / (1 << 20)
	runtime.KeepAlive(f)
	b.ReportMetric(heap, "heap-MiB")
	b.ReportMetric(rssMiB(), "RSS-MiB")
	recordValue("load 4×(full v4+v6)", "pnap", b.Elapsed().Seconds()/float64(b.N), "s")
}

// rssMiB is the process's resident set from /proc/self/status.
func rssMiB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb float64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%f", &kb)
			return kb / 1024
		}
	}
	return 0
}
