//go:build linux

package traffic

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

// Generator sends the frames of a Spec out of one link: BPF_PROG_RUN in
// live-frames mode runs its XDP program over and over, and every run that
// returns XDP_TX sends one frame (12-13 Mpps on one CPU here into a veth,
// far above any forwarder on this path). The program restores every header a
// forwarder may rewrite in place (live-frames pages are recycled), writes
// the destination, lengths, IPv4 checksum and tag of each frame, and keeps
// the asked rate itself: it drops the run (sends nothing) until the clock
// reaches the next send time. A Generator is safe for use by one goroutine
// at a time; Run calls are serialised.
type Generator struct {
	ns    *lab.NS
	out   *lab.Link
	s     spec
	frame []byte

	prog  *ebpf.Program
	state *ebpf.Map // genState
	dsts  *ebpf.Map // dstValue per destination index

	mu      sync.Mutex
	iterNs  float64 // last measured cost of one program run, sizes the calls
	closers []func() error
}

// genState is the generator program's state map value. All times are
// bpf_ktime_get_ns (CLOCK_MONOTONIC).
type genState struct {
	Next     uint64 // next send time (paced)
	Interval uint64 // ns between sends; 0 = unpaced
	Sent     uint64 // frames sent this Run = next sequence number
	End      uint64 // no sends from this time on
	Slack    uint64 // how late a send may be and keep the schedule
	First    uint64 // time of the first send
	Last     uint64 // time of the last send
	Limit    uint64 // most frames per Run
	Stalled  uint64 // schedule time lost to stalls longer than Slack
	_        [3]uint64
}

const (
	stNext     = 0
	stInterval = 8
	stSent     = 16
	stEnd      = 24
	stSlack    = 32
	stFirst    = 40
	stLast     = 48
	stLimit    = 56
	stStalled  = 64
	stSize     = 96
)

// dstValue is one destination: its address (IPv4 in the first 4 bytes),
// for IPv4 the header's partial checksum without the total length, and the
// path its frames' tags carry (see Spec.Paths).
type dstValue struct {
	Addr    [16]byte
	Partial uint32
	Path    uint16
	_       uint16
}

const (
	dstPartial = 16
	dstPath    = 20
)

// Sent is what one Run sent.
type Sent struct {
	Packets uint64
	Bytes   uint64 // frame bytes including the 4-byte FCS, as FrameBytes counts
	// Took is the sending span: from the first frame to the last, plus one
	// interval when paced (so Packets/Took is the offered rate exactly).
	Took time.Duration
	// Stalled is the sending time lost to stalls of the generator's CPU
	// longer than the pacing's catch-up window (see slack): a vCPU
	// descheduled by the hypervisor, a busy neighbour, or a rate above what
	// the generator reaches on this path. When paced, Packets is about
	// (Took - Stalled) * rate; a trial with much Stalled offered less than
	// asked, and unevenly. Always 0 unpaced.
	Stalled time.Duration
}

// Rate returns the offered rate in packets per second.
func (s Sent) Rate() float64 {
	if s.Took <= 0 {
		return 0
	}
	return float64(s.Packets) / s.Took.Seconds()
}

// NewGenerator loads the generator's program and maps for sending s's
// frames out of out, which must be in ns, and registers their removal with
// tb. It fails tb on error.
//
// Nothing is attached to out: live-frames XDP_TX needs no program on the
// sending veth (measured on 6.18; older code here attached an XDP_PASS one),
// but the veth's peer must have NAPI, i.e. an XDP program (a Receiver, an XDP
// or AF_XDP forwarder) or GRO on. Without it the veth refuses the frames:
// they are lost there yet counted in Sent. Where the kernel refuses
// live-frames mode it skips tb (RequireLiveFrames).
func NewGenerator(tb testing.TB, ns *lab.NS, out *lab.Link, s Spec) *Generator {
	tb.Helper()
	RequireLiveFrames(tb)
	v, err := s.check()
	if err != nil {
		tb.Fatal(err)
	}
	if out == nil || out.NS != ns {
		tb.Fatalf("traffic.NewGenerator: link %v is not in namespace %s", out, ns.Name)
	}
	g, err := loadGenerator(v)
	if err != nil {
		tb.Fatalf("traffic.NewGenerator: %+v", err)
	}
	g.ns, g.out = ns, out
	tb.Cleanup(g.close)
	return g
}

