//go:build linux

package emu

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

// wire is the lab of every test: ns A --veth-- emulator ns --veth-- ns B.
type wire struct {
	a, e, b *lab.NS
	la, lb  *lab.Link // the outer ends, in A and B
	ea, eb  *lab.Link // the emulator's ends, facing A and B
}

func newWire(t *testing.T) *wire {
	t.Helper()
	lab.RequireRoot(t)
	w := &wire{a: lab.NewNS(t, "emua"), e: lab.NewNS(t, "emue"), b: lab.NewNS(t, "emub")}
	w.la, w.ea = lab.Connect(t, w.a, "va", w.e, "ea", lab.VethOpts{})
	w.eb, w.lb = lab.Connect(t, w.e, "eb", w.b, "vb", lab.VethOpts{})
	// No IPv6 on the outer ends unless a test wants it: their router
	// solicitations and MLD reports would cross the emulator and blur its
	// frame counts.
	w.a.Sysctl(t, "net/ipv6/conf/va/disable_ipv6", "1")
	w.b.Sysctl(t, "net/ipv6/conf/vb/disable_ipv6", "1")
	return w
}

// CPUs of the timing tests: the sender and receiver share harnessCPU, the
// emulator (at nice -20) has emuCPU, as a lab would arrange it. -1: one CPU
// only, nothing pinned.
func cpus() (harnessCPU, emuCPU int) {
	if runtime.NumCPU() < 2 {
		return -1, -1
	}
	return 0, 1
}

// startTimed starts the emulator as the timing tests run it.
func startTimed(t *testing.T, w *wire, ab, ba Params) *Emulator {
	t.Helper()
	var o Options
	if _, c := cpus(); c >= 0 {
		o = Options{Nice: -20, CPUs: []int{c}}
	}
	e, err := Start(w.e, w.ea, w.eb, ab, ba, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// Probe frames are Ethernet/IPv4/UDP, 60 bytes (a 64-byte frame without its
// FCS), or Ethernet/IPv6/UDP, 80 bytes, to a MAC nobody owns so that B's
// kernel drops them on sight. The payload carries a magic, a sequence number
// and the sender's CLOCK_REALTIME just before the sendmmsg that carries it.
const (
	probeLen    = 60
	payloadOff  = 14 + 20 + 8
	payloadOff6 = 14 + 40 + 8
	probeMagic  = 0x706e6170 // "pnap"
)

// probeFrame returns a probe frame from src to dst, payload zero.
func probeFrame(t *testing.T, src net.HardwareAddr, dst netip.Addr) []byte {
	t.Helper()
	payload := make([]byte, probeLen-payloadOff)
	if dst.Is4() {
		return lab.UDPFrame(t, src, sinkMAC, "198.18.0.1", dst.String(), payload)
	}
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: sinkMAC, EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr("2001:2::1").AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 9, DstPort: 40000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// probePayload returns the payload of a probe frame, nil if the frame is
// too short to be one.
func probePayload(f []byte) []byte {
	off := payloadOff
	if len(f) >= 14 && f[12] == 0x86 && f[13] == 0xdd {
		off = payloadOff6
	}
	if len(f) < off+16 {
		return nil
	}
	return f[off:]
}

var sinkMAC = net.HardwareAddr{0x02, 0, 0x5e, 0, 0x53, 0x99}

// precise locks the calling goroutine to its thread, pins it to cpu (unless
// -1) and makes its timer wake-ups exact (1 ns slack instead of 50 µs). The
// thread dies with the goroutine.
func precise(cpu int) error {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0); err != nil {
		return err
	}
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		return unix.SchedSetaffinity(0, &set)
	}
	return nil
}

// sender sends probe frames out of a link at a steady rate, through the
// emulator's own port type.
type sender struct {
	p      *port
	cpu    int
	probes [][]byte // vnet header + probe, one per destination
	frames [][]byte // the batch being sent
	seq    uint32   // sequence number of the next frame
}

func newSender(t *testing.T, l *lab.Link, cpu int) *sender {
	t.Helper()
	p, err := openPort(l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.close() })
	s := &sender{p: p, cpu: cpu, frames: make([][]byte, batch)}
	s.to(t, netip.MustParseAddr("198.18.0.2"))
	return s
}

