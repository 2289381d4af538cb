//go:build linux

package traffic

import (
	"fmt"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

// Receiver counts the Generator's tagged frames on any number of links and
// drops them in XDP; every other frame (ARP, neighbour discovery, other
// traffic, a tagged-looking frame that is not Ethernet/IP/UDP with the tag
// at its place) goes on to the kernel. All links share one set of maps, so
// loss and duplicates are counted across them (e.g. across backbones). A
// link attached with AttachPath knows its path (backbone): a frame whose
// tag expects another path is counted as WrongPath only, so that a
// forwarder that sends it astray loses it.
//
// Counters and the latency histogram are per CPU (no atomic traffic between
// CPUs at Mpps; summed by Stats). Duplicates are found in a table of 2^22
// slots shared by all CPUs: slot seq mod 2^22 holds seq+1 of the last frame
// there, swapped in atomically (BPF_XCHG), and a frame whose own seq+1 comes
// back is a duplicate. Unlike a bitmap this never calls a frame a duplicate
// when sequence numbers wrap the table; it misses a duplicate only if 2^22
// later frames reached the same slots in between. Sequence numbers identify
// frames within one Run of one Generator: Reset between trials, and do not
// count two generators' trials at once. Reordering is counted per
// CPU against the highest sequence number that CPU has seen: frames of one
// veth are all received by one CPU (its NAPI), frames that arrive on
// different CPUs are not compared.
type Receiver struct {
	prog  *ebpf.Program // for links of no particular path
	stats *ebpf.Map     // per-CPU rxStats
	seen  *ebpf.Map     // duplicate slots
	slots []byte        // seen, mmapped: Reset clears it in one go
	ncpu  int
}

// Stats are the tagged frames a Receiver counted since the last Reset.
type Stats struct {
	Packets, Bytes uint64 // tagged frames received (duplicates included); bytes with FCS
	Duplicates     uint64 // a sequence number seen before within the current trial
	Reordered      uint64 // arrived after a higher sequence number (on the same CPU)
	// WrongPath counts tagged frames that arrived on a link attached with
	// AttachPath for another path than their tag expects. They are in no
	// other count (not in Packets, nor the latencies): not received.
	WrongPath uint64
	// One-way latency, the generator's send time to the receiver's XDP
	// program, both bpf_ktime_get_ns of this host. It includes the time a
	// frame waits in the generator's batch (up to 64 program runs: ~3 µs
	// unpaced, measured p50; ~1.5 µs paced) before it is flushed to the
	// link. P50 and P99 are within 0.8 % (or 1 ns); the maximum is exact.
	LatencyP50, LatencyP99, LatencyMax time.Duration
	// LatencyCDF is the whole distribution, one point per histogram bucket
	// that holds frames (a bucket's upper bound, so within 1.6 %).
	LatencyCDF []CDFPoint
}

// CDFPoint is one step of a latency distribution: Fraction of the frames
// arrived within Latency.
type CDFPoint struct {
	Latency  time.Duration
	Fraction float64
}

// Received returns the distinct tagged frames: Packets - Duplicates. A
// trial's loss is Sent.Packets - Received.
func (s Stats) Received() uint64 { return s.Packets - s.Duplicates }

// rxStats is the per-CPU value of the stats map.
type rxStats struct {
	Packets, Bytes, Duplicates, Reordered uint64
	MaxSeq                                uint64 // highest seq+1 seen on this CPU
	MaxLatency                            uint64
	WrongPath                             uint64
	Hist                                  [histBuckets]uint64
}

const (
	rxPackets    = 0
	rxBytes      = 8
	rxDuplicates = 16
	rxReordered  = 24
	rxMaxSeq     = 32
	rxMaxLatency = 40
	rxWrongPath  = 48
	rxHist       = 56

	seenSlotBits  = 22 // window of sequence numbers for duplicates
	seenValueBits = 6  // 64 slots of 4 bytes per map value
)

// NewReceiver loads the receiver's program and maps and registers their
// removal with tb. Attach it to links with Attach. It fails tb on error.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatalf("traffic.NewReceiver: %v", err)
	}
	r := &Receiver{ncpu: ncpu}
	var closers []func() error
	tb.Cleanup(func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	})
	r.stats, err = ebpf.NewMap(&ebpf.MapSpec{Name: "rx_stats", Type: ebpf.PerCPUArray, KeySize: 4,
		ValueSize: rxHist + 8*histBuckets, MaxEntries: 1})
	if err != nil {
		tb.Fatalf("traffic.NewReceiver: stats map: %v", err)
	}
	closers = append(closers, r.stats.Close)
	// Mmapable so that Reset clears its 16 MiB with a memclr, not 65536
	// updates. (Mapped here rather than with Map.Memory, which unmaps only
	// when the garbage collector gets to it.)
	const seenBytes = 4 << seenSlotBits
	r.seen, err = ebpf.NewMap(&ebpf.MapSpec{Name: "rx_seen", Type: ebpf.Array, KeySize: 4,
		ValueSize: 4 << seenValueBits, MaxEntries: 1 << (seenSlotBits - seenValueBits), Flags: unix.BPF_F_MMAPABLE})
	if err != nil {
		tb.Fatalf("traffic.NewReceiver: duplicate map: %v", err)
	}
	closers = append(closers, r.seen.Close)
	if r.slots, err = unix.Mmap(r.seen.FD(), 0, seenBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		tb.Fatalf("traffic.NewReceiver: map duplicate table: %v", err)
	}
	closers = append(closers, func() error { return unix.Munmap(r.slots) })
	if r.prog, err = r.load(0); err != nil {
		tb.Fatalf("traffic.NewReceiver: %+v", err)
	}
	closers = append(closers, r.prog.Close)
	return r
}

