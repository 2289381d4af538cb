package forwarder

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Bounce is the benchmarks' peer "raw AF_XDP port-to-port without lookup":
// every frame from port in goes out of port out with only its MACs
// rewritten, through the same ports, copies and kicks as a Loop, on a thread
// pinned to cpu, until stop closes. It measures what Go plus AF_XDP costs
// before pnap's parsing and lookup; it is not a forwarder.
func Bounce(in, out *Port, dst, src MAC, cpu int, stop <-chan struct{}) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	unix.SchedSetaffinity(0, &set)
	pfd := []unix.PollFd{{Fd: int32(in.FD()), Events: unix.POLLIN}}
	for {
		select {
		case <-stop:
			return
		default:
		}
		unix.Poll(pfd, 100)
		n := in.sock.NumReceived()
		if n == 0 {
			continue
		}
		rx := in.sock.Receive(min(n, 64))
		if c := out.sock.NumCompleted(); c > 0 {
			out.sock.Complete(c)
		}
		txd := out.sock.GetDescs(len(rx), false)
		for k := range txd {
			f := in.sock.GetFrame(rx[k])
			copy(f[0:6], dst[:])
			copy(f[6:12], src[:])
			txd[k].Len = uint32(copy(out.sock.GetFrame(txd[k]), f))
		}
		transmit(out.sock, txd)
		out.kick()
		in.sock.Fill(rx)
	}
}
