package forwarder_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/pnap-project/pnap/bench/bounce"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/traffic"
	"github.com/pnap-project/pnap/forwarder"
	"golang.org/x/sys/unix"
)

// xdpMd mirrors struct xdp_md, the context BPF_PROG_RUN takes for XDP.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// liveGenerator sends copies of one frame out of an interface with
// BPF_PROG_RUN in live-frames mode (how xdp-trafficgen works: ~3.7 Mpps
// here, far above what any forwarder on this path reaches). Its program
// rewrites the MACs, TTL and header checksum of every copy: the pages are
// recycled, and a forwarder that rewrites frames in place (the kernel) would
// otherwise send later copies out with its own MACs and a lower TTL.
type liveGenerator struct {
	prog, pass *ebpf.Program
	attach     link.Link
	ifindex    int
}

func newLiveGenerator(tb testing.TB, ns *lab.NS, l *lab.Link, frame []byte) *liveGenerator {
	tb.Helper()
	traffic.RequireLiveFrames(tb)
	g := &liveGenerator{ifindex: l.Index}
	err := ns.Do(func() error {
		var err error
		g.pass, err = ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: lab.XDPPass})
		if err != nil {
			return err
		}
		// XDP_TX in live-frames mode needs a program on the interface.
		if g.attach, err = link.AttachXDP(link.XDPOptions{Program: g.pass, Interface: l.Index}); err != nil {
			return err
		}
		g.prog, err = liveProgram(frame)
		return err
	})
	if err != nil {
		tb.Skipf("live-frames generator unavailable: %v", err)
	}
	tb.Cleanup(func() { g.attach.Close(); g.pass.Close(); g.prog.Close() })
	return g
}

// liveProgram is a live-frames program that sends copies of frame.
func liveProgram(frame []byte) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: append(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
	}, restoreHeaders(frame)...)})
}

// send transmits n copies of frame from a thread in ns pinned to cpu.
func (g *liveGenerator) send(tb testing.TB, ns *lab.NS, cpu int, frame []byte, n uint32) time.Duration {
	tb.Helper()
	return runLive(tb, ns, cpu, g.prog, g.ifindex, frame, n)
}

// runLive runs prog repeat times over frame in live-frames mode, on a thread
// in ns pinned to cpu, as if received on ifindex, and returns how long it took.
func runLive(tb testing.TB, ns *lab.NS, cpu int, prog *ebpf.Program, ifindex int, frame []byte, repeat uint32) time.Duration {
	tb.Helper()
	var took time.Duration
	err := ns.Do(func() error {
		var set unix.CPUSet
		set.Set(cpu)
		unix.SchedSetaffinity(0, &set)
		start := time.Now()
		_, err := prog.Run(&ebpf.RunOptions{
			Data: frame, Repeat: repeat, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64,
			Context: &xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)},
		})
		took = time.Since(start)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return took
}

func rxPackets(tb testing.TB, l *lab.Link) uint64 {
	tb.Helper()
	ll, err := l.NS.Handle().LinkByIndex(l.Index)
	if err != nil {
		tb.Fatal(err)
	}
	return ll.Attrs().Statistics.RxPackets
}

// BenchmarkLabForwarding pushes 64 B and 1518 B frames from the customer
// namespace through pnap (AF_XDP, worker on CPU 1) and, in the same run and
// topology, through Linux kernel forwarding, and reports what reaches the
// backbone namespace per second. The generator runs on CPU 0.
func BenchmarkLabForwarding(b *testing.B) {
	for _, size := range []int{64, 1518} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			const n = 2_000_000
			results := map[string]float64{}
			modes := []string{"pnap", "kernel", "bounce"}
			if m := os.Getenv("PNAP_LAB_MODES"); m != "" { // e.g. "pnap", to profile one side
				modes = strings.Split(m, ",")
			}
			for _, mode := range modes {
				x := newLabMode(b, mode)
				frame := lab.UDPFrame(b, x.cl.MAC, x.pc0.MAC, "198.18.0.7", "203.0.113.9", make([]byte, size-4-42))
				gen := newLiveGenerator(b, x.cust, x.cl, frame)
				before := rxPackets(b, x.al)
				took := gen.send(b, x.cust, 0, frame, n)
				time.Sleep(200 * time.Millisecond) // let queues drain
				got := rxPackets(b, x.al) - before
				pps := float64(got) / took.Seconds()
				results[mode] = pps
				b.ReportMetric(pps, mode+"-pps")
				b.ReportMetric(float64(got)/n, mode+"-delivered")
			}
			b.ReportMetric(results["pnap"]/results["kernel"], "pnap/kernel")
			if results["bounce"] > 0 {
				b.ReportMetric(results["pnap"]/results["bounce"], "pnap/bounce")
			}
		})
	}
}

