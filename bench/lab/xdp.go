//go:build linux

package lab

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// XDPPass is the smallest XDP program: every frame goes on to the kernel.
// A veth takes XDP_TX'd or redirected frames only while it has NAPI, which
// an attached XDP program (or GRO) gives it.
var XDPPass = asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}

// AttachXDP loads insns as an XDP program and attaches it to l with a
// bpf_link, inside l's namespace; both are closed when tb ends. It fails tb
// on error.
func (l *Link) AttachXDP(tb testing.TB, insns asm.Instructions) {
	tb.Helper()
	err := l.NS.Do(func() error {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL", Instructions: insns})
		if err != nil {
			return err
		}
		lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: l.Index})
		if err != nil {
			prog.Close()
			return err
		}
		tb.Cleanup(func() { lk.Close(); prog.Close() })
		return nil
	})
	if err != nil {
		tb.Fatalf("XDP program on %s: %v", l, err)
	}
}