// to makes the sender send to dsts in turn: frame seq goes to
// dsts[seq%len(dsts)].
func (s *sender) to(t *testing.T, dsts ...netip.Addr) {
	t.Helper()
	s.probes = s.probes[:0]
	for _, d := range dsts {
		s.probes = append(s.probes, append(make([]byte, vnetHdrLen), probeFrame(t, s.p.link.MAC, d)...))
	}
}

// run sends count frames at rate per second and returns when all are sent.
// Above 10 kpps it sends a burst of rate/10k frames (at most 10) every
// 100 µs; all frames of a burst carry the time before the sendmmsg, so the
// last ones are stamped up to ~20 µs early (it shows in the 0 ms baseline).
func (s *sender) run(rate, count int) error {
	errc := make(chan error, 1)
	go func() {
		if err := precise(s.cpu); err != nil {
			errc <- err
			return
		}
		errc <- s.loop(rate, count)
	}()
	return <-errc
}

func (s *sender) loop(rate, count int) error {
	burst := min(max(rate/10_000, 1), 10)
	gap := time.Second * time.Duration(burst) / time.Duration(rate)
	var next unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &next); err != nil {
		return err
	}
	for sent := 0; sent < count; {
		k := min(burst, count-sent)
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &now); err != nil {
			return err
		}
		for i := range k {
			seq := s.seq + uint32(i)
			f := append(s.frames[i][:0], s.probes[seq%uint32(len(s.probes))]...)
			s.frames[i] = f
			pl := probePayload(f[vnetHdrLen:])
			binary.BigEndian.PutUint32(pl[0:], probeMagic)
			binary.BigEndian.PutUint32(pl[4:], seq)
			binary.BigEndian.PutUint64(pl[8:], uint64(now.Nano()))
		}
		for done := 0; done < k; {
			n, err := s.p.send(s.frames[done:k])
			if err != nil {
				return fmt.Errorf("sender: %w", err)
			}
			done += n
		}
		s.seq += uint32(k)
		sent += k
		next = unix.NsecToTimespec(next.Nano() + int64(gap))
		for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &next, nil) == unix.EINTR {
		}
	}
	return nil
}

// receiver collects probe frames on a link: for each sequence number in
// [from, from+n), the delay from the sender's stamp to the kernel's receive
// stamp. Its fields may be read after finish.
type receiver struct {
	p         *port
	cpu       int
	from      uint32
	delay     []int64 // ns, by sequence number - from; -1 until received
	sent      []int64 // sender's stamp (Unix ns), likewise
	arrival   []int   // place in the order of arrival, likewise
	arrived   int
	dups      int
	reordered int // frames that arrived after one with a higher sequence number
	last      int // highest index received so far
	stop      int // eventfd
	done      chan struct{}
	err       error
}

func newReceiver(t *testing.T, l *lab.Link, cpu int, from uint32, n int) *receiver {
	t.Helper()
	p, err := openPort(l)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		p.close()
		t.Fatal(err)
	}
	// 32 MiB: 400 ms of probes, should the receiver fall behind on a busy
	// machine.
	if err := unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
		p.close()
		t.Fatal(err)
	}
	r := &receiver{p: p, cpu: cpu, from: from, delay: make([]int64, n), sent: make([]int64, n), arrival: make([]int, n), last: -1, stop: stop, done: make(chan struct{})}
	for i := range r.delay {
		r.delay[i], r.sent[i], r.arrival[i] = -1, -1, -1
	}
	go r.loop()
	t.Cleanup(func() { r.finish(); p.close(); unix.Close(stop) })
	return r
}

