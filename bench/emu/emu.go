//go:build linux

package emu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Params describe one direction of the emulated backbone.
type Params struct {
	// Delay is added to every frame, counted from the kernel's receive time.
	Delay time.Duration
	// Jitter spreads each frame's delay uniformly over
	// [Delay-Jitter, Delay+Jitter] (never below 0), after DestDelay's extra
	// delay is added. Frames keep their order (with DestDelay, frames to one
	// prefix do), so a frame whose draw would let it overtake the one ahead
	// leaves right after it instead: see the package doc for what that does.
	Jitter time.Duration
	// Loss is the probability, 0 to 1, that a frame is dropped, drawn
	// independently per frame.
	Loss float64
	// LossOnly, if not empty, narrows Loss to IP frames whose destination
	// lies in one of these prefixes: a failure beyond the backbone's
	// router, whose own BGP session and neighbour discovery carry on (a
	// grey failure). Empty: Loss takes every frame.
	LossOnly []netip.Prefix
	// DestDelay, if not nil, adds to Delay an extra delay per destination:
	// that of the IPv4 /24 or IPv6 /48 holding the frame's destination
	// address, 0 if the table has none or the frame is not IP. Frames to
	// different prefixes then leave independently (a frame to a fast prefix
	// is not held behind one to a slow prefix), frames to one prefix in
	// order. Nil: one delay for all frames, in order.
	DestDelay *DestDelays
}

func (p Params) validate() error {
	switch {
	case p.Delay < 0:
		return fmt.Errorf("delay %v is negative", p.Delay)
	case p.Jitter < 0:
		return fmt.Errorf("jitter %v is negative", p.Jitter)
	case !(p.Loss >= 0 && p.Loss <= 1):
		return fmt.Errorf("loss %v is not within 0..1", p.Loss)
	}
	for _, q := range p.LossOnly {
		if !q.IsValid() {
			return fmt.Errorf("loss only to an invalid prefix")
		}
	}
	return nil
}

// Options size the emulator. The zero value is what New uses.
type Options struct {
	// QueueFrames is the most frames each direction holds; 0 means 65536
	// (650 ms at 100 kpps). With DestDelay, a frame that leaves ahead of
	// older ones keeps its room until they have left too: size this, and
	// QueueBytes, for the longest delay.
	QueueFrames int
	// QueueBytes is the most bytes each direction holds (each frame counts
	// 10 bytes more for its virtio-net header), at most 2 GiB; 0 means
	// 32 MiB, 250 ms of full-size frames at 1 Gbit/s. The bytes are a ring:
	// its pages become resident as traffic first goes round it.
	QueueBytes int
	// Seed seeds loss and jitter draws, for repeatable runs; 0 picks one at
	// random.
	Seed uint64
	// Nice, if not 0, is the nice value of the emulator's thread (-20 to
	// 19). A thread at nice 0 gets about 1 % of a CPU shared with one at
	// -20 (a generator's, say), and its frames leave that much late.
	Nice int
	// CPUs, if not empty, pins the emulator's thread to these CPUs.
	CPUs []int
}

// Counters count one direction's frames. Received = Lost + QueueFull +
// Failed + Forwarded + the frames still queued.
type Counters struct {
	Received  uint64 // read from the input link
	Forwarded uint64 // sent out of the output link
	Lost      uint64 // dropped by the configured loss
	QueueFull uint64 // dropped because the direction held QueueFrames or QueueBytes already
	Failed    uint64 // truncated on receive (larger than 64 KiB) or refused by the kernel on send
	// Late counts frames that left more than LateAfter after their due
	// time, MaxLate the most any frame did: the emulator did not get the
	// CPU in time (see the package doc).
	Late    uint64
	MaxLate time.Duration
	// Overrun counts frames the kernel dropped before the emulator read
	// them (its socket buffer was full): the emulator fell behind. They are
	// not in Received.
	Overrun uint64
}

// LateAfter is how far past its due time a frame may leave before it counts
// as Late: the timing budget of the emulator.
const LateAfter = 500 * time.Microsecond

// Stats holds both directions' counters.
type Stats struct {
	AB, BA Counters
}

// setting is the parameters in force: frames the kernel received at or after
// since (monotonic ns since the epoch) get p, earlier ones prev, so a frame
// that arrived before Set but is read after it keeps the old parameters.
type setting struct {
	p, prev [2]Params
	since   int64
}

// counters is Counters as the loop updates them.
type counters struct {
	received, forwarded, lost, queueFull, failed, late atomic.Uint64
	maxLate                                            atomic.Int64
}

