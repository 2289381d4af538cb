package forwarder

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
)

// BenchmarkProcess feeds the worker's batch function 64-byte IPv4 frames
// from memory, as a zero-copy NIC would hand them over: 4 backbones holding
// the full IPv4 table, destinations drawn at random over the table, batches
// of 64. It measures the Go side's own cost per packet: parse, validate,
// lookup, TTL and checksum, MAC rewrite.
func BenchmarkProcess(b *testing.B) {
	rs, pl := benchPlane(b)
	w := NewWorker(pl)
	template := udpFrame(b, "198.18.0.7", "203.0.113.9", frameOpts{ttl: 255, payload: 64 - 42 - 4})
	runProcessBench(b, w, rs, template, 0)
}

// BenchmarkProcessSampling is the cost of in-band sampling: 64 B TCP
// segments (ACKs without options, the "TCP-like" traffic) and
// segments with the timestamp option (which samples do look into, from 1000
// flows that repeat) through the batch function with sampling off and on.
// The two run interleaved, a frame pool each per round, and the medians of
// the rounds are compared: this VM's memory speed drifts more between
// back-to-back benchmarks than sampling costs.
func BenchmarkProcessSampling(b *testing.B) {
	rs, pl := benchPlane(b)
	for _, ts := range []bool{false, true} {
		tsval := uint32(0)
		if ts {
			tsval = 1
		}
		template := tcpFrame(b, "198.18.0.7", "203.0.113.9", 40000, 443, false, true, 1, 1, tsval, 0)
		for len(template) < 60 {
			template = append(template, 0) // Ethernet's minimum: 64 B with the FCS
		}
		template[22] = 255 // TTL; the pool's refill fixes the checksum
		name := fmt.Sprintf("tcp%dB", len(template)+4)
		flows := 0
		if ts {
			// 1000 flows that repeat, as a busy link's do: the per-flow
			// rate limit then holds back all but one timestamp sample per
			// flow per 100 ms.
			name, flows = name+"-timestamps", 1000
		}
		b.Run(name, func(b *testing.B) {
			off, on := NewWorker(pl), NewWorker(pl)
			ring := NewSampleRing(4096)
			on.EnableSampling(SamplerOptions{Ring: ring})
			// A reader keeps the ring from filling, as probes does.
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				buf := make([]Sample, 1024)
				for {
					select {
					case <-stop:
						return
					default:
					}
					if ring.Read(buf) == 0 {
						time.Sleep(100 * time.Microsecond)
					}
				}
			}()
			pool := newFramePool(rs, template, flows)
			var tOff, tOn []float64
			b.ResetTimer()
			for range max(b.N, 11) {
				for _, m := range []struct {
					w *Worker
					t *[]float64
				}{{off, &tOff}, {on, &tOn}} {
					pool.refill()
					*m.t = append(*m.t, pool.run(m.w))
				}
			}
			b.StopTimer()
			requireAllForwarded(b, off)
			requireAllForwarded(b, on)
			sort.Float64s(tOff)
			sort.Float64s(tOn)
			mOff, mOn := tOff[len(tOff)/2], tOn[len(tOn)/2]
			b.ReportMetric(mOff, "ns/pkt-off")
			b.ReportMetric(mOn, "ns/pkt-on")
			b.ReportMetric(mOn/mOff, "on/off")
			if n := ring.Dropped(); n > 0 {
				b.Logf("%d samples dropped (ring full)", n)
			}
		})
	}
}

