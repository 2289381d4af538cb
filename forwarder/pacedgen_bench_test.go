package forwarder_test

import (
	"encoding/binary"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/pnap-project/pnap/bench/lab"
)

// pacedGen is a live-frames generator that keeps its own rate: its program
// sends a copy (XDP_TX) only when the clock has passed the next send time,
// and drops the run otherwise, so one long BPF_PROG_RUN offers a steady
// rate instead of 3.7 Mpps bursts. (Separate short runs cost ~25 ms each
// here, far too slow to pace from user space.)
type pacedGen struct {
	*liveGenerator
	state *ebpf.Map // one value: next send time ns, interval ns, frames sent
	paced *ebpf.Program
}

// xdpDrop is the XDP_DROP action (include/uapi/linux/bpf.h).
const xdpDrop = 1

const (
	stateNext     = 0
	stateInterval = 8
	stateSent     = 16
)

func newPacedGen(tb testing.TB, ns *lab.NS, l *lab.Link, frame []byte) *pacedGen {
	tb.Helper()
	g := &pacedGen{liveGenerator: newLiveGenerator(tb, ns, l, frame)}
	err := ns.Do(func() error {
		var err error
		g.state, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 24, MaxEntries: 1})
		if err != nil {
			return err
		}
		g.paced, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: append(asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.FnKtimeGetNs.Call(),
			asm.Mov.Reg(asm.R7, asm.R0),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, g.state.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.Mov.Reg(asm.R8, asm.R0),
			asm.LoadMem(asm.R1, asm.R8, stateNext, asm.DWord),
			asm.JLT.Reg(asm.R7, asm.R1, "drop"), // not yet
			// next = max(next, now) + interval: no catch-up bursts.
			asm.JGE.Reg(asm.R1, asm.R7, "advance"),
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.LoadMem(asm.R2, asm.R8, stateInterval, asm.DWord).WithSymbol("advance"),
			asm.Add.Reg(asm.R1, asm.R2),
			asm.StoreMem(asm.R8, stateNext, asm.R1, asm.DWord),
			asm.LoadMem(asm.R1, asm.R8, stateSent, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R8, stateSent, asm.R1, asm.DWord),
			// Restore the headers a forwarder may have rewritten in place.
		}, append(restoreHeaders(frame),
			asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
			asm.Return(),
		)...)})
		return err
	})
	if err != nil {
		tb.Skipf("paced generator unavailable: %v", err)
	}
	tb.Cleanup(func() { g.paced.Close(); g.state.Close() })
	return g
}

// offer sends at rate for about d from a thread pinned to cpu, and returns
// how many frames it sent and for how long.
func (g *pacedGen) offer(tb testing.TB, ns *lab.NS, cpu int, frame []byte, rate float64, d time.Duration) (uint64, time.Duration) {
	tb.Helper()
	var v [24]byte
	binary.LittleEndian.PutUint64(v[stateInterval:], uint64(1e9/rate))
	if err := g.state.Put(uint32(0), v[:]); err != nil {
		tb.Fatal(err)
	}
	// A drop-path run costs ~130 ns here (measured: 16.7 M runs took
	// 2.2 s): size the run to last about d.
	repeat := uint32(math.Min(float64(d.Nanoseconds())/130, math.MaxUint32))
	took := runLive(tb, ns, cpu, g.paced, g.ifindex, frame, repeat)
	var out [24]byte
	if err := g.state.Lookup(uint32(0), out[:]); err != nil {
		tb.Fatal(err)
	}
	return binary.LittleEndian.Uint64(out[stateSent:]), took
}

// BenchmarkLabLoad measures, in one run and topology, how pnap, Linux
// forwarding and the AF_XDP bounce carry load through the lab (64 B, 0.5 s
// trials, generator on CPU 0, forwarder and the receiving NAPI on CPU 1):
// the zero-loss rate by binary search, the peak (the most delivered per
// second at any offered rate) and the rate delivered under a flood (the
// generator unpaced, ~3.7 Mpps offered), and flood ÷ peak. "Without loss"
// allows 0.1 %: the veth ring holds 256 frames, a few ms at these rates,
// and a scheduler hiccup on CPU 1 loses more than that for any forwarder.
// PNAP_LAB_MODES picks modes; PNAP_LAB_BUSYPOLL=1 and PNAP_LAB_SPIN=µs set
// pnap's and the bounce's waiting.
func BenchmarkLabLoad(b *testing.B) {
	modes := []string{"pnap", "kernel", "bounce"}
	if m := os.Getenv("PNAP_LAB_MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	for _, mode := range modes {
		x := newLabMode(b, mode)
		frame := lab.UDPFrame(b, x.cl.MAC, x.pc0.MAC, "198.18.0.7", "203.0.113.9", make([]byte, 64-4-42))
		g := newPacedGen(b, x.cust, x.cl, frame)
		// The generator falls short of high asked rates (its pacing loop
		// runs on one CPU too), so the search is over the asked rate and the
		// result is the rate actually offered in the best passing trial.
		lo, hi, best, peak := 0.0, 2e6, 0.0, 0.0
		for range 9 {
			rate := (lo + hi) / 2
			before := rxPackets(b, x.al)
			sent, took := g.offer(b, x.cust, 0, frame, rate, 500*time.Millisecond)
			time.Sleep(50 * time.Millisecond)
			got := rxPackets(b, x.al) - before
			achieved := float64(sent) / took.Seconds()
			peak = max(peak, float64(got)/took.Seconds())
			if float64(got) >= 0.999*float64(sent) {
				lo, best = rate, max(best, achieved)
			} else {
				hi = rate
			}
			b.Logf("%s: offered %.0f pps (asked %.0f), sent %d, delivered %d", mode, achieved, rate, sent, got)
		}
		before := rxPackets(b, x.al)
		took := g.send(b, x.cust, 0, frame, floodFrames)
		time.Sleep(50 * time.Millisecond)
		flood := float64(rxPackets(b, x.al)-before) / took.Seconds()
		peak = max(peak, flood)
		b.Logf("%s: flood of %.0f pps offered for %v: %.0f pps delivered", mode, floodFrames/took.Seconds(), took, flood)
		b.ReportMetric(best, mode+"-zero-loss-pps")
		b.ReportMetric(peak, mode+"-peak-pps")
		b.ReportMetric(flood, mode+"-flood-pps")
		b.ReportMetric(flood/peak, mode+"-flood/peak")
	}
}

// floodFrames makes a flood last about a second: the unpaced generator
// offers ~12 Mpps into the veth, which drops what its ring cannot hold.
const floodFrames = 12_000_000
