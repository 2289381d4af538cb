//go:build linux

package traffic

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/pnap-project/pnap/bench/lab"
)

// tagged returns a tagged frame of s for dst with seq and send time ts,
// expecting no path; vlan inserts an 802.1Q tag.
func tagged(s spec, size int, seq uint32, ts uint64, vlan bool) []byte {
	return taggedFor(s, size, seq, ts, 0, vlan)
}

// taggedFor is tagged with path as the tag carries it (0 none, else the
// path + 1).
func taggedFor(s spec, size int, seq uint32, ts uint64, path uint16, vlan bool) []byte {
	f := make([]byte, size-fcsBytes)
	s.writeHeaders(f, s.Dsts[0], seq, ts, path)
	if vlan {
		f = append(f[:12:12], append([]byte{0x81, 0x00, 0x00, 0x07}, f[12:]...)...)
	}
	return f
}

// resetReceiver loads a receiver (as root) and zeroes its counters.
func resetReceiver(t *testing.T) *Receiver {
	t.Helper()
	lab.RequireRoot(t)
	r := NewReceiver(t)
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestReceiverCounts feeds the receiver program crafted frames with
// BPF_PROG_RUN on one CPU: a repeated and out-of-order sequence numbers,
// both families, a VLAN tag, and frames it must pass untouched.
func TestReceiverCounts(t *testing.T) {
	r := resetReceiver(t)
	v4, _ := testSpec(IPv4, 1, 64).check()
	v6, _ := testSpec(IPv6, 1, 82).check()
	// run is called on onCPU's goroutine: Errorf, not Fatal.
	run := func(f []byte) uint32 {
		ret, err := r.prog.Run(&ebpf.RunOptions{Data: f, Repeat: 1})
		if err != nil {
			t.Errorf("run receiver program: %v", err)
		}
		return ret
	}
	var wantBytes uint64
	pinned := func(cpu int, fn func()) {
		t.Helper()
		if err := onCPU(cpu, fn); err != nil {
			t.Fatal(err)
		}
	}
	pinned(0, func() {
		now := monotonic()
		// seq 0 1 2 2 5 3 4 (IPv4, IPv6 and VLAN mixed): one duplicate, two
		// reordered (3 and 4 after 5). Send times 10 µs ago.
		for i, seq := range []uint32{0, 1, 2, 2, 5, 3, 4} {
			f := tagged(v4, 64, seq, now-10_000, false)
			switch i {
			case 1, 5:
				f = tagged(v6, 100, seq, now-10_000, false)
			case 2:
				f = tagged(v4, 64, seq, now-10_000, true)
			}
			wantBytes += uint64(len(f) + fcsBytes)
			if ret := run(f); ret != xdpDrop {
				t.Errorf("tagged frame %d (seq %d): verdict %d, want XDP_DROP", i, seq, ret)
			}
		}
		// Frames that are not the generator's go on to the kernel.
		arp := make([]byte, 42)
		copy(arp, macB)
		copy(arp[6:], macA)
		binary.BigEndian.PutUint16(arp[12:], 0x0806)
		noMagic := tagged(v4, 64, 9, now, false)
		noMagic[v4.tag] ^= 1
		options := tagged(v4, 64, 9, now, false)
		options[ethBytes] = 0x46
		tcp := tagged(v6, 100, 9, now, false)
		tcp[ethBytes+6] = 6
		short := tagged(v4, 64, 9, now, false)[:v4.tag+tagBytes-1]
		for name, f := range map[string][]byte{"ARP": arp, "no magic": noMagic, "IPv4 options": options, "IPv6 TCP": tcp, "truncated tag": short} {
			if ret := run(f); ret != xdpPass {
				t.Errorf("%s: verdict %d, want XDP_PASS", name, ret)
			}
		}
	})
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 7 || st.Duplicates != 1 || st.Reordered != 2 || st.Received() != 6 || st.Bytes != wantBytes {
		t.Errorf("stats %+v, want 7 packets (%d bytes), 1 duplicate, 2 reordered", st, wantBytes)
	}
	// The distribution ends at 1 and brackets the percentiles.
	if cdf := st.LatencyCDF; len(cdf) == 0 || cdf[len(cdf)-1].Fraction != 1 || cdf[0].Latency > st.LatencyP50 || cdf[len(cdf)-1].Latency != st.LatencyMax {
		t.Errorf("latency CDF %v with p50 %v, max %v", st.LatencyCDF, st.LatencyP50, st.LatencyMax)
	}
	// The program runs well after "now" was taken: 10 µs plus up to a few ms.
	if st.LatencyP50 < 10*time.Microsecond || st.LatencyMax > 50*time.Millisecond || st.LatencyP50 > st.LatencyMax || st.LatencyP99 > st.LatencyMax {
		t.Errorf("latencies p50 %v p99 %v max %v, want 10 µs to 50 ms", st.LatencyP50, st.LatencyP99, st.LatencyMax)
	}
	if err := r.Reset(); err != nil {
		t.Fatal(err)
	}
	if st, _ := r.Stats(); !reflect.DeepEqual(st, Stats{}) {
		t.Errorf("after Reset: %+v", st)
	}
	// After Reset the same sequence numbers are new again.
	pinned(1, func() {
		run(tagged(v4, 64, 2, monotonic(), false))
	})
	if st, _ := r.Stats(); st.Packets != 1 || st.Duplicates != 0 || st.Reordered != 0 {
		t.Errorf("first frame after Reset: %+v", st)
	}
	// Slots are reused modulo the window without false duplicates.
	pinned(1, func() {
		run(tagged(v4, 64, 2+1<<seenSlotBits, monotonic(), false))
		run(tagged(v4, 64, 2+1<<seenSlotBits, monotonic(), false))
	})
	if st, _ := r.Stats(); st.Packets != 3 || st.Duplicates != 1 {
		t.Errorf("seq 2, 2+2^22 twice: %+v, want 3 packets, 1 duplicate", st)
	}
}

// TestReceiverWrongPath runs the program of backbone 1's link over a frame
// tagged for backbone 0: it must count it as WrongPath only, neither as
// received nor in the duplicate table, so that the same frame arriving on
// backbone 0's link afterwards still counts as received once. Frames for
// backbone 1 and frames without a path count as received.
func TestReceiverWrongPath(t *testing.T) {
	r := resetReceiver(t)
	v4, _ := testSpec(IPv4, 1, 64).check()
	v6, _ := testSpec(IPv6, 1, 82).check()
	progFor := func(path int) *ebpf.Program {
		p, err := r.load(uint16(path + 1))
		if err != nil {
			t.Fatalf("%+v", err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	bb0, bb1 := progFor(0), progFor(1)
	err := onCPU(0, func() {
		now := monotonic() - 10_000
		for _, c := range []struct {
			name string
			prog *ebpf.Program
			f    []byte
		}{
			{"seq 0 for backbone 0 at backbone 1", bb1, taggedFor(v4, 64, 0, now, 1, false)},
			{"seq 1 for backbone 1 at backbone 1", bb1, taggedFor(v6, 82, 1, now, 2, false)},
			{"seq 2 for no backbone at backbone 1", bb1, taggedFor(v4, 64, 2, now, 0, true)},
			{"seq 0 for backbone 0 at backbone 0", bb0, taggedFor(v4, 64, 0, now, 1, false)},
			{"seq 3 for backbone 1 at a link of no path", r.prog, taggedFor(v4, 64, 3, now, 2, false)},
		} {
			ret, err := c.prog.Run(&ebpf.RunOptions{Data: c.f, Repeat: 1})
			if err != nil || ret != xdpDrop {
				t.Errorf("%s: verdict %d (%v), want XDP_DROP", c.name, ret, err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.WrongPath != 1 || st.Packets != 4 || st.Duplicates != 0 || st.Received() != 4 {
		t.Errorf("%d packets, %d duplicates, %d on the wrong path; want 4 received, no duplicates, 1 on the wrong path", st.Packets, st.Duplicates, st.WrongPath)
	}
	if st.LatencyP50 < 10*time.Microsecond || st.LatencyMax > 50*time.Millisecond {
		t.Errorf("latencies p50 %v max %v, want 10 µs to 50 ms", st.LatencyP50, st.LatencyMax)
	}
}

// TestHistogram checks the BPF bucket index against the Go twin and the
// buckets' precision.
func TestHistogram(t *testing.T) {
	lab.RequireRoot(t)
	// A program that writes histIndex(value at data[0:8]) to data[8:16].
	ins := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 16),
		asm.JGT.Reg(asm.R4, asm.R3, "out"),
		asm.Mov.Reg(asm.R6, asm.R2),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.DWord),
	}
	ins = append(ins, histIndex(asm.R8, asm.R7, asm.R9, "h")...)
	ins = append(ins,
		asm.StoreMem(asm.R6, 8, asm.R8, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("out"),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: ins})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	defer prog.Close()
	vals := []uint64{0, 1, 2, 3, 63, 64, 127, 128, 129, 130, 255, 256, 1000, 1 << 20, 1<<32 - 1, 1 << 32, 1<<40 - 1, 1 << 40, 1 << 62, 1<<64 - 1}
	for v := uint64(3); v < 1<<41; v = v*17/16 + 1 {
		vals = append(vals, v)
	}
	for _, v := range vals {
		in := make([]byte, 60)
		binary.NativeEndian.PutUint64(in, v)
		out := make([]byte, 60+256)
		opts := &ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1}
		if _, err := prog.Run(opts); err != nil {
			t.Fatal(err)
		}
		got := int(binary.NativeEndian.Uint64(opts.DataOut[8:]))
		if want := histBucket(v); got != want {
			t.Errorf("bucket of %d: BPF %d, Go %d", v, got, want)
		}
		if got < 0 || got >= histBuckets {
			t.Fatalf("bucket of %d: %d out of range", v, got)
		}
		if lo, hi := histRange(got); v < 1<<histMaxLog && (v < lo || v >= hi) {
			t.Errorf("value %d in bucket %d = [%d, %d)", v, got, lo, hi)
		}
	}
	// Midpoints within 0.8 % of everything from 1 µs to 1 s; exact below 128.
	for v := uint64(1); v < 1e9; v = v*9/8 + 1 {
		lo, hi := histRange(histBucket(v))
		mid := float64(lo+hi-1) / 2
		if d := (mid - float64(v)) / float64(v); d > 0.008 || d < -0.008 || (v < 128 && mid != float64(v)) {
			t.Errorf("value %d reported as %.1f (%.2f %%)", v, mid, 100*d)
		}
	}
	h := make([]uint64, histBuckets)
	for v := uint64(1); v <= 100; v++ {
		h[histBucket(v*1000)]++
	}
	if p50, p99 := percentile(h, 0.5, 100_000), percentile(h, 0.99, 100_000); p50 < 49_600 || p50 > 50_400 || p99 < 98_200 || p99 > 99_800 {
		t.Errorf("1..100 µs: p50 %v p99 %v, want 50 µs and 99 µs within 0.8 %%", p50, p99)
	}
}

// TestReceiverBothCPUs runs the receiver program on both CPUs at once over
// the same frame: the per-CPU counters must add up, and the shared
// duplicate table must let exactly one copy through.
func TestReceiverBothCPUs(t *testing.T) {
	r := resetReceiver(t)
	v, _ := testSpec(IPv4, 1, 64).check()
	f := tagged(v, 64, 12345, monotonic(), false)
	const n = 200_000
	errs := make(chan error, 2)
	for cpu := range 2 {
		go func() {
			var err error
			if perr := onCPU(cpu, func() { _, err = r.prog.Run(&ebpf.RunOptions{Data: f, Repeat: n}) }); perr != nil {
				err = perr
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Packets != 2*n || st.Duplicates != 2*n-1 || st.Bytes != 2*n*64 {
		t.Errorf("%d runs on each CPU: %+v, want %d packets, %d duplicates", n, st, 2*n, 2*n-1)
	}
}

// TestAtomicEncoding pins the workaround in atomicMem: the exchange must
// reach the kernel as BPF_XCHG (imm 0xe1), not as an atomic add (imm 0).
func TestAtomicEncoding(t *testing.T) {
	var buf bytes.Buffer
	if err := (asm.Instructions{atomicMem(asm.Xchg, asm.R0, asm.R1, asm.Word, 0)}).Marshal(&buf, binary.LittleEndian); err != nil {
		t.Fatal(err)
	}
	if b := buf.Bytes(); b[0] != 0xc3 || binary.LittleEndian.Uint32(b[4:]) != 0xe1 {
		t.Errorf("xchg encodes as % x, want c3 10 00 00 e1 00 00 00", b)
	}
}