// Emulator forwards frames between two links with delay, jitter and loss.
// Its methods are safe for concurrent use.
type Emulator struct {
	ports   [2]*port // a, b: direction d reads ports[d] and writes ports[1-d]
	lines   [2]line
	setting atomic.Pointer[setting]
	stats   [2]counters
	epoch   time.Time
	rng     *rand.Rand
	stop    int // eventfd that wakes the loop to end it
	done    chan struct{}
	loopErr error // set by the loop before done closes
	tid     atomic.Int64

	txb     [][]byte      // frames of one sendmmsg
	timeout unix.Timespec // ppoll's, here so it does not escape per call
	pfd     []unix.PollFd // a, b, stop

	setMu   sync.Mutex // serialises Set
	mu      sync.Mutex // serialises Stats and Close on the sockets
	closed  bool
	overrun [2]uint64
	err     error
}

// New starts an emulator in ns between links a and b, both in ns: frames
// received on a leave b with ab applied, frames received on b leave a with ba
// applied. ns must not route or own addresses on a and b (New checks, and
// turns IPv6 and GRO off on them) so that its kernel neither answers nor
// forwards what the emulator carries. The emulator is closed at tb's cleanup;
// New fails tb on error.
func New(tb testing.TB, ns *lab.NS, a, b *lab.Link, ab, ba Params) *Emulator {
	tb.Helper()
	e, err := Start(ns, a, b, ab, ba, Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Close(); err != nil {
			tb.Errorf("emu: close: %v", err)
		}
	})
	return e
}

// Start is New with options, for callers with or without a testing.TB: the
// caller must Close the emulator. While it runs, GOMAXPROCS is one higher
// (see procs.go).
func Start(ns *lab.NS, a, b *lab.Link, ab, ba Params, opts Options) (_ *Emulator, err error) {
	if ns == nil || a == nil || b == nil {
		return nil, errors.New("emu: nil namespace or link")
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("emu %s<->%s: %w", a, b, err)
		}
	}()
	if a.NS != ns || b.NS != ns {
		return nil, fmt.Errorf("links %s and %s must both be in %s", a, b, ns.Name)
	}
	if a.Index == b.Index {
		return nil, fmt.Errorf("links a and b are both %s", a)
	}
	for _, p := range []Params{ab, ba} {
		if err := p.validate(); err != nil {
			return nil, err
		}
	}
	if opts.QueueFrames < 0 || opts.QueueBytes < 0 {
		return nil, fmt.Errorf("negative queue size in %+v", opts)
	}
	if opts.QueueBytes > math.MaxInt32 {
		return nil, fmt.Errorf("QueueBytes %d is over 2 GiB, the most a line can address", opts.QueueBytes)
	}
	if opts.QueueFrames == 0 {
		opts.QueueFrames = 1 << 16
	}
	if opts.QueueBytes == 0 {
		opts.QueueBytes = 32 << 20
	}
	if opts.Seed == 0 {
		opts.Seed = rand.Uint64()
	}
	if err := quiet(ns, a, b); err != nil {
		return nil, err
	}

	e := &Emulator{
		epoch: time.Now(),
		rng:   rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		stop:  -1,
		done:  make(chan struct{}),
		txb:   make([][]byte, 0, batch),
	}
	e.setting.Store(&setting{p: [2]Params{ab, ba}, prev: [2]Params{ab, ba}})
	defer func() {
		if err != nil {
			e.closeFDs()
		}
	}()
	for i, l := range []*lab.Link{a, b} {
		if e.ports[i], err = openPort(l); err != nil {
			return nil, err
		}
		e.lines[i] = newLine(opts.QueueFrames, opts.QueueBytes)
	}
	if e.stop, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	e.pfd = []unix.PollFd{
		{Fd: int32(e.ports[0].fd), Events: unix.POLLIN},
		{Fd: int32(e.ports[1].fd), Events: unix.POLLIN},
		{Fd: int32(e.stop), Events: unix.POLLIN},
	}
	ready := make(chan error, 1)
	addProc()
	go e.run(opts, ready)
	if err := <-ready; err != nil {
		<-e.done
		dropProc()
		return nil, err
	}
	return e, nil
}