// benchPlane is the benchmarks' plane: 4 backbones holding the full IPv4
// table, selections spread over all four.
func benchPlane(b testing.TB) ([]routes.Route, *Plane) {
	rs, err := routes.ReadPrefixFile(shareddata.File(b, shareddata.IPv4Full))
	if err != nil {
		b.Fatal(err)
	}
	bbs := make([]fib.Backbone, 4)
	for i := range bbs {
		bbs[i] = fib.Backbone{Name: string(rune('a' + i)), Preference: i}
	}
	bb, err := fib.New(bbs, fib.Options{})
	if err != nil {
		b.Fatal(err)
	}
	err = bb.Update(func(tx *fib.Txn) error {
		for i := range bbs {
			for _, r := range rs {
				if err := tx.Add(fib.BackboneID(i), r.Prefix, r.PathLen); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	pl := testPlane(b)
	pl.Backbones = bb
	pl.Ports = append(pl.Ports, PortInfo{Name: "bb-c", MTU: 1500, Role: RoleBackbone}, PortInfo{Name: "bb-d", MTU: 1500, Role: RoleBackbone})
	h := *pl.CurrentHops()
	for i := 0; i < 4; i++ {
		h.Backbone[i][Fam4] = NextHop{Port: uint8(1 + i), MAC: MAC{2, 0, 0, 0, 0xbb, byte(i)}, Resolved: true}
	}
	pl.SetHops(&h)
	// Spread the selections over all four backbones.
	for i := 0; i < len(rs); i += 4 {
		bb.Select(rs[i].Prefix, fib.BackboneID(i/4%4))
	}
	return rs, pl
}

// runProcessBench feeds w copies of template, each to a random destination
// over the table, in batches of 64 from a 4 MiB frame pool, and fails
// unless every frame was forwarded.
func runProcessBench(b *testing.B, w *Worker, rs []routes.Route, template []byte, flows int) {
	p := newFramePool(rs, template, flows)
	p.refill()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		k := i % len(p.frames)
		if k == 0 && i > 0 {
			// Process rewrote the MACs and TTL in place: restore the frames
			// between passes, as a NIC writes fresh frames into its UMEM
			// (DMA with DDIO leaves them in the last-level cache, as here).
			b.StopTimer()
			p.refill()
			b.StartTimer()
		}
		w.Process(0, p.frames[k:k+64], p.out)
	}
	b.StopTimer()
	requireAllForwarded(b, w)
}

// requireAllForwarded fails the benchmark unless w forwarded every frame it
// received on port 0.
func requireAllForwarded(b *testing.B, w *Worker) {
	b.Helper()
	var st PortStats
	w.Stats(0, &st)
	forwarded := st.RxPackets
	for _, n := range st.Drops {
		forwarded -= n
	}
	// Every destination lies in a table prefix: anything but all forwarded
	// means the benchmark measured drops, not forwarding.
	if forwarded != st.RxPackets {
		b.Fatalf("%d of %d frames forwarded; drops by reason %v", forwarded, st.RxPackets, st.Drops)
	}
}

// framePool is a benchmark's frames: copies of a template to random
// destinations over the table, in 4 MiB, 64 bytes or more apart.
type framePool struct {
	template []byte
	frames   [][]byte
	dsts     []uint32
	out      []Decision
}

func newFramePool(rs []routes.Route, template []byte, flows int) *framePool {
	slot := 64
	for slot < len(template) {
		slot *= 2
	}
	// A UMEM's worth, 4 MiB, whatever the frame size: 65536 frames of 64
	// bytes, 32768 of 128. (A fixed count of 128-byte frames was 8 MiB,
	// beyond this machine's cache: frames' second cache lines, which only
	// sampling reads, then came from memory, a cost no NIC with DDIO has.)
	n := 4 << 20 / slot
	rng := rand.New(rand.NewPCG(1, 1))
	mem := make([]byte, n*slot)
	p := &framePool{template: template, frames: make([][]byte, n), dsts: make([]uint32, n), out: make([]Decision, 64)}
	for i := range p.frames {
		if flows > 0 && i >= flows {
			p.dsts[i] = p.dsts[rng.IntN(flows)]
		} else {
			pf := rs[rng.IntN(len(rs))].Prefix
			a := pf.Addr().As4()
			p.dsts[i] = binary.BigEndian.Uint32(a[:]) | rng.Uint32()&(1<<(32-pf.Bits())-1)
		}
		p.frames[i] = mem[i*slot : i*slot+len(template)]
	}
	return p
}

// refill restores every frame (Process rewrote MACs and TTL in place).
func (p *framePool) refill() {
	for i, f := range p.frames {
		copy(f, p.template)
		binary.BigEndian.PutUint32(f[30:34], p.dsts[i])
		f[24], f[25] = 0, 0
		binary.BigEndian.PutUint16(f[24:26], ^checksum16(f[14:34]))
	}
}

// run processes the whole pool in batches of 64 and returns ns per frame.
func (p *framePool) run(w *Worker) float64 {
	start := time.Now()
	for k := 0; k < len(p.frames); k += 64 {
		w.Process(0, p.frames[k:k+64], p.out)
	}
	return float64(time.Since(start).Nanoseconds()) / float64(len(p.frames))
}