// loadGenerator creates the maps and loads the program for v; the caller
// closes the result.
func loadGenerator(v spec) (_ *Generator, err error) {
	g := &Generator{s: v, frame: v.template(), iterNs: 50}
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	if g.state, err = ebpf.NewMap(&ebpf.MapSpec{Name: "gen_state", Type: ebpf.Array, KeySize: 4, ValueSize: stSize, MaxEntries: 1}); err != nil {
		return nil, fmt.Errorf("state map: %w", err)
	}
	g.closers = append(g.closers, g.state.Close)
	if g.dsts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "gen_dsts", Type: ebpf.Array, KeySize: 4, ValueSize: 24, MaxEntries: uint32(len(v.Dsts))}); err != nil {
		return nil, fmt.Errorf("destination map: %w", err)
	}
	g.closers = append(g.closers, g.dsts.Close)
	keys := make([]uint32, len(v.Dsts))
	vals := make([]dstValue, len(v.Dsts))
	for i := range v.Dsts {
		keys[i] = uint32(i)
		vals[i] = v.dstValue(i)
	}
	if _, err := g.dsts.BatchUpdate(keys, vals, nil); err != nil {
		return nil, fmt.Errorf("fill destination map: %w", err)
	}
	g.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "traffic_gen", Type: ebpf.XDP, License: "GPL",
		Instructions: v.generatorProgram(g.state, g.dsts)})
	if err != nil {
		return nil, fmt.Errorf("load program: %w", err)
	}
	g.closers = append(g.closers, g.prog.Close)
	return g, nil
}

// close releases what the Generator holds, newest first.
func (g *Generator) close() {
	for i := len(g.closers) - 1; i >= 0; i-- {
		g.closers[i]()
	}
	g.closers = nil
}

func (s spec) dstValue(i int) dstValue {
	d := s.Dsts[i]
	v := dstValue{Path: s.pathTag(i)}
	if s.family == IPv4 {
		a := d.As4()
		copy(v.Addr[:], a[:])
		v.Partial = s.ipv4Partial(d)
	} else {
		v.Addr = d.As16()
	}
	return v
}

// Run sends for about d from a thread in the generator's namespace pinned to
// cpu, at rate packets per second (0 = as fast as possible), and returns
// what it sent. Sequence numbers restart from 0 on every Run: reset the
// Receiver between Runs (trials). Frames may still be in flight when Run
// returns; wait a little before reading the Receiver's Stats.
//
// The send interval is whole ns (at 3 Mpps the rate is 0.1 % high). A Run
// sends at most MaxRunPackets frames.
//
// The program stops sending at start+d by itself; Run cuts the time into
// several BPF_PROG_RUN calls (each costs ~25 µs of setup here), sized from
// the measured cost of a program run, so that it returns about d after it
// started whatever the rate and frame size.
func (g *Generator) Run(cpu int, rate float64, d time.Duration) (Sent, error) {
	if math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 || rate > 1e9 {
		return Sent{}, fmt.Errorf("traffic: rate %v pps out of range (0 to 1e9; 0 = unpaced)", rate)
	}
	if d <= 0 {
		return Sent{}, fmt.Errorf("traffic: duration %v must be positive", d)
	}
	var interval uint64
	if rate > 0 {
		interval = uint64(math.Round(1e9 / rate))
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var st genState
	err := g.ns.Do(func() error {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("traffic: pin generator thread to CPU %d: %w", cpu, err)
		}
		// Nice -20 (this thread only; it exits after Run): a time-sharing
		// neighbour on cpu then gets ~1 % of it instead of half, so the
		// gaps it causes, which the pacing cannot make up without bursts,
		// stay rare. Without CAP_SYS_NICE the pacing is only more exposed.
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -20); err != nil && err != unix.EPERM && err != unix.EACCES {
			return fmt.Errorf("traffic: raise generator thread priority: %w", err)
		}
		start := monotonic()
		st = genState{
			Interval: interval,
			End:      start + uint64(d),
			Slack:    slack(interval),
			Limit:    MaxRunPackets,
		}
		if err := g.state.Put(uint32(0), &st); err != nil {
			return fmt.Errorf("traffic: generator state: %w", err)
		}
		// Call lengths grow from 1 ms (a first measurement of the program's
		// cost under this rate and path) to 100 ms: long enough that the
		// calls' setup gaps are below 0.1 %, short enough that a wrong
		// estimate cannot overshoot d by much.
		target := time.Millisecond
		for {
			now := monotonic()
			if now >= st.End {
				break
			}
			left := time.Duration(st.End - now)
			want := min(left, target)
			repeat := uint32(min(max(float64(want.Nanoseconds())/g.iterNs, 64), math.MaxUint32))
			t0 := monotonic()
			if err := g.runLive(repeat); err != nil {
				return err
			}
			if took := monotonic() - t0; repeat >= 10000 {
				g.iterNs = float64(took) / float64(repeat)
			}
			target = min(4*target, 100*time.Millisecond)
		}
		if err := g.state.Lookup(uint32(0), &st); err != nil {
			return fmt.Errorf("traffic: generator state: %w", err)
		}
		return nil
	})
	if err != nil {
		return Sent{}, err
	}
	sent := Sent{Packets: st.Sent, Bytes: g.s.bytesFor(st.Sent)}
	if st.Sent > 0 {
		sent.Took = time.Duration(st.Last - st.First + st.Interval)
	}
	sent.Stalled = time.Duration(st.Stalled)
	return sent, nil
}

