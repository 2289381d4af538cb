package forwarder

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/fib/routes"
	"github.com/pnap-project/pnap/internal/shareddata"
)

// BenchmarkProcess feeds the worker's batch function 64-byte IPv4 frames
// from memory, as a zero-copy NIC would hand them over: 4 backbones holding
// the full IPv4 table, destinations drawn at random over the table, batches
// of 64. It measures the Go side's own cost per packet: parse, validate,
// lookup, TTL and checksum, MAC rewrite.
func BenchmarkProcess(b *testing.B) {
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
		h.Backbone[i][fam4] = NextHop{Port: uint8(1 + i), MAC: MAC{2, 0, 0, 0, 0xbb, byte(i)}, Resolved: true}
	}
	pl.SetHops(&h)
	// Spread the selections over all four backbones.
	for i := 0; i < len(rs); i += 4 {
		bb.Select(rs[i].Prefix, fib.BackboneID(i/4%4))
	}
	w := NewWorker(pl)

	const nFrames, batch = 1 << 16, 64 // 4 MiB of frames: a UMEM's worth
	rng := rand.New(rand.NewPCG(1, 1))
	template := udpFrame(b, "198.18.0.7", "203.0.113.9", frameOpts{ttl: 255, payload: 64 - 42 - 4})
	mem := make([]byte, nFrames*64)
	frames := make([][]byte, nFrames)
	dsts := make([]uint32, nFrames)
	for i := range frames {
		p := rs[rng.IntN(len(rs))].Prefix
		a := p.Addr().As4()
		d := binary.BigEndian.Uint32(a[:]) | rng.Uint32()&(1<<(32-p.Bits())-1)
		if p.Bits() == 0 {
			d = rng.Uint32()
		}
		dsts[i] = d
		frames[i] = mem[i*64 : i*64+len(template)]
	}
	refill := func() {
		for i, f := range frames {
			copy(f, template)
			binary.BigEndian.PutUint32(f[30:34], dsts[i])
			f[24], f[25] = 0, 0
			binary.BigEndian.PutUint16(f[24:26], ^checksum16(f[14:34]))
		}
	}
	refill()
	out := make([]Decision, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		k := (i / batch * batch) % nFrames
		if k == 0 && i > 0 {
			// Process rewrote the MACs and TTL in place: restore the frames
			// between passes, as a NIC writes fresh frames into its UMEM
			// (DMA with DDIO leaves them in the last-level cache, as here).
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		w.Process(0, frames[k:k+batch], out)
	}
	b.StopTimer()
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