func (r *receiver) loop() {
	defer close(r.done)
	if r.err = precise(r.cpu); r.err != nil {
		return
	}
	pfd := []unix.PollFd{{Fd: int32(r.stop), Events: unix.POLLIN}, {Fd: int32(r.p.fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Ppoll(pfd, nil, nil); err != nil && err != unix.EINTR {
			r.err = err
			return
		}
		for {
			n, err := r.p.recv()
			if err != nil {
				r.err = err
				return
			}
			for i := range n {
				f, _ := r.p.frame(i)
				r.take(f[vnetHdrLen:], r.p.stamp(i))
			}
			if n < batch {
				break
			}
		}
		if pfd[0].Revents != 0 {
			return
		}
	}
}

func (r *receiver) take(f []byte, stamp int64) {
	pl := probePayload(f)
	if pl == nil || binary.BigEndian.Uint32(pl) != probeMagic {
		return // ARP, IPv6 chatter and the like
	}
	i := int(binary.BigEndian.Uint32(pl[4:]) - r.from)
	if i < 0 || i >= len(r.delay) {
		return
	}
	if r.delay[i] >= 0 {
		r.dups++
		return
	}
	if i < r.last {
		r.reordered++
	}
	r.last = max(r.last, i)
	r.sent[i] = int64(binary.BigEndian.Uint64(pl[8:]))
	r.delay[i] = stamp - r.sent[i]
	r.arrival[i] = r.arrived
	r.arrived++
}

// finish stops the receiver (wait for the frames in flight first) and
// returns the frames its socket dropped for want of room: frames the
// measurement lost, not the emulator.
func (r *receiver) finish() uint64 {
	select {
	case <-r.done:
	default:
		unix.Write(r.stop, []byte{1, 0, 0, 0, 0, 0, 0, 0})
		<-r.done
	}
	return r.p.drops()
}

// delays returns the delays that arrived and how many did not.
func (r *receiver) delays() (got []int64, missing int) {
	for _, d := range r.delay {
		if d < 0 {
			missing++
			continue
		}
		got = append(got, d)
	}
	return got, missing
}

// canary sleeps 1 ms at a time on a CPU and records how late it wakes: the
// stalls the machine imposes on that CPU, for telling them from the
// emulator's own errors. It runs SCHED_FIFO, so that neither the emulator
// nor any other time-shared thread delays it: what does is the kernel's own
// work (ksoftirqd, rcu, kworkers; the kernel is not preemptible) and the
// hypervisor.
type canary struct {
	stop  chan struct{}
	done  chan struct{}
	late  []time.Duration // wake-ups later than LateAfter
	wakes int
	err   error
}

func startCanary(cpu int) *canary {
	c := &canary{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if c.err = precise(cpu); c.err != nil {
			return
		}
		if c.err = unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: 1}, 0); c.err != nil {
			return
		}
		var next unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &next)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			next = unix.NsecToTimespec(next.Nano() + int64(time.Millisecond))
			for unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &next, nil) == unix.EINTR {
			}
			var now unix.Timespec
			unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
			c.wakes++
			if late := time.Duration(now.Nano() - next.Nano()); late > LateAfter {
				c.late = append(c.late, late)
				next = now // no catching up in a burst
			}
		}
	}()
	return c
}

func (c *canary) finish() *canary {
	close(c.stop)
	<-c.done
	return c
}

func (c *canary) String() string {
	return fmt.Sprintf("%d of %d wake-ups more than %v late (max %v)", len(c.late), c.wakes, LateAfter, slices.Max(append([]time.Duration{0}, c.late...)))
}

// dist summarises delays (ns), sorted in place.
type dist struct{ min, p50, p99, p999, max, mean time.Duration }

func summarise(ds []int64) dist {
	if len(ds) == 0 {
		return dist{}
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return time.Duration(ds[int(f*float64(len(ds)-1))]) }
	var sum int64
	for _, d := range ds {
		sum += d
	}
	return dist{min: time.Duration(ds[0]), p50: q(0.5), p99: q(0.99), p999: q(0.999), max: time.Duration(ds[len(ds)-1]), mean: time.Duration(sum / int64(len(ds)))}
}

func (d dist) String() string {
	return fmt.Sprintf("min %v p50 %v p99 %v p99.9 %v max %v mean %v", d.min, d.p50, d.p99, d.p999, d.max, d.mean)
}
