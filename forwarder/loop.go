package forwarder

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/internal/monotime"
	"github.com/pnap-project/pnap/internal/setting"
	"golang.org/x/sys/unix"
)

// Loop is one worker thread: it serves one queue of every port (receive,
// decide, send), so no ring has two producers, and all its ports share one
// xsk.Umem, so a forwarded frame moves from port to port as a descriptor.
type Loop struct {
	w     *Worker
	ports []*xsk.Port // indexed as in the Plane
	umem  *xsk.Umem
	cpu   int
	opt   LoopOptions

	stop    atomic.Bool
	slowBuf SlowFrame
	// one holds the frame injectAll sends, so sending it allocates nothing.
	one [1][]byte
	// recycle collects a batch's frames that go back to the UMEM.
	recycle [][]byte
	stats   loopCounters
	// ready gets the outcome of the thread's set-up (pinning, priority).
	ready chan error
}

// LoopOptions say where a Loop hands what it does not forward, how much it
// takes at once and how it waits. The zero value is usable.
type LoopOptions struct {
	// Batch is the most frames taken off one port's RX ring at a time;
	// 1 to MaxBatch, default DefaultBatch.
	Batch int
	// Spin is how long the loop keeps polling its rings after the last
	// frame before it sleeps in poll(2): waking from poll costs tens of
	// microseconds per frame at low rates, spinning costs the CPU
	// (LoopStats.SpinSeconds says how much). 0 sleeps at once.
	Spin time.Duration
	// BusyPoll makes every round ask each socket to run its interface's
	// receive (recvfrom), for sockets set up with xsk.Port.PreferBusyPoll.
	BusyPoll bool
	// Priority, when not 0, runs the worker's thread SCHED_FIFO at this
	// priority (1..99; needs CAP_SYS_NICE), so that the kernel's receive
	// work on the same CPU (a NAPI thread, softirqs) gets the CPU only
	// while the worker has nothing to do. At the normal priority a flood
	// made them share it, and the receive side won: it filled a ring the
	// worker could not drain, and the worker forwarded a tenth of its peak.
	Priority int
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

// DefaultSpin is LoopOptions.Spin as pnapd's loops run it: none. A
// real-time worker that spins on the CPU where its NIC's receive work runs
// (veth's NAPI thread in the lab) holds that work off for the whole spin:
// the RFC 2544 lab measured p50 53 µs with 50 µs of spin against 15 µs
// without. Spin pays where receive work runs on other CPUs.
const DefaultSpin = 0

// MaxSpin bounds LoopOptions.Spin: beyond it the loop is as good as
// always busy.
const MaxSpin = 10 * time.Millisecond

// ValidateBatch says why n cannot be a Batch. NewLoop takes zero for the
// default; a configuration that writes 0 is refused.
func ValidateBatch(n int) error {
	return setting.Int("batch", n, 1, MaxBatch)
}

// DefaultPriority is LoopOptions.Priority as pnapd's loops run it: above
// every normal task, below the kernel's threaded interrupts (50).
const DefaultPriority = 10

// ValidatePriority says why p cannot be a Priority.
func ValidatePriority(p int) error { return setting.Int("priority", p, 0, 99) }

// ValidateSpin says why d cannot be a Spin.
func ValidateSpin(d time.Duration) error {
	if d < 0 || d > MaxSpin {
		return setting.Errorf("spin_us", "spin_us = %d is out of range 0..%d", d.Microseconds(), MaxSpin.Microseconds())
	}
	return nil
}

// NewLoop makes the loop that serves ports, indexed as in w's Plane and
// all in one Umem, with w, on a thread pinned to cpu when cpu >= 0.
func NewLoop(w *Worker, ports []*xsk.Port, cpu int, opt LoopOptions) *Loop {
	if opt.Batch <= 0 {
		opt.Batch = DefaultBatch
	}
	l := &Loop{w: w, ports: ports, cpu: cpu, opt: opt, recycle: make([][]byte, 0, opt.Batch), ready: make(chan error, 1)}
	if len(ports) > 0 {
		l.umem = ports[0].Umem()
	}
	return l
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
// to its CPU if it has one, at its Priority), polls its rings while there
// is work and for Spin after, and then blocks in poll(2). It never unlocks
// the thread: pinned and perhaps real-time, it must end with the goroutine
// that called Run rather than go back to serve others.
func (l *Loop) Run() error {
	runtime.LockOSThread()
	err := l.setUp()
	l.ready <- err
	if err != nil {
		return err
	}
	pfds := make([]unix.PollFd, len(l.ports), len(l.ports)+1)
	for i, p := range l.ports {
		pfds[i] = unix.PollFd{Fd: int32(p.FD()), Events: unix.POLLIN}
	}
	if l.opt.Inject != nil {
		pfds = append(pfds, unix.PollFd{Fd: int32(l.opt.Inject.efd), Events: unix.POLLIN})
	}
	b := newBatch(l.opt.Batch, len(l.ports))
	var idleSince int64 // when the rings last ran dry; 0 while busy
	for !l.stop.Load() {
		l.stats.rounds.Store(l.stats.rounds.Load() + 1)
		txPending := l.round(b)
		if b.worked {
			if idleSince != 0 {
				l.stats.spin.Add(uint64(monotime.Now() - idleSince))
				idleSince = 0
			}
			continue
		}
		now := monotime.Now()
		if idleSince == 0 {
			idleSince = now
		}
		if time.Duration(now-idleSince) < l.opt.Spin {
			continue
		}
		l.stats.spin.Add(uint64(now - idleSince))
		idleSince = 0
		timeout := 100
		if txPending {
			timeout = 1 // a link that is down, or a full device: retry soon
		}
		l.stats.sleeps.Add(1)
		if _, err := unix.Poll(pfds, timeout); err != nil && err != unix.EINTR {
			return fmt.Errorf("poll: %w", err)
		}
	}
	return nil
}

// Ready gets, once, nil when Run has set its thread up and serves the
// ports, or the error that stopped it (which Run also returns).
func (l *Loop) Ready() <-chan error { return l.ready }

// setUp checks the ports and sets the thread's CPU and priority.
func (l *Loop) setUp() error {
	if err := l.check(); err != nil {
		return err
	}
	if l.cpu >= 0 {
		var set unix.CPUSet
		set.Set(l.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pinning the worker to CPU %d: %w", l.cpu, err)
		}
	}
	if l.opt.Priority > 0 {
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: schedFIFO, Priority: uint32(l.opt.Priority)}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			return fmt.Errorf("running the worker at SCHED_FIFO priority %d: %w (needs CAP_SYS_NICE; [forwarder] priority = 0 keeps the normal policy)", l.opt.Priority, err)
		}
	}
	return nil
}