// load loads the receiver program for links of path own (0 for none, else
// the path + 1, as tags carry it) over the Receiver's maps.
func (r *Receiver) load(own uint16) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: "traffic_rx", Type: ebpf.XDP, License: "GPL",
		Instructions: receiverProgram(r.stats, r.seen, own)})
}

// Attach attaches the receiver's program to link (in ns) with a bpf_link,
// removed at tb's cleanup (or when the process dies). It counts every tagged
// frame whatever path its tag expects. It fails tb on error.
func (r *Receiver) Attach(tb testing.TB, ns *lab.NS, l *lab.Link) {
	tb.Helper()
	r.attach(tb, ns, l, r.prog)
}

// AttachPath attaches the receiver to link l (in ns) as the end of path (0
// to MaxPath; a backbone's index): tagged frames whose tag expects another
// path are counted as WrongPath and not received. Frames without an
// expectation count as with Attach. Links share the counters as with
// Attach; each path gets its own copy of the program, whose path is a
// constant in it (ifindexes repeat across namespaces, so a program shared
// by the links could not tell them apart). It fails tb on error.
func (r *Receiver) AttachPath(tb testing.TB, ns *lab.NS, l *lab.Link, path int) {
	tb.Helper()
	if path < 0 || path > MaxPath {
		tb.Fatalf("traffic.Receiver.AttachPath: path %d out of range 0 to %d", path, MaxPath)
	}
	prog, err := r.load(uint16(path + 1))
	if err != nil {
		tb.Fatalf("traffic.Receiver.AttachPath(%s, %d): %+v", l, path, err)
	}
	tb.Cleanup(func() { prog.Close() }) // after the link's, registered below
	r.attach(tb, ns, l, prog)
}

func (r *Receiver) attach(tb testing.TB, ns *lab.NS, l *lab.Link, prog *ebpf.Program) {
	tb.Helper()
	if l == nil || l.NS != ns {
		tb.Fatalf("traffic.Receiver.Attach: link %v is not in namespace %s", l, ns.Name)
	}
	err := ns.Do(func() error {
		lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.Index})
		if err != nil {
			return err
		}
		tb.Cleanup(func() { lk.Close() })
		return nil
	})
	if err != nil {
		tb.Fatalf("traffic.Receiver.Attach(%s): %v", l, err)
	}
}

// Reset zeroes every counter, the histogram and the duplicate table. Call it
// between trials, while no tagged frames arrive.
func (r *Receiver) Reset() error {
	if err := r.stats.Put(uint32(0), make([]rxStats, r.ncpu)); err != nil {
		return fmt.Errorf("traffic: reset receiver counters: %w", err)
	}
	clear(r.slots)
	return nil
}

