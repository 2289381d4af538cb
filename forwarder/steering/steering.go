package steering

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// XDP actions (include/uapi/linux/bpf.h).
const (
	xdpDrop = 1
	xdpPass = 2
)

// Header sizes the program parses.
const (
	ethHdrLen  = 14
	vlanTagLen = 4
	ipv4MinHdr = 20
	ipv6HdrLen = 40
)

// Program is the XDP program that sends transit IPv4 and IPv6 to the
// queue's AF_XDP socket, and everything else to the kernel: ARP, NDP,
// multicast and packets addressed to the box itself. A queue without a
// socket in the map falls back to XDP_PASS (bpf_redirect_map's default
// action), so if pnapd stops the kernel keeps forwarding: fail-open.
//
// It is written with cilium/ebpf's asm package so that neither building nor
// running pnap needs clang.
type Program struct {
	XDP    *ebpf.Program // to attach to the interface
	XSKs   *ebpf.Map     // queue index -> AF_XDP socket
	Local4 *ebpf.Map     // IPv4 addresses of the box (4-byte keys)
	Local6 *ebpf.Map     // IPv6 addresses of the box (16-byte keys)
	// Passed counts, per CPU, the frames given to the kernel by PassReason.
	Passed *ebpf.Map
}

// PassReason is why the program gave a frame to the kernel rather than to
// pnap's workers.
type PassReason uint32

// The reasons, in the order of the Passed map's keys.
const (
	PassShort     PassReason = iota // too short for its Ethernet or IP header
	PassNotIP                       // neither IPv4 nor IPv6 (ARP, QinQ, LLDP, ...)
	PassMulticast                   // IPv4 multicast, broadcast or class E; IPv6 multicast
	PassNDP                         // IPv6 neighbour discovery and redirects
	PassLocal                       // addressed to the box
	NumPassReasons
)

var passNames = [NumPassReasons]string{"short", "not_ip", "multicast", "ndp", "local"}

func (r PassReason) String() string {
	if r < NumPassReasons {
		return passNames[r]
	}
	return "unknown"
}

// PassCounts reads Passed, summed over the CPUs.
func (s *Program) PassCounts() ([NumPassReasons]uint64, error) {
	var out [NumPassReasons]uint64
	var perCPU []uint64
	for r := range out {
		if err := s.Passed.Lookup(uint32(r), &perCPU); err != nil {
			return out, fmt.Errorf("reading the XDP pass counters: %w", err)
		}
		for _, n := range perCPU {
			out[r] += n
		}
	}
	return out, nil
}

// Options size the maps. The zero value is usable.
type Options struct {
	Queues     int // XSK map entries; default 64
	LocalAddrs int // local address map entries per family; default 256
	// NoSocketAction is what transit traffic gets when its queue has no
	// socket: XDP_PASS (the default, fail-open). Tests set XDP_DROP to tell
	// "steered to AF_XDP" from "passed to the kernel" with BPF_PROG_RUN.
	NoSocketAction uint32
}

