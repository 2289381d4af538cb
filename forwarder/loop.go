package forwarder

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"

	"github.com/pnap-project/pnap/internal/monotime"
)

// Loop is one worker thread: it serves one queue of every port (receive,
// decide, send), so no ring has two producers. Ports are indexed as in the
// Plane.
type Loop struct {
	Worker *Worker
	Ports  []*Port
	// CPU pins the thread when >= 0.
	CPU   int
	Batch int

	// Slow receives copies of frames owed an ICMP error; full means drop.
	Slow chan SlowFrame
	// Inject, when set, carries frames (active probes) for this Loop to
	// send; it wakes the Loop from poll.
	Inject *InjectRing
	// ProbeReply, when set, is given every frame answering a probe
	// (ActProbe) with the time it was received, from monotime.Now. The
	// frame is only valid during the call: copy it. It must not block.
	ProbeReply func(frame []byte, at int64)

	stop    atomic.Bool
	slowBuf SlowFrame
}

// SlowFrame is the head of a frame handed to the slow path, copied by value
// so that handing it over allocates nothing on the worker. 256 bytes hold
// every header the slow path reads and a quote for the ICMP error.
type SlowFrame struct {
	Port     uint8
	Decision Decision
	Len      uint16
	Head     [256]byte
}

// Frame returns the copied head of the frame.
func (s *SlowFrame) Frame() []byte { return s.Head[:s.Len] }

// Stop asks Run to return within its poll timeout.
func (l *Loop) Stop() { l.stop.Store(true) }

// Run serves the ports until Stop. It locks itself to an OS thread (pinned
// to CPU if set) and blocks in poll(2) when there is nothing to do.
func (l *Loop) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if l.CPU >= 0 {
		var set unix.CPUSet
		set.Set(l.CPU)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pinning the worker to CPU %d: %w", l.CPU, err)
		}
	}
	if l.Batch <= 0 {
		l.Batch = 64
	}
	pfds := make([]unix.PollFd, len(l.Ports), len(l.Ports)+1)
	for i, p := range l.Ports {
		pfds[i] = unix.PollFd{Fd: int32(p.FD()), Events: unix.POLLIN}
	}
	if l.Inject != nil {
		pfds = append(pfds, unix.PollFd{Fd: int32(l.Inject.efd), Events: unix.POLLIN})
	}
	frames := make([][]byte, l.Batch)
	decisions := make([]Decision, l.Batch)
	perPort := make([][]int, len(l.Ports))
	for i := range perPort {
		perPort[i] = make([]int, 0, l.Batch)
	}
	for !l.stop.Load() {
		if _, err := unix.Poll(pfds, 100); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		for in, p := range l.Ports {
			l.serve(uint8(in), p, frames, decisions, perPort)
		}
		if l.Inject != nil && l.Inject.head.Load() != l.Inject.tail.Load() {
			l.Inject.drain()
			l.injectAll()
		}
	}
	return nil
}

// injectAll sends every frame queued on the Inject ring.
func (l *Loop) injectAll() {
	r := l.Inject
	h, t := r.head.Load(), r.tail.Load()
	for ; h != t; h++ {
		s := &r.slots[h&r.mask]
		if int(s.port) >= len(l.Ports) {
			continue
		}
		out := l.Ports[s.port]
		if c := out.sock.NumCompleted(); c > 0 {
			out.sock.Complete(c)
		}
		txd := out.sock.GetDescs(1, false)
		if len(txd) == 0 {
			l.Worker.CountTx(s.port, 0, 0, 1)
			continue
		}
		txd[0].Len = uint32(copy(out.sock.GetFrame(txd[0]), s.data[:s.n]))
		sent := transmit(out.sock, txd)
		out.kick()
		l.Worker.CountTx(s.port, uint64(sent), uint64(s.n)*uint64(sent), uint64(1-sent))
	}
	r.head.Store(h)
}

// serve handles one batch received on port in.
func (l *Loop) serve(in uint8, p *Port, frames [][]byte, decisions []Decision, perPort [][]int) {
	n := p.sock.NumReceived()
	if n == 0 {
		return
	}
	rx := p.sock.Receive(min(n, len(frames)))
	for i, d := range rx {
		frames[i] = p.sock.GetFrame(d)
	}
	fs, ds := frames[:len(rx)], decisions[:len(rx)]
	l.Worker.Process(in, fs, ds)
	for i := range perPort {
		perPort[i] = perPort[i][:0]
	}
	for i := range ds {
		switch ds[i].Action {
		case ActForward:
			perPort[ds[i].Port] = append(perPort[ds[i].Port], i)
		case ActProbe:
			if l.ProbeReply != nil {
				l.ProbeReply(fs[i], monotime.Now())
			}
		case ActSlow:
			if l.Slow != nil {
				sf := &l.slowBuf
				sf.Port, sf.Decision = in, ds[i]
				sf.Len = uint16(copy(sf.Head[:], fs[i]))
				select {
				case l.Slow <- *sf:
				default:
				}
			}
		}
	}
	for e, idxs := range perPort {
		if len(idxs) > 0 {
			l.send(uint8(e), idxs, fs, ds)
		}
	}
	// Every received frame was copied or dropped: give them all back.
	p.sock.Fill(rx)
}

// send copies the frames idxs into port e's UMEM and transmits them. AF_XDP
// on veth runs in copy mode and asavie/xdp gives each socket its own UMEM,
// so forwarding between ports is a copy either way.
func (l *Loop) send(e uint8, idxs []int, fs [][]byte, ds []Decision) {
	out := l.Ports[e]
	if c := out.sock.NumCompleted(); c > 0 {
		out.sock.Complete(c)
	}
	txd := out.sock.GetDescs(len(idxs), false)
	var bytes uint64
	for k := range txd {
		i := idxs[k]
		src := fs[i][ds[i].Skip:ds[i].End]
		n := copy(out.sock.GetFrame(txd[k]), src)
		txd[k].Len = uint32(n)
		bytes += uint64(n)
	}
	sent := transmit(out.sock, txd)
	out.kick()
	l.Worker.CountTx(e, uint64(sent), bytes, uint64(len(idxs)-sent))
}

// transmit puts descs on the TX ring. asavie/xdp's Transmit also makes one
// sendto and panics on an errno it does not expect (ENOBUFS, ENXIO when the
// link goes down); a data plane must not die of that, so the panic is caught
// here, once per batch, and the frames count as not sent.
func transmit(s *xdp.Socket, descs []xdp.Desc) (sent int) {
	free := s.NumFreeTxSlots()
	if len(descs) > free {
		descs = descs[:free]
	}
	if len(descs) == 0 {
		return 0
	}
	defer func() {
		if recover() != nil {
			sent = 0
		}
	}()
	return s.Transmit(descs)
}