// quiet makes sure ns's kernel stays off the wire between a and b: no
// routing, no IPv6 (a veth gets a link-local address and talks: router
// solicitations, MLD), no IPv4 address (ARP replies), and no GRO, which
// would merge the frames the emulator must pass one by one.
func quiet(ns *lab.NS, a, b *lab.Link) error {
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		v, err := ns.ReadSysctl(k)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", k, ns.Name, err)
		}
		if v != "0" {
			return fmt.Errorf("%s is %s in %s: the emulator's namespace must not route", k, v, ns.Name)
		}
	}
	for _, l := range []*lab.Link{a, b} {
		if err := ns.Do(func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+l.Name+"/disable_ipv6", []byte("1"), 0)
		}); err != nil {
			return fmt.Errorf("disable IPv6 on %s: %w", l, err)
		}
		addrs, err := ns.Handle().AddrList(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: l.Index}}, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", l, err)
		}
		var have []string
		for _, ad := range addrs {
			if ad.IP.To4() != nil || !ad.IP.IsLinkLocalUnicast() {
				have = append(have, ad.IPNet.String())
			}
		}
		if len(have) > 0 {
			return fmt.Errorf("%s has address %s: the emulator's links must have none (its kernel would answer)", l, strings.Join(have, ", "))
		}
		if err := l.SetGRO(false); err != nil {
			return err
		}
	}
	return nil
}

// Set changes both directions' parameters. It takes effect for the frames
// that arrive from then on (by the kernel's receive time); frames already
// queued keep their due times, so after a cut in delay new frames wait for
// those ahead of them (order is kept; with DestDelay, those to the same
// prefix). A DestDelay table is swapped whole with the rest: each frame gets
// the old table's delay or the new one's, never some of each, so a scenario
// shifts many prefixes at once with one new table.
func (e *Emulator) Set(ab, ba Params) error {
	for _, p := range []Params{ab, ba} {
		if err := p.validate(); err != nil {
			return fmt.Errorf("emu.Set: %w", err)
		}
	}
	// Serialised so that prev is always the setting just replaced.
	e.setMu.Lock()
	defer e.setMu.Unlock()
	old := e.setting.Load()
	e.setting.Store(&setting{p: [2]Params{ab, ba}, prev: old.p, since: e.now()})
	return nil
}

// Params returns the parameters in force.
func (e *Emulator) Params() (ab, ba Params) {
	s := e.setting.Load()
	return s.p[0], s.p[1]
}

// Stats returns the counters so far (final ones after Close).
func (e *Emulator) Stats() Stats {
	e.mu.Lock()
	if !e.closed {
		for i, p := range e.ports {
			e.overrun[i] = p.drops()
		}
	}
	ov := e.overrun
	e.mu.Unlock()
	var s [2]Counters
	for i := range s {
		c := &e.stats[i]
		s[i] = Counters{
			Received:  c.received.Load(),
			Forwarded: c.forwarded.Load(),
			Lost:      c.lost.Load(),
			QueueFull: c.queueFull.Load(),
			Failed:    c.failed.Load(),
			Late:      c.late.Load(),
			MaxLate:   time.Duration(c.maxLate.Load()),
			Overrun:   ov[i],
		}
	}
	return Stats{AB: s[0], BA: s[1]}
}

// Close stops the emulator, dropping the frames still queued, and closes its
// sockets. It returns the error that stopped the emulator early, if any. It
// is safe to call more than once.
func (e *Emulator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return e.err
	}
	e.closed = true
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	if _, err := unix.Write(e.stop, one); err != nil {
		// Without the wake-up the loop would never end: do not close the
		// sockets under it.
		e.err = fmt.Errorf("wake the emulator loop: %w", err)
		return e.err
	}
	<-e.done
	dropProc()
	for i, p := range e.ports {
		e.overrun[i] = p.drops()
	}
	e.err = errors.Join(e.loopErr, e.closeFDs())
	return e.err
}

func (e *Emulator) closeFDs() error {
	var errs []error
	for _, p := range e.ports {
		if p != nil {
			errs = append(errs, p.close())
		}
	}
	if e.stop >= 0 {
		errs = append(errs, unix.Close(e.stop))
		e.stop = -1
	}
	return errors.Join(errs...)
}

// now is the monotonic clock, ns since the epoch.
func (e *Emulator) now() int64 { return int64(time.Since(e.epoch)) }

// run is the emulator's loop, on one locked OS thread: it sleeps in ppoll
// until a frame arrives or the earliest queued frame is due, reads what
// arrived, then sends what is due. It never spins: with nothing queued and
// nothing arriving it sleeps until Close. It reports on ready once the
// thread is set up.
func (e *Emulator) run(opts Options, ready chan<- error) {
	// Never unlocked: the thread, its priority and timer slack end with the
	// loop.
	runtime.LockOSThread()
	defer close(e.done)
	e.tid.Store(int64(unix.Gettid()))
	if err := tune(opts); err != nil {
		ready <- err
		return
	}
	ready <- nil
	for {
		var ts *unix.Timespec
		if due, ok := e.nextDue(); ok {
			e.timeout = unix.NsecToTimespec(max(due-e.now(), 0))
			ts = &e.timeout
		}
		if _, err := unix.Ppoll(e.pfd, ts, nil); err != nil && err != unix.EINTR {
			e.loopErr = fmt.Errorf("ppoll: %w", err)
			return
		}
		if e.pfd[2].Revents != 0 {
			return
		}
		for d := range 2 {
			if e.pfd[d].Revents != 0 {
				if err := e.receive(d); err != nil {
					e.loopErr = err
					return
				}
			}
		}
		for d := range 2 {
			e.transmit(d)
		}
	}
}