// schedFIFO is SCHED_FIFO (include/uapi/linux/sched.h).
const schedFIFO = 1

// check says why the ports cannot be served together.
func (l *Loop) check() error {
	if len(l.ports) > len(l.w.counters) {
		return fmt.Errorf("%d ports, the plane has %d", len(l.ports), len(l.w.counters))
	}
	for _, p := range l.ports {
		if p.Umem() != l.umem {
			return fmt.Errorf("port %s is not in the UMEM of port %s: a loop's ports must share one", p.Name, l.ports[0].Name)
		}
	}
	return nil
}

// batch is a round's working memory, made once per Run.
type batch struct {
	frames    [][]byte
	decisions []Decision
	// perPort collects, per egress port, the frames to send.
	perPort [][][]byte
	worked  bool
}

func newBatch(size, ports int) *batch {
	b := &batch{frames: make([][]byte, size), decisions: make([]Decision, size), perPort: make([][][]byte, ports)}
	for i := range b.perPort {
		b.perPort[i] = make([][]byte, 0, size)
	}
	return b
}

// round moves frames once round every ring: completions and fills, one
// batch from every port, the queued probes. It reports whether frames are
// still waiting to leave.
func (l *Loop) round(b *batch) (txPending bool) {
	if l.opt.BusyPoll {
		for _, p := range l.ports {
			p.Wake()
		}
	}
	txPending = l.umem.Refill()
	b.worked = false
	for in, p := range l.ports {
		if l.serve(uint8(in), p, b) {
			b.worked = true
		}
	}
	if l.opt.Inject != nil && l.opt.Inject.head.Load() != l.opt.Inject.tail.Load() {
		l.opt.Inject.drain()
		l.injectAll()
		b.worked = true
	}
	return txPending
}