// slack is how late a send may be and keep the schedule (the next send is
// then due at next+interval, not now+interval): a stall shorter than that is
// made up by a burst, a longer one restarts the schedule from now and lowers
// the rate. This VM loses its vCPU ~3000 times a second for 20-80 µs, now and
// then for ms (measured with a busy loop at nice -20: 18 % of wall time), so
// without catch-up every rate came out 5-25 % low. Catch-up is bounded to
// maxBurst frames back to back (rings on this path hold 256 or more) and to
// maxSlack, so a long stall never floods the device under test.
func slack(interval uint64) uint64 {
	return max(2*interval, min(maxBurst*interval, uint64(maxSlack)))
}

const (
	maxBurst = 64
	maxSlack = time.Millisecond
)

// runLive runs the program repeat times in live-frames mode as if it had
// received the template on the generator's link.
func (g *Generator) runLive(repeat uint32) error {
	_, err := g.prog.Run(&ebpf.RunOptions{
		Data: g.frame, Repeat: repeat, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		// 64, the kernel's default: frames are flushed to the link in
		// batches of this many program runs.
		BatchSize: 64,
		Context:   &xdpMd{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(g.out.Index)},
	})
	if err != nil {
		return fmt.Errorf("traffic: live-frames run on %s: %w", g.out, err)
	}
	return nil
}

// xdpMd mirrors struct xdp_md, the context BPF_PROG_RUN takes for XDP.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// monotonic returns CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
func monotonic() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux
	}
	return uint64(ts.Nano())
}