// Stats returns what the receiver counted since the last Reset.
func (r *Receiver) Stats() (Stats, error) {
	var per []rxStats
	if err := r.stats.Lookup(uint32(0), &per); err != nil {
		return Stats{}, fmt.Errorf("traffic: read receiver counters: %w", err)
	}
	var s Stats
	var hist [histBuckets]uint64
	var maxLat uint64
	for _, c := range per {
		s.Packets += c.Packets
		s.Bytes += c.Bytes
		s.Duplicates += c.Duplicates
		s.Reordered += c.Reordered
		s.WrongPath += c.WrongPath
		maxLat = max(maxLat, c.MaxLatency)
		for i, n := range c.Hist {
			hist[i] += n
		}
	}
	var total, seen uint64
	for _, c := range hist {
		total += c
	}
	for b, c := range hist {
		if c == 0 {
			continue
		}
		seen += c
		_, hi := histRange(b)
		s.LatencyCDF = append(s.LatencyCDF, CDFPoint{Latency: time.Duration(min(hi, maxLat)), Fraction: float64(seen) / float64(total)})
	}
	s.LatencyP50 = percentile(hist[:], 0.50, maxLat)
	s.LatencyP99 = percentile(hist[:], 0.99, maxLat)
	s.LatencyMax = time.Duration(maxLat)
	return s, nil
}

// receiverProgram returns the receiver's XDP program for links of path own
// (0: none, every frame counts). It finds the tag behind Ethernet
// (optionally one 802.1Q tag), IPv4 without options or IPv6 without
// extension headers, and UDP; then R7 = seq, R8 = the time word (send time
// and path), R9 = frame length, and after the stats lookup R6 = this CPU's
// stats.
func receiverProgram(stats, seen *ebpf.Map, own uint16) asm.Instructions {
	ins := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethBytes),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.JEq.Imm(asm.R5, be16(0x8100), "vlan"),
	}
	ins = append(ins, findTag(ethBytes)...)
	ins = append(ins,
		asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("vlan"),
		asm.Add.Imm(asm.R4, ethBytes+4),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, 16, asm.Half),
	)
	ins = append(ins, findTag(ethBytes+4)...)

	// A tagged frame: count it, if it is on its path.
	ins = append(ins,
		asm.Mov.Reg(asm.R9, asm.R3).WithSymbol("count"),
		asm.Sub.Reg(asm.R9, asm.R2),
	)
	ins = append(ins, checkPath(own, "counted", "wrongpath")...)
	ins = append(ins,
		asm.FnKtimeGetNs.Call().WithSymbol("counted"),
		// Latency modulo 2^48 (the tag's time has 48 bits); more than 2^47
		// ns ago means a send time in the future: garbage, count 0.
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Sub.Reg(asm.R1, asm.R8),
		asm.LSh.Imm(asm.R1, 64-timeBits),
		asm.RSh.Imm(asm.R1, 64-timeBits),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, timeBits-1),
		asm.JEq.Imm(asm.R2, 0, "latok"),
		asm.Mov.Imm(asm.R1, 0),
		asm.Mov.Reg(asm.R8, asm.R1).WithSymbol("latok"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
	)
	ins = append(ins, mapLookup(stats, -4, "drop")...)
	ins = append(ins,
		asm.Mov.Reg(asm.R6, asm.R0),
		// Per-CPU: plain read-modify-write is safe (XDP does not nest on a CPU).
		asm.LoadMem(asm.R1, asm.R6, rxPackets, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, rxPackets, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, rxBytes, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R9),
		asm.Add.Imm(asm.R1, fcsBytes),
		asm.StoreMem(asm.R6, rxBytes, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R6, rxMaxLatency, asm.DWord),
		asm.JGE.Reg(asm.R1, asm.R8, "nomax"),
		asm.StoreMem(asm.R6, rxMaxLatency, asm.R8, asm.DWord),
	)
	hist := histIndex(asm.R4, asm.R8, asm.R3, "hist")
	hist[0] = hist[0].WithSymbol("nomax")
	ins = append(ins, hist...)
	ins = append(ins,
		asm.LSh.Imm(asm.R4, 3),
		asm.Add.Reg(asm.R4, asm.R6),
		asm.LoadMem(asm.R1, asm.R4, rxHist, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R4, rxHist, asm.R1, asm.DWord),

		// Duplicates: swap seq+1 into its slot; getting it back means seen.
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.RSh.Imm(asm.R1, seenValueBits),
		asm.And.Imm(asm.R1, 1<<(seenSlotBits-seenValueBits)-1),
		asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
	)
	ins = append(ins, mapLookup(seen, -8, "order")...)
	ins = append(ins,
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.And.Imm(asm.R1, 1<<seenValueBits-1),
		asm.LSh.Imm(asm.R1, 2),
		asm.Add.Reg(asm.R0, asm.R1),
		asm.Mov.Reg32(asm.R1, asm.R7),
		asm.Add.Imm32(asm.R1, 1),
		asm.Mov.Reg(asm.R2, asm.R1),
		atomicMem(asm.Xchg, asm.R0, asm.R1, asm.Word, 0),
		asm.JNE.Reg(asm.R1, asm.R2, "order"),
		asm.LoadMem(asm.R1, asm.R6, rxDuplicates, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, rxDuplicates, asm.R1, asm.DWord),
		asm.Ja.Label("drop"),

		// Reordering: below this CPU's highest seq+1 so far.
		asm.Mov.Reg(asm.R2, asm.R7).WithSymbol("order"),
		asm.Add.Imm(asm.R2, 1),
		asm.LoadMem(asm.R1, asm.R6, rxMaxSeq, asm.DWord),
		asm.JGE.Reg(asm.R2, asm.R1, "newmax"),
		asm.LoadMem(asm.R1, asm.R6, rxReordered, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R6, rxReordered, asm.R1, asm.DWord),
		asm.Ja.Label("drop"),
		asm.StoreMem(asm.R6, rxMaxSeq, asm.R2, asm.DWord).WithSymbol("newmax"),

		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	if own == 0 {
		return ins
	}
	// Off its path: counted as such only.
	ins = append(ins, asm.StoreImm(asm.RFP, -4, 0, asm.Word).WithSymbol("wrongpath"))
	ins = append(ins, mapLookup(stats, -4, "drop")...)
	return append(ins,
		asm.LoadMem(asm.R1, asm.R0, rxWrongPath, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, rxWrongPath, asm.R1, asm.DWord),
		asm.Ja.Label("drop"),
	)
}