// injectAll sends every frame queued on the Inject ring. They come from
// outside the UMEM, so Send copies them: probes are the one copy.
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

// serve handles one batch received on port in: forwarded frames move to
// their egress port's TX ring, every other frame (dropped, handed to the
// slow path as a copy of its head, a probe reply, or found no room on the
// TX ring) goes back to the UMEM. It reports whether there was a batch.
func (l *Loop) serve(in uint8, p *xsk.Port, b *batch) bool {
	n := p.Receive(b.frames)
	if n == 0 {
		return false
	}
	fs, ds := b.frames[:n], b.decisions[:n]
	l.w.Process(in, fs, ds)
	for i := range b.perPort {
		b.perPort[i] = b.perPort[i][:0]
	}
	back := l.recycle[:0]
	for i := range ds {
		switch ds[i].Action {
		case ActForward:
			b.perPort[ds[i].Port] = append(b.perPort[ds[i].Port], fs[i][ds[i].Skip:ds[i].End])
			continue
		case ActProbe:
			if l.opt.ProbeReply != nil {
				l.opt.ProbeReply(fs[i], monotime.Now())
			}
		case ActSlow:
			l.toSlowPath(in, fs[i], &ds[i])
		}
		back = append(back, fs[i])
	}
	for e, out := range b.perPort {
		if len(out) > 0 {
			sent, bytes := l.ports[e].Send(out)
			l.w.CountTx(uint8(e), uint64(sent), bytes, uint64(len(out)-sent))
			back = append(back, out[sent:]...)
		}
	}
	l.umem.Recycle(back)
	l.recycle = back[:0]
	return true
}

// toSlowPath hands a copy of the frame's head to the slow path, unless it
// is backed up.
func (l *Loop) toSlowPath(in uint8, f []byte, d *Decision) {
	if l.opt.Slow == nil {
		return
	}
	sf := &l.slowBuf
	sf.Port, sf.Decision = in, *d
	sf.Len = uint16(copy(sf.Head[:], f))
	select {
	case l.opt.Slow <- *sf:
	default:
	}
}

// loopCounters are a Loop's own counters, read by Stats from any goroutine.
type loopCounters struct {
	sleeps atomic.Uint64
	spin   atomic.Uint64 // nanoseconds spent polling empty rings
	// rounds counts the Loop's rounds, busy or idle (poll returns at least
	// every 100 ms): a watchdog that sees it stand still has a stuck
	// worker. Only the Loop writes it: a plain store, no locked add.
	rounds atomic.Uint64
}

// LoopStats say how a Loop waited.
type LoopStats struct {
	// Rounds counts the rounds it ran, idle ones included.
	Rounds uint64
	// Sleeps counts the times it blocked in poll(2).
	Sleeps uint64
	// SpinSeconds is the time it spent polling empty rings before new
	// frames came or it slept: the CPU that Spin costs.
	SpinSeconds float64
}

// Stats reads the Loop's counters.
func (l *Loop) Stats() LoopStats {
	return LoopStats{Rounds: l.stats.rounds.Load(), Sleeps: l.stats.sleeps.Load(), SpinSeconds: float64(l.stats.spin.Load()) / 1e9}
}