// newLabMode is the forwarding lab with pnap running ("pnap"), its sockets
// served by a bounce instead ("bounce"), or with the kernel of pnap's
// namespace forwarding ("kernel"); the receiving NAPI is on CPU 1 with the
// forwarder. PNAP_LAB_BUSYPOLL=1 makes pnap and the bounce drive it
// themselves, PNAP_LAB_SPIN=µs sets pnap's spin.
func newLabMode(tb testing.TB, mode string) *afxdpLab {
	if mode == "kernel" {
		x := newKernelLab(tb)
		if err := x.pc0.PinNAPI(1); err != nil {
			tb.Fatal(err)
		}
		return x
	}
	busy := os.Getenv("PNAP_LAB_BUSYPOLL") == "1"
	spin, _ := strconv.Atoi(os.Getenv("PNAP_LAB_SPIN"))
	x := newAFXDPLabWith(tb, 1, func(_ *forwarder.Plane, o *forwarder.LoopOptions) {
		o.BusyPoll, o.Spin = busy, time.Duration(spin)*time.Microsecond
	})
	if mode == "bounce" {
		// Same lab and sockets, with the loop replaced by a bounce.
		if err := x.stopLoop(); err != nil {
			tb.Fatal(err)
		}
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			bounce.Run(x.ports[0], x.ports[1], [6]byte(x.al.MAC), [6]byte(x.pb0.MAC), 1, stop)
			close(done)
		}()
		tb.Cleanup(func() { close(stop); <-done })
	}
	if busy {
		busyPoll(tb, x)
	} else if err := x.pc0.PinNAPI(1); err != nil {
		// The receiving veth's work runs in a NAPI thread pinned to CPU 1
		// with the forwarder (ENVIRONMENT.md): otherwise it runs on the
		// generator's CPU and the kernel starves.
		tb.Fatal(err)
	}
	return x
}

// newKernelLab is the forwarding lab with the kernel of pnap's namespace
// forwarding instead of pnap.
func newKernelLab(tb testing.TB) *afxdpLab {
	x := newBareLab(tb)
	// A veth receives XDP_TX'd frames only while it has NAPI: an XDP
	// program (pnap's case) or GRO. GRO collapses the generator's identical
	// copies (measured: 1 in 28 reached IP), so the kernel's port gets an
	// XDP_PASS program instead, and GRO off.
	if err := x.pc0.SetGRO(false); err != nil {
		tb.Fatal(err)
	}
	x.pc0.AttachXDP(tb, lab.XDPPass)
	x.pnap.Sysctl(tb, "net/ipv4/ip_forward", "1")
	x.pnap.AddRoute(tb, "203.0.113.0/24", "198.18.100.1")
	x.pnap.AddNeigh(tb, x.pb0, "198.18.100.1", x.al.MAC)
	x.pnap.AddNeigh(tb, x.pc0, "198.18.0.7", x.cl.MAC)
	return x
}

// busyPoll lets pnap's worker drive the customer port's NAPI itself.
func busyPoll(tb testing.TB, x *afxdpLab) {
	tb.Helper()
	err := x.pnap.DoSysfs(func() error {
		for f, v := range map[string]string{"napi_defer_hard_irqs": "2", "gro_flush_timeout": "200000"} {
			if err := os.WriteFile(filepath.Join("/sys/class/net", x.pc0.Name, f), []byte(v), 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range x.ports {
		if err := p.PreferBusyPoll(20, 64); err != nil {
			tb.Fatal(err)
		}
	}
}

// restoreHeaders is the tail of the generators' programs (R6 = ctx): it
// writes the frame's MACs, TTL and header checksum back into the copy about
// to be sent, then returns XDP_TX.
func restoreHeaders(frame []byte) asm.Instructions {
	ttlWord := binary.BigEndian.Uint16(frame[22:24]) // TTL, protocol
	sum := binary.BigEndian.Uint16(frame[24:26])
	word := func(off int) int64 { return int64(int32(binary.LittleEndian.Uint32(frame[off : off+4]))) }
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 34),
		asm.JGT.Reg(asm.R4, asm.R3, "tx"),
		asm.StoreImm(asm.R2, 0, word(0), asm.Word),
		asm.StoreImm(asm.R2, 4, word(4), asm.Word),
		asm.StoreImm(asm.R2, 8, word(8), asm.Word),
		asm.Mov.Imm(asm.R5, int32(ttlWord>>8|ttlWord<<8)), // stored little-endian
		asm.StoreMem(asm.R2, 22, asm.R5, asm.Half),
		asm.Mov.Imm(asm.R5, int32(sum>>8|sum<<8)),
		asm.StoreMem(asm.R2, 24, asm.R5, asm.Half),
		asm.Mov.Imm(asm.R0, 3).WithSymbol("tx"), // XDP_TX
		asm.Return(),
	}
}
