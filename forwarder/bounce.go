package forwarder

import (
	"runtime"

	"github.com/pnap-project/pnap/forwarder/xsk"
	"golang.org/x/sys/unix"
)

// Bounce is the benchmarks' peer "raw AF_XDP port-to-port without lookup":
// every frame from port in goes out of port out with only its MACs
// rewritten, through the same ports, copies and kicks as a Loop, on a thread
// pinned to cpu, until stop closes. It measures what Go plus AF_XDP costs
// before pnap's parsing and lookup; it is not a forwarder.
func Bounce(in, out *xsk.Port, dst, src MAC, cpu int, stop <-chan struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
	pfd := []unix.PollFd{{Fd: int32(in.FD()), Events: unix.POLLIN}}
	frames := make([][]byte, 64)
	for {
		select {
		case <-stop:
			return
		default:
		}
		unix.Poll(pfd, 100)
		n := in.Receive(frames)
		if n == 0 {
			continue
		}
		for _, f := range frames[:n] {
			copy(f[0:6], dst[:])
			copy(f[6:12], src[:])
		}
		out.Send(frames[:n])
		in.Release()
	}
}