// New creates the maps and loads the program.
func New(opt Options) (*Program, error) {
	if opt.Queues <= 0 {
		opt.Queues = 64
	}
	if opt.LocalAddrs <= 0 {
		opt.LocalAddrs = 256
	}
	if opt.NoSocketAction == 0 {
		opt.NoSocketAction = xdpPass
	}
	s := &Program{}
	var err error
	if s.XSKs, err = ebpf.NewMap(&ebpf.MapSpec{Name: "pnap_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(opt.Queues)}); err != nil {
		return nil, fmt.Errorf("XSK map: %w", explainBPF(err))
	}
	if s.Local4, err = ebpf.NewMap(&ebpf.MapSpec{Name: "pnap_local4", Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: uint32(opt.LocalAddrs)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("local IPv4 map: %w", explainBPF(err))
	}
	if s.Local6, err = ebpf.NewMap(&ebpf.MapSpec{Name: "pnap_local6", Type: ebpf.Hash, KeySize: 16, ValueSize: 1, MaxEntries: uint32(opt.LocalAddrs)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("local IPv6 map: %w", explainBPF(err))
	}
	if s.Passed, err = ebpf.NewMap(&ebpf.MapSpec{Name: "pnap_passed", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: uint32(NumPassReasons)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("pass counter map: %w", explainBPF(err))
	}
	s.XDP, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "pnap_steer",
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: steeringInstructions(s.XSKs.FD(), s.Local4.FD(), s.Local6.FD(), s.Passed.FD(), int32(opt.NoSocketAction)),
	})
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("loading the XDP program: %w", explainBPF(err))
	}
	return s, nil
}

// AddLocal marks a as an address of the box: packets to it go to the kernel.
func (s *Program) AddLocal(a netip.Addr) error {
	one := uint8(1)
	if a.Is4() {
		k := a.As4()
		return s.Local4.Put(k, one)
	}
	k := a.As16()
	return s.Local6.Put(k, one)
}

// RemoveLocal undoes AddLocal: a gone address's traffic is transit again.
func (s *Program) RemoveLocal(a netip.Addr) error {
	var err error
	if a.Is4() {
		err = s.Local4.Delete(a.As4())
	} else {
		err = s.Local6.Delete(a.As16())
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// SetSocket steers queue's transit traffic to the AF_XDP socket fd.
func (s *Program) SetSocket(queue int, fd int) error {
	return s.XSKs.Put(uint32(queue), uint32(fd))
}

// Close releases the program and maps (an attachment holds its own
// reference to the program).
func (s *Program) Close() error {
	var errs []error
	for _, c := range []interface{ Close() error }{s.XDP, s.XSKs, s.Local4, s.Local6, s.Passed} {
		if c != nil && !isNilCloser(c) {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
}

func explainBPF(err error) error {
	return fmt.Errorf("%w (pnap needs CAP_BPF and CAP_NET_ADMIN, or root, and a kernel with BPF and AF_XDP)", err)
}

// Ethertypes and IP fields as the program loads them: little-endian loads
// of network-order bytes.
const (
	leIPv4 = 0x0008
	leIPv6 = 0xdd86
	leVLAN = 0x0081
)

// steeringInstructions is the program. Registers: R6 ctx, R7 L3 offset,
// R8 L3 pointer (both survive helper calls), R2/R3 data/data_end. Every way
// to the kernel goes through a label that sets R9 to its PassReason and
// counts it in the passed map.
func steeringInstructions(xsks, local4, local6, passed int, noSocket int32) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethHdrLen),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half),
		asm.Mov.Imm(asm.R7, ethHdrLen),
		asm.JNE.Imm(asm.R5, leVLAN, "l3"),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethHdrLen+vlanTagLen),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
		asm.LoadMem(asm.R5, asm.R2, 16, asm.Half),
		asm.Mov.Imm(asm.R7, ethHdrLen+vlanTagLen),

		asm.Mov.Reg(asm.R8, asm.R2).WithSymbol("l3"),
		asm.Add.Reg(asm.R8, asm.R7),
		asm.JEq.Imm(asm.R5, leIPv4, "ipv4"),
		asm.JEq.Imm(asm.R5, leIPv6, "ipv6"),
		asm.Ja.Label("notip"),

		// IPv4: multicast and broadcast to the kernel; local addresses too.
		asm.Mov.Reg(asm.R4, asm.R8).WithSymbol("ipv4"),
		asm.Add.Imm(asm.R4, ipv4MinHdr),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
		asm.LoadMem(asm.R5, asm.R8, 16, asm.Byte),
		asm.JGE.Imm(asm.R5, 224, "multicast"),
		asm.LoadMem(asm.R5, asm.R8, 16, asm.Word),
		asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word),
		asm.LoadMapPtr(asm.R1, local4),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "local"),
		asm.Ja.Label("redirect"),

		// IPv6: NDP, multicast and local addresses to the kernel.
		asm.Mov.Reg(asm.R4, asm.R8).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R4, ipv6HdrLen),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
		asm.LoadMem(asm.R5, asm.R8, 24, asm.Byte),
		asm.JEq.Imm(asm.R5, 0xff, "multicast"),
		asm.LoadMem(asm.R5, asm.R8, 6, asm.Byte), // next header
		asm.JNE.Imm(asm.R5, 58, "v6dst"),         // not ICMPv6
		asm.Mov.Reg(asm.R4, asm.R8),
		asm.Add.Imm(asm.R4, ipv6HdrLen+1),
		asm.JGT.Reg(asm.R4, asm.R3, "short"),
		asm.LoadMem(asm.R5, asm.R8, ipv6HdrLen, asm.Byte), // ICMPv6 type
		asm.JLT.Imm(asm.R5, 133, "v6dst"),
		asm.JLE.Imm(asm.R5, 137, "ndp"), // RS, RA, NS, NA, redirect
		asm.LoadMem(asm.R5, asm.R8, 24, asm.DWord).WithSymbol("v6dst"),
		asm.StoreMem(asm.RFP, -16, asm.R5, asm.DWord),
		asm.LoadMem(asm.R5, asm.R8, 32, asm.DWord),
		asm.StoreMem(asm.RFP, -8, asm.R5, asm.DWord),
		asm.LoadMapPtr(asm.R1, local6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -16),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, "local"),

		// Transit: to this queue's socket, or noSocket if it has none.
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word).WithSymbol("redirect"), // rx_queue_index
		asm.LoadMapPtr(asm.R1, xsks),
		asm.Mov.Imm(asm.R3, noSocket),
		asm.FnRedirectMap.Call(),
		asm.Return(),

		asm.Mov.Imm(asm.R9, int32(PassShort)).WithSymbol("short"),
		asm.Ja.Label("count"),
		asm.Mov.Imm(asm.R9, int32(PassNotIP)).WithSymbol("notip"),
		asm.Ja.Label("count"),
		asm.Mov.Imm(asm.R9, int32(PassMulticast)).WithSymbol("multicast"),
		asm.Ja.Label("count"),
		asm.Mov.Imm(asm.R9, int32(PassNDP)).WithSymbol("ndp"),
		asm.Ja.Label("count"),
		asm.Mov.Imm(asm.R9, int32(PassLocal)).WithSymbol("local"),
		// A per-CPU slot: a plain add, no atomic.
		asm.StoreMem(asm.RFP, -24, asm.R9, asm.Word).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, passed),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -24),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
}
