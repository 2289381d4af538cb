package bounce

import (
	"runtime"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"golang.org/x/sys/unix"
)

// Run sends every frame received on port in out of port out, rewritten to
// go from MAC src to MAC dst, on a thread pinned to cpu, until stop closes.
// The ports share one UMEM, as pnap's do: frames move as descriptors. It
// waits as pnap's loop does by default: SCHED_FIFO at the loop's priority
// (when allowed), no spin, asleep in poll only when a round found nothing.
func Run(in, out *xsk.Port, dst, src [6]byte, cpu int, stop <-chan struct{}) {
	runtime.LockOSThread() // never unlocked: the pinned real-time thread ends with the goroutine
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
	unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 1 /* SCHED_FIFO */, Priority: forwarder.DefaultPriority}, 0)
	u := in.Umem()
	pfd := []unix.PollFd{{Fd: int32(in.FD()), Events: unix.POLLIN}}
	frames := make([][]byte, 64)
	for {
		select {
		case <-stop:
			return
		default:
		}
		u.Refill()
		n := in.Receive(frames)
		if n == 0 {
			unix.Poll(pfd, 100)
			continue
		}
		for _, f := range frames[:n] {
			copy(f[0:6], dst[:])
			copy(f[6:12], src[:])
		}
		sent, _ := out.Send(frames[:n])
		u.Recycle(frames[sent:n])
	}
}
