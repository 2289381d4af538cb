//go:build linux

package rfc2544

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf/asm"
	"github.com/pnap-project/pnap/bench/bounce"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/forwarder/xsk/xsktest"
)

// The forwarders the report compares, by the names its JSON uses.
const (
	Pnap        = "pnap"
	Kernel      = "kernel"
	AFXDPBounce = "afxdp-bounce"
	XDPRedirect = "xdp-redirect"
)

// dutCPU runs every forwarder and its receive NAPI thread; the generator
// runs on genCPU. Two CPUs is all this machine has.
const (
	genCPU = 0
	dutCPU = 1
)

// setup is what every forwarder is given: the topology and the routes.
type setup struct {
	x      *topo.Topology
	pnapd  string          // the pnapd binary
	routes *backboneRoutes // each backbone's share of the routes
}

// startDUT makes x's DUT forward as name does; everything stops in tb's
// cleanup. pnapd and the kernel send each destination to the backbone of
// its longest matching prefix (each backbone holds a share of the
// routes); afxdp-bounce and xdp-redirect, which look nothing up, send
// everything to backbone 0.
func startDUT(tb testing.TB, name string, s *setup) {
	tb.Helper()
	switch name {
	case Pnap:
		startPnapd(tb, s)
	case Kernel:
		startKernel(tb, s)
	case AFXDPBounce:
		startBounce(tb, s)
	case XDPRedirect:
		startRedirect(tb, s)
	default:
		tb.Fatalf("unknown forwarder %q", name)
	}
	// The customer port's receive work runs beside the forwarder, not on
	// the generator's CPU (ENVIRONMENT.md). Attaching XDP re-creates the
	// NAPI thread, so this comes after the forwarder started.
	if err := s.x.Customer.PinNAPI(dutCPU); err != nil {
		tb.Fatal(err)
	}
}

// startPnapd runs the pnapd binary in the DUT namespace with a generated
// configuration and waits until it forwards.
func startPnapd(tb testing.TB, s *setup) {
	dir := tb.TempDir()
	conf := filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(conf, []byte(s.x.PnapdConfigPerBackbone(s.routes.files, []int{dutCPU})), 0o644); err != nil {
		tb.Fatal(err)
	}
	p, ready := topo.StartPnapd(tb, exec.Command(s.pnapd, "run", "-c", conf), s.x.DUT.Do)
	if !ready {
		tb.Fatalf("pnapd did not start forwarding:\n%s", p)
	}
}

// startKernel is Linux forwarding with the same routes, each via its own
// backbone's gateway, loaded over netlink.
func startKernel(tb testing.TB, s *setup) {
	x := s.x
	var kr []topo.KernelRoute
	for i, set := range s.routes.sets {
		bb := x.Backbones[i]
		for _, p := range set {
			gw := bb.Gateway4
			if p.Addr().Is6() {
				gw = bb.Gateway6
			}
			kr = append(kr, topo.KernelRoute{Prefix: p, Gateway: gw, Ifindex: bb.Port.Index})
		}
		x.DUT.AddNeigh(tb, bb.Port, bb.Gateway4.String(), bb.Far.MAC)
		x.DUT.AddNeigh(tb, bb.Port, bb.Gateway6.String(), bb.Far.MAC)
	}
	took, err := topo.LoadKernelRoutes(x.DUT, kr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("kernel: %d routes loaded in %v", len(kr), took.Round(time.Millisecond))
	x.DUT.Sysctl(tb, "net/ipv4/ip_forward", "1")
	x.DUT.Sysctl(tb, "net/ipv6/conf/all/forwarding", "1")
	// The generator's frames arrive XDP_TX'd from the source's veth, which
	// a veth takes only while it has NAPI: an XDP program (what every other
	// forwarder has) or GRO, which collapses the generator's near-identical
	// frames. So the kernel's port gets an XDP_PASS program and GRO off.
	if err := x.Customer.SetGRO(false); err != nil {
		tb.Fatal(err)
	}
	x.Customer.AttachXDP(tb, lab.XDPPass)
}

// startBounce is the raw AF_XDP peer: bounce.Run between the
// customer port and backbone 0's, through pnap's own steering program and
// ports, MAC rewrite only.
func startBounce(tb testing.TB, s *setup) {
	x := s.x
	bb := x.Backbones[0]
	var in, out *xsk.Port
	u := xsktest.NewUmem(tb, 2, xsk.Options{})
	err := x.DUT.Do(func() error {
		for _, l := range []*lab.Link{x.Customer, bb.Port} {
			p, err := xsktest.Open(tb, u, l.Name, l.Index)
			if err != nil {
				return err
			}
			if in == nil {
				in = p
			} else {
				out = p
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		bounce.Run(in, out, [6]byte(bb.Far.MAC), [6]byte(bb.Port.MAC), dutCPU, stop)
		close(done)
	}()
	// Registered after the ports' cleanups, so it runs before them.
	tb.Cleanup(func() { close(stop); <-done })
}

// startRedirect is the ceiling of the path: an XDP program on the customer
// port that rewrites the MACs and redirects every IP frame to backbone 0's
// port, in the kernel, without lookup.
func startRedirect(tb testing.TB, s *setup) {
	x := s.x
	bb := x.Backbones[0]
	dst, src := bb.Far.MAC, bb.Port.MAC
	word := func(b []byte) int64 {
		return int64(int32(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24))
	}
	half := func(b []byte) int64 { return int64(uint16(b[0]) | uint16(b[1])<<8) }
	x.Customer.AttachXDP(tb, asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 14),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R4, asm.R2, 12, asm.Half),
		asm.JEq.Imm(asm.R4, 0x0008, "fwd"), // IPv4, read little-endian
		asm.JEq.Imm(asm.R4, 0xdd86, "fwd"), // IPv6
		asm.Ja.Label("pass"),
		asm.StoreImm(asm.R2, 0, word(dst[0:4]), asm.Word).WithSymbol("fwd"),
		asm.StoreImm(asm.R2, 4, half(dst[4:6]), asm.Half),
		asm.StoreImm(asm.R2, 6, word(src[0:4]), asm.Word),
		asm.StoreImm(asm.R2, 10, half(src[4:6]), asm.Half),
		asm.Mov.Imm(asm.R1, int32(bb.Port.Index)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 2).WithSymbol("pass"), // XDP_PASS
		asm.Return(),
	})
	// A veth accepts redirected frames only while it has NAPI: an XDP
	// program on the far side of backbone 0's port, which the receiver
	// attaches, and here one on the port itself so its peer can be reached.
	bb.Port.AttachXDP(tb, lab.XDPPass)
}

var _ = fmt.Sprint
