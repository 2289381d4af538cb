package forwarder

import (
	"fmt"
	"runtime"
	"sync/atomic"

	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/internal/monotime"
	"github.com/pnap-project/pnap/internal/setting"
	"golang.org/x/sys/unix"
)

// Loop is one worker thread: it serves one queue of every port (receive,
// decide, send), so no ring has two producers.
type Loop struct {
	w     *Worker
	ports []*xsk.Port // indexed as in the Plane
	cpu   int
	opt   LoopOptions

	stop    atomic.Bool
	slowBuf SlowFrame
	// one holds the frame injectAll sends, so sending it allocates nothing.
	one [1][]byte
}

// LoopOptions say where a Loop hands what it does not forward, and how
// much it takes at once. The zero value is usable.
type LoopOptions struct {
	// Batch is the most frames taken off one port's RX ring at a time;
	// 1 to MaxBatch, default DefaultBatch.
	Batch int
	// Slow receives copies of frames owed an ICMP error (ActSlow); a full
	// channel, or none, means the frame is only dropped.
	Slow chan<- SlowFrame
	// Inject, when set, carries frames (active probes) for this Loop to
	// send; it wakes the Loop from poll.
	Inject *InjectRing
	// ProbeReply, when set, is given every frame answering a probe
	// (ActProbe) with the time it was received, from monotime.Now. The
	// frame is only valid during the call: copy it. It must not block.
	ProbeReply func(frame []byte, at int64)
}

// DefaultBatch and MaxBatch bound LoopOptions.Batch. 64 amortises a ring
// operation's syscall and cache misses over enough frames without holding
// a batch's latency long at low rates.
const (
	DefaultBatch = 64
	MaxBatch     = 1024
)

// ValidateBatch says why n cannot be a Batch. NewLoop takes zero for the
// default; a configuration that writes 0 is refused.
func ValidateBatch(n int) error {
	return setting.Int("batch", n, 1, MaxBatch)
}

// NewLoop makes the loop that serves ports, indexed as in w's Plane, with
// w, on a thread pinned to cpu when cpu >= 0.
func NewLoop(w *Worker, ports []*xsk.Port, cpu int, opt LoopOptions) *Loop {
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	return &Loop{w: w, ports: ports, cpu: cpu, opt: opt}
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
// to its CPU if it has one) and blocks in poll(2) when there is nothing to do.
func (l *Loop) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if l.cpu >= 0 {
		var set unix.CPUSet
		set.Set(l.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pinning the worker to CPU %d: %w", l.cpu, err)
		}
	}
	pfds := make([]unix.PollFd, len(l.ports), len(l.ports)+1)
	for i, p := range l.ports {
		pfds[i] = unix.PollFd{Fd: int32(p.FD()), Events: unix.POLLIN}
	}
	if l.opt.Inject != nil {
		pfds = append(pfds, unix.PollFd{Fd: int32(l.opt.Inject.efd), Events: unix.POLLIN})
	}
	frames := make([][]byte, l.opt.Batch)
	decisions := make([]Decision, l.opt.Batch)
	perPort := make([][][]byte, len(l.ports))
	for i := range perPort {
		perPort[i] = make([][]byte, 0, l.opt.Batch)
	}
	for !l.stop.Load() {
		if _, err := unix.Poll(pfds, 100); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
		for in, p := range l.ports {
			l.serve(uint8(in), p, frames, decisions, perPort)
		}
		if l.opt.Inject != nil && l.opt.Inject.head.Load() != l.opt.Inject.tail.Load() {
			l.opt.Inject.drain()
			l.injectAll()
		}
	}
	return nil
}

// injectAll sends every frame queued on the Inject ring.
func (l *Loop) injectAll() {
	r := l.opt.Inject
	h, t := r.head.Load(), r.tail.Load()
	for ; h != t; h++ {
		s := &r.slots[h&r.mask]
		if int(s.port) >= len(l.ports) {
			continue
		}
		l.one[0] = s.data[:s.n]
		sent, bytes := l.ports[s.port].Send(l.one[:])
		l.w.CountTx(s.port, uint64(sent), bytes, uint64(1-sent))
	}
	r.head.Store(h)
}

// serve handles one batch received on port in. perPort collects, per
// egress port, the frames to send (as much of each as is sent on).
func (l *Loop) serve(in uint8, p *xsk.Port, frames [][]byte, decisions []Decision, perPort [][][]byte) {
	n := p.Receive(frames)
	if n == 0 {
		return
	}
	fs, ds := frames[:n], decisions[:n]
	l.w.Process(in, fs, ds)
	for i := range perPort {
		perPort[i] = perPort[i][:0]
	}
	for i := range ds {
		switch ds[i].Action {
		case ActForward:
			perPort[ds[i].Port] = append(perPort[ds[i].Port], fs[i][ds[i].Skip:ds[i].End])
		case ActProbe:
			if l.opt.ProbeReply != nil {
				l.opt.ProbeReply(fs[i], monotime.Now())
			}
		case ActSlow:
			if l.opt.Slow != nil {
				sf := &l.slowBuf
				sf.Port, sf.Decision = in, ds[i]
				sf.Len = uint16(copy(sf.Head[:], fs[i]))
				select {
				case l.opt.Slow <- *sf:
				default:
				}
			}
		}
	}
	for e, out := range perPort {
		if len(out) > 0 {
			sent, bytes := l.ports[e].Send(out)
			l.w.CountTx(uint8(e), uint64(sent), bytes, uint64(len(out)-sent))
		}
	}
	// Every received frame was copied or dropped: give them all back.
	p.Release()
}