// generatorProgram returns the generator's XDP program. Registers: R6 ctx,
// R7 now, R8 state then destination value, R9 sequence number.
func (s spec) generatorProgram(state, dsts *ebpf.Map) asm.Instructions {
	ins := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnKtimeGetNs.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
	}
	ins = append(ins, mapLookup(state, -4, "drop")...)
	ins = append(ins,
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R1, asm.R8, stEnd, asm.DWord),
		asm.JGE.Reg(asm.R7, asm.R1, "drop"), // past the end of the Run
		asm.LoadMem(asm.R9, asm.R8, stSent, asm.DWord),
		asm.LoadMem(asm.R1, asm.R8, stLimit, asm.DWord),
		asm.JGE.Reg(asm.R9, asm.R1, "drop"),
		asm.LoadMem(asm.R2, asm.R8, stInterval, asm.DWord),
		asm.JEq.Imm(asm.R2, 0, "send"),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.JEq.Imm(asm.R9, 0, "advance"), // the first frame starts the schedule
		asm.LoadMem(asm.R1, asm.R8, stNext, asm.DWord),
		asm.JLT.Reg(asm.R7, asm.R1, "drop"), // not yet
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Sub.Reg(asm.R3, asm.R1),
		asm.LoadMem(asm.R4, asm.R8, stSlack, asm.DWord),
		asm.JLE.Reg(asm.R3, asm.R4, "advance"),
		// Too late: restart the schedule from now, and account the time lost.
		asm.LoadMem(asm.R4, asm.R8, stStalled, asm.DWord),
		asm.Add.Reg(asm.R4, asm.R3),
		asm.StoreMem(asm.R8, stStalled, asm.R4, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Add.Reg(asm.R1, asm.R2).WithSymbol("advance"),
		asm.StoreMem(asm.R8, stNext, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R9).WithSymbol("send"),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R8, stSent, asm.R1, asm.DWord),
		asm.JNE.Imm(asm.R9, 0, "notfirst"),
		asm.StoreMem(asm.R8, stFirst, asm.R7, asm.DWord),
		asm.StoreMem(asm.R8, stLast, asm.R7, asm.DWord).WithSymbol("notfirst"),
	)
	if len(s.sizes) > 1 {
		// IMIX: shrink the template (the largest size) to this frame's
		// size. Live-frames mode resets the length before the next run.
		full := s.maxLen()
		ins = append(ins,
			asm.Mov.Reg(asm.R1, asm.R9),
			asm.Mod.Imm(asm.R1, int32(len(imixCycle))),
			asm.Mov.Imm(asm.R2, int32(s.sizes[0]-fcsBytes-full)),
			asm.Mov.Imm(asm.R3, imixMask(1)),
			asm.RSh.Reg(asm.R3, asm.R1),
			asm.And.Imm(asm.R3, 1),
			asm.JEq.Imm(asm.R3, 0, "notmid"),
			asm.Mov.Imm(asm.R2, int32(s.sizes[1]-fcsBytes-full)),
			asm.Mov.Imm(asm.R3, imixMask(2)).WithSymbol("notmid"),
			asm.RSh.Reg(asm.R3, asm.R1),
			asm.And.Imm(asm.R3, 1),
			asm.JEq.Imm(asm.R3, 0, "sized"),
			asm.Mov.Imm(asm.R2, 0),
			asm.JEq.Imm(asm.R2, 0, "pickdst").WithSymbol("sized"),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.FnXdpAdjustTail.Call(),
			asm.JNE.Imm(asm.R0, 0, "drop"),
		)
	}
	var pick asm.Instructions
	if n := len(s.Dsts); n > 1 {
		pick = asm.Instructions{ // dstIndex
			asm.LoadImm(asm.R1, dstHashMul-1<<64, asm.DWord), // dstHashMul as an int64
			asm.Mul.Reg(asm.R1, asm.R9),
			asm.RSh.Imm(asm.R1, 32),
			asm.Mul.Imm(asm.R1, int32(n)),
			asm.RSh.Imm(asm.R1, 32),
			asm.StoreMem(asm.RFP, -8, asm.R1, asm.Word),
		}
	} else {
		pick = asm.Instructions{asm.StoreImm(asm.RFP, -8, 0, asm.Word)}
	}
	pick[0] = pick[0].WithSymbol("pickdst")
	ins = append(ins, pick...)
	ins = append(ins, mapLookup(dsts, -8, "drop")...)
	ins = append(ins,
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, int32(s.minLen)),
		asm.JGT.Reg(asm.R4, asm.R3, "drop"),
	)
	ins = append(ins, s.writeFrame()...)
	return append(ins,
		asm.Mov.Imm(asm.R0, xdpTX),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
	)
}

// writeFrame emits the stores of every header byte and the tag (R2 data,
// R3 data_end, R7 now, R8 destination value, R9 sequence number): the
// constant bytes from the template as immediates, then the fields that vary
// per frame.
func (s spec) writeFrame() asm.Instructions {
	ins := s.storeConstant()
	ins = append(ins, s.ipLength()...)
	if s.family == IPv4 {
		ins = append(ins, s.storeIPv4Fields()...)
	} else {
		ins = append(ins, s.storeIPv6Fields()...)
	}
	ins = append(ins,
		asm.StoreMem(asm.R2, int16(s.tag+tagSeq), asm.R9, asm.Word),
		// The time word: now modulo 2^48, the path above (tagWord).
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.LSh.Imm(asm.R1, 64-timeBits),
		asm.RSh.Imm(asm.R1, 64-timeBits),
	)
	if len(s.Paths) > 0 {
		ins = append(ins,
			asm.LoadMem(asm.R4, asm.R8, dstPath, asm.Half),
			asm.LSh.Imm(asm.R4, timeBits),
			asm.Or.Reg(asm.R1, asm.R4),
		)
	}
	return append(ins, asm.StoreMem(asm.R2, int16(s.tag+tagTime), asm.R1, asm.DWord))
}