// checkPath emits the path check of a tagged frame (R8 the time word) on a
// link of path own: on to ok when the tag expects no path or own, else to
// wrong. With own 0 (no path) it emits nothing and every frame goes on.
func checkPath(own uint16, ok, wrong string) asm.Instructions {
	if own == 0 {
		return nil
	}
	return asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.RSh.Imm(asm.R1, timeBits),
		asm.JEq.Imm(asm.R1, 0, ok),
		asm.JEq.Imm(asm.R1, int32(own), ok),
		asm.Ja.Label(wrong),
	}
}

// findTag emits the search for the tag after an Ethernet header of l2 bytes
// (R2 data, R3 data_end, R5 the EtherType as loaded): on a match it loads
// R7 = seq and R8 = send time and jumps to "count", else to "pass".
func findTag(l2 int) asm.Instructions {
	p := fmt.Sprintf("l2_%d_", l2)
	var ins asm.Instructions
	ins = append(ins,
		asm.JEq.Imm(asm.R5, be16(0x0800), p+"v4"),
		asm.JEq.Imm(asm.R5, be16(0x86dd), p+"v6"),
		asm.Ja.Label("pass"),
	)
	for _, fam := range []int{IPv4, IPv6} {
		lay := layoutOf(fam)
		tag := int16(lay.tag - ethBytes + l2)
		label := p + "v4"
		check := asm.Instructions{ // version 4, IHL 5; protocol UDP
			asm.LoadMem(asm.R4, asm.R2, int16(l2), asm.Byte),
			asm.JNE.Imm(asm.R4, 0x45, "pass"),
			asm.LoadMem(asm.R4, asm.R2, int16(l2+9), asm.Byte),
			asm.JNE.Imm(asm.R4, 17, "pass"),
		}
		if fam == IPv6 {
			label = p + "v6"
			check = asm.Instructions{ // next header UDP
				asm.LoadMem(asm.R4, asm.R2, int16(l2+6), asm.Byte),
				asm.JNE.Imm(asm.R4, 17, "pass"),
			}
		}
		ins = append(ins,
			asm.Mov.Reg(asm.R4, asm.R2).WithSymbol(label),
			asm.Add.Imm(asm.R4, int32(tag+tagBytes)),
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		)
		ins = append(ins, check...)
		ins = append(ins,
			asm.LoadMem(asm.R4, asm.R2, tag, asm.Word),
			asm.JNE.Imm(asm.R4, int32(tagMagic), "pass"),
			asm.LoadMem(asm.R7, asm.R2, tag+tagSeq, asm.Word),
			asm.LoadMem(asm.R8, asm.R2, tag+tagTime, asm.DWord),
			asm.Ja.Label("count"),
		)
	}
	return ins
}
