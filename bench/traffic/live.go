//go:build linux

package traffic

import (
	"fmt"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// LiveFrames reports whether this kernel runs XDP programs in live-frames
// mode (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES), the engine of every
// generator here: nil if it does, else why not. Some kernels refuse it even
// to root (6.18.44 in this project's Firecracker VMs answers EPERM, where
// 6.18 before ran it at 12 Mpps). Checked once, with a program that drops
// its one frame.
func LiveFrames() error {
	liveOnce.Do(func() { liveErr = checkLiveFrames() })
	return liveErr
}

var (
	liveOnce sync.Once
	liveErr  error
)

func checkLiveFrames() error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "live_check", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.LoadImm(asm.R0, 1, asm.DWord), asm.Return()}}) // XDP_DROP
	if err != nil {
		return fmt.Errorf("load an XDP program: %w", err)
	}
	defer prog.Close()
	frame := make([]byte, 64)
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: 1, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES}); err != nil {
		return fmt.Errorf("BPF_PROG_RUN in live-frames mode: %w", err)
	}
	return nil
}

// RequireLiveFrames skips tb, saying why, when the kernel will not run XDP
// programs in live-frames mode: there is then no traffic generator to
// drive the test with.
func RequireLiveFrames(tb testing.TB) {
	tb.Helper()
	if err := LiveFrames(); err != nil {
		tb.Skipf("this kernel refuses the live-frames traffic generator (%v): the test needs it to send its load", err)
	}
}