// tune sets up the calling thread for the loop.
func tune(opts Options) error {
	// The default 50 µs slack lets the kernel wake the thread that much
	// late; the loop's wake-ups are the emulator's precision.
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("timer slack: %w", err)
	}
	if len(opts.CPUs) > 0 {
		var set unix.CPUSet
		for _, c := range opts.CPUs {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin the emulator to CPUs %v: %w", opts.CPUs, err)
		}
	}
	if opts.Nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, 0, opts.Nice); err != nil {
			return fmt.Errorf("nice %d: %w", opts.Nice, err)
		}
	}
	return nil
}

// nextDue returns the earliest due time of a queued frame.
func (e *Emulator) nextDue() (int64, bool) {
	var due int64
	ok := false
	for d := range e.lines {
		if t, has := e.lines[d].next(); has && (!ok || t < due) {
			due, ok = t, true
		}
	}
	return due, ok
}

// maxRounds bounds the batches read per wake-up, so that a flood on one side
// does not hold back the frames due on the other; the rest waits for the
// next turn of the loop.
const maxRounds = 8

// receive reads what waits on ports[d] and queues it on lines[d].
func (e *Emulator) receive(d int) error {
	p, l, c := e.ports[d], &e.lines[d], &e.stats[d]
	s := e.setting.Load()
	for range maxRounds {
		n, err := p.recv()
		if err != nil {
			// ENETDOWN is reported once when the link goes down; carry on.
			if errors.Is(err, unix.ENETDOWN) {
				return nil
			}
			return err
		}
		if n == 0 {
			return nil
		}
		wall := time.Now() // carries both clocks, for converting the kernel's stamps
		read := int64(wall.Sub(e.epoch))
		for i := range n {
			f, trunc := p.frame(i)
			c.received.Add(1)
			if trunc || len(f) <= vnetHdrLen {
				c.failed.Add(1)
				continue
			}
			at := read
			if st := p.stamp(i); st != 0 {
				// A stamp from the future or from long ago means the wall
				// clock stepped: fall back on the read time.
				if m := monoSince(e.epoch, wall, st); m <= read && m > read-int64(time.Second) {
					at = m
				}

			}
			prm := &s.p[d]
			if at < s.since {
				prm = &s.prev[d]
			}
			if prm.Loss > 0 && prm.lossTakes(f[vnetHdrLen:]) && e.rng.Float64() < prm.Loss {
				c.lost.Add(1)
				continue
			}
			delay, key := e.delay(prm, f[vnetHdrLen:])
			if !l.push(at+delay, key, f) {
				c.queueFull.Add(1)
				continue
			}
			// Only NEEDS_CSUM is valid on transmit (DATA_VALID is receive-only).
			_, q := l.at(l.n - 1)
			q[0] &= vnetNeedsCsum
		}
		if n < batch {
			return nil
		}
	}
	return nil
}

// delay draws the delay of a frame (Ethernet header first) under prm, and
// returns it with the frame's destination key, 0 without DestDelay.
func (e *Emulator) delay(prm *Params, eth []byte) (delay int64, key uint64) {
	delay = int64(prm.Delay)
	if prm.DestDelay != nil {
		var extra int64
		key, extra = prm.DestDelay.lookup(eth)
		delay += extra
	}
	if j := int64(prm.Jitter); j > 0 {
		delay = max(delay+e.rng.Int64N(2*j+1)-j, 0)
	}
	return delay, key
}

// transmit sends the frames of lines[d] that are due out of ports[1-d].
func (e *Emulator) transmit(d int) {
	out, l, c := e.ports[1-d], &e.lines[d], &e.stats[d]
	for {
		now := e.now()
		e.txb = l.ready(now, e.txb[:0])
		if len(e.txb) == 0 {
			return
		}
		var late, maxLate int64
		for _, p := range l.picked {
			if now-p.due > int64(LateAfter) {
				late++
			}
			maxLate = max(maxLate, now-p.due)
		}
		c.late.Add(uint64(late))
		if maxLate > c.maxLate.Load() {
			c.maxLate.Store(maxLate)
		}
		sent, err := out.send(e.txb)
		c.forwarded.Add(uint64(sent))
		if err != nil {
			// The kernel refused the first frame (link down, too big):
			// drop it rather than retry forever.
			sent++
			c.failed.Add(1)
		}
		l.settle(sent)
	}
}