// varying marks the bytes of the headers and tag that vary per frame: the
// tag's sequence number and time, the destination address, IPv4's header
// checksum and, with IMIX, the IP and UDP lengths.
func (s spec) varying() []bool {
	imix := len(s.sizes) > 1
	varies := make([]bool, s.minLen)
	mark := func(off, n int) {
		for i := off; i < off+n; i++ {
			varies[i] = true
		}
	}
	mark(s.tag+tagSeq, 12) // sequence number, time and path
	if s.family == IPv4 {
		mark(s.l3+10, 2) // checksum
		mark(s.l3+16, 4) // destination
		if imix {
			mark(s.l3+2, 2) // total length
			mark(s.l4+4, 2) // UDP length
		}
	} else {
		mark(s.l3+24, 16) // destination
		if imix {
			mark(s.l3+4, 2) // payload length
			mark(s.l4+4, 2) // UDP length
		}
	}
	return varies
}

// storeConstant emits the stores of the bytes that do not vary, runs of
// the template as immediates (R2 data).
func (s spec) storeConstant() asm.Instructions {
	varies := s.varying()
	tmpl := s.template()
	var ins asm.Instructions
	for i := 0; i < len(varies); {
		if varies[i] {
			i++
			continue
		}
		j := i
		for j < len(varies) && !varies[j] {
			j++
		}
		ins = append(ins, storeBytes(asm.R2, i, tmpl[i:j])...)
		i = j
	}
	return ins
}

// ipLength emits R5 = the IP packet length (IPv4 total length, IPv6
// payload length): the template's, or with IMIX this frame's, from data
// (R2) and data_end (R3).
func (s spec) ipLength() asm.Instructions {
	if len(s.sizes) == 1 {
		ipLen := int32(s.maxLen() - s.l3)
		if s.family == IPv6 {
			ipLen = int32(s.maxLen() - s.l4)
		}
		return asm.Instructions{asm.Mov.Imm(asm.R5, ipLen)}
	}
	ins := asm.Instructions{
		asm.Mov.Reg(asm.R5, asm.R3),
		asm.Sub.Reg(asm.R5, asm.R2),
		asm.Add.Imm(asm.R5, -int32(s.l3)),
	}
	if s.family == IPv6 {
		ins = append(ins, asm.Add.Imm(asm.R5, -ipv6Bytes))
	}
	return ins
}

// storeIPv4Fields emits the stores of the IPv4 fields that vary: the
// header checksum, from the destination value's partial sum (R8) and the
// length (R5), the destination and, with IMIX, the total and UDP lengths.
func (s spec) storeIPv4Fields() asm.Instructions {
	ins := asm.Instructions{
		asm.LoadMem(asm.R1, asm.R8, dstPartial, asm.Word),
		asm.Add.Reg(asm.R1, asm.R5),
	}
	ins = append(ins, foldSum(asm.R1, asm.R4)...)
	ins = append(ins,
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.StoreMem(asm.R2, int16(s.l3+10), asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R8, 0, asm.Word),
		asm.StoreMem(asm.R2, int16(s.l3+16), asm.R1, asm.Word),
	)
	if len(s.sizes) > 1 {
		ins = append(ins,
			asm.Mov.Reg(asm.R1, asm.R5),
			asm.HostTo(asm.BE, asm.R1, asm.Half),
			asm.StoreMem(asm.R2, int16(s.l3+2), asm.R1, asm.Half),
			asm.Add.Imm(asm.R5, -ipv4Bytes),
			asm.HostTo(asm.BE, asm.R5, asm.Half),
			asm.StoreMem(asm.R2, int16(s.l4+4), asm.R5, asm.Half),
		)
	}
	return ins
}

// storeIPv6Fields emits the stores of the IPv6 fields that vary: the
// destination, from the destination value (R8), and with IMIX the payload
// and UDP lengths (R5).
func (s spec) storeIPv6Fields() asm.Instructions {
	ins := asm.Instructions{
		asm.LoadMem(asm.R1, asm.R8, 0, asm.DWord),
		asm.StoreMem(asm.R2, int16(s.l3+24), asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R8, 8, asm.DWord),
		asm.StoreMem(asm.R2, int16(s.l3+32), asm.R1, asm.DWord),
	}
	if len(s.sizes) > 1 {
		ins = append(ins,
			asm.HostTo(asm.BE, asm.R5, asm.Half),
			asm.StoreMem(asm.R2, int16(s.l3+4), asm.R5, asm.Half),
			asm.StoreMem(asm.R2, int16(s.l4+4), asm.R5, asm.Half),
		)
	}
	return ins
}
