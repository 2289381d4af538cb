package xsk

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Port is one AF_XDP socket bound to one queue of one interface, with its
// four rings, in its worker's Umem. Only the worker serving it may receive
// and send on it; Stats may be read from anywhere.
type Port struct {
	// Name, Ifindex and Queue say where the socket is bound; read only.
	Name    string
	Ifindex int
	Queue   int
	umem    *Umem
	fd      int
	fill    ring
	comp    ring
	rx      ring
	tx      ring
	// copied counts frames Send copied into the UMEM (they came from
	// outside it: probes). Forwarded frames are never copied.
	copied   atomic.Uint64
	kickErrs atomic.Uint64
	closed   bool
}

// Open binds an AF_XDP socket to queue of interface ifindex (in the
// calling thread's network namespace), in u, and fills its fill ring. The
// first port registers u with the kernel, trying zero-copy mode first and
// falling back to copy mode (u.Mode says which); later ports share it and
// its mode. name is for errors and logs.
func (u *Umem) Open(name string, ifindex, queue int) (*Port, error) {
	if u.closed {
		return nil, fmt.Errorf("port %s: the UMEM is closed", name)
	}
	p, err := u.open(name, ifindex, queue)
	if err != nil {
		hint := "does the interface have this queue? is the locked-memory limit high enough?"
		if u.zeroCopy {
			hint = "this worker's first port bound in zero-copy mode, and all its ports share its UMEM and mode: use interfaces whose drivers all support AF_XDP zero-copy, or none"
		}
		return nil, fmt.Errorf("port %s queue %d: AF_XDP socket: %w (%s)", name, queue, err, hint)
	}
	if u.owner == nil {
		u.owner = p
	}
	u.ports = append(u.ports, p)
	p.fillUp()
	return p, nil
}

// open makes and binds one socket, releasing it on error.
func (u *Umem) open(name string, ifindex, queue int) (_ *Port, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	p := &Port{Name: name, Ifindex: ifindex, Queue: queue, umem: u, fd: fd}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if u.owner == nil {
		reg := unix.XDPUmemReg{Addr: uint64(u.base), Len: uint64(len(u.mem)), Size: uint32(u.frameSize)}
		if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("registering the UMEM: %w", err)
		}
	}
	if err := p.mapRings(u.opt.RingSize); err != nil {
		return nil, err
	}
	// Copy mode sends at most this many frames per sendto (default 32):
	// a ring's worth saves kicks. Kernels before 6.17 lack the option.
	unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, u.opt.RingSize)
	sa := &unix.SockaddrXDP{Ifindex: uint32(ifindex), QueueID: uint32(queue)}
	if u.owner != nil {
		// A shared socket takes its mode from the UMEM's first.
		sa.Flags, sa.SharedUmemFD = unix.XDP_SHARED_UMEM, uint32(u.owner.fd)
		return p, bind(fd, sa)
	}
	if !u.opt.Copy {
		// Zero-copy first; a failed bind leaves the socket as it was, so
		// copy mode is tried on the same one (a new socket would register
		// the UMEM twice against the locked-memory limit until the kernel
		// released the first).
		sa.Flags = unix.XDP_ZEROCOPY | unix.XDP_USE_NEED_WAKEUP
		if bind(fd, sa) == nil {
			u.zeroCopy = true
			return p, nil
		}
	}
	sa.Flags = unix.XDP_COPY | unix.XDP_USE_NEED_WAKEUP
	return p, bind(fd, sa)
}

// mapRings sizes and maps the socket's fill, completion, RX and TX rings.
// Every socket has its own fill and completion rings, shared UMEM or not:
// the kernel needs them per interface and queue.
func (p *Port) mapRings(size int) error {
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING, unix.XDP_TX_RING} {
		if err := setRingSize(p.fd, opt, size); err != nil {
			return err
		}
	}
	var off unix.XDPMmapOffsets
	l := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return fmt.Errorf("ring offsets: %w", e)
	}
	descSize := unsafe.Sizeof(unix.XDPDesc{})
	return errors.Join(
		p.fill.mmap(p.fd, size, 8, unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr),
		p.comp.mmap(p.fd, size, 8, unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr),
		p.rx.mmap(p.fd, size, descSize, unix.XDP_PGOFF_RX_RING, off.Rx),
		p.tx.mmap(p.fd, size, descSize, unix.XDP_PGOFF_TX_RING, off.Tx),
	)
}

// bind binds, waiting out EBUSY for a moment: a socket just closed on the
// same queue is released by the kernel asynchronously.
func bind(fd int, sa *unix.SockaddrXDP) error {
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Bind(fd, sa)
		if err != unix.EBUSY || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func setsockopt(fd, opt int, val unsafe.Pointer, size uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(val), size, 0); e != 0 {
		return e
	}
	return nil
}

// FD is the socket's file descriptor, for the XSK map and poll.
func (p *Port) FD() int { return p.fd }

// Umem is the memory the port shares with its worker's other ports.
func (p *Port) Umem() *Umem { return p.umem }

// Close unmaps the rings and closes the socket at once (a mapping would
// keep the socket, and its queue, alive). Frames in its rings are lost to
// the UMEM, which is closing too.
func (p *Port) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	errs := []error{p.fill.unmap(), p.comp.unmap(), p.rx.unmap(), p.tx.unmap()}
	if p.fd >= 0 {
		errs = append(errs, unix.Close(p.fd))
		p.fd = -1
	}
	return errors.Join(errs...)
}

// Receive takes up to len(frames) received frames off the RX ring and puts
// them in frames, returning how many. The frames are UMEM memory, the
// caller's until it hands each to some port's Send or to Recycle; their
// capacity ends at the frame's end.
func (p *Port) Receive(frames [][]byte) int {
	r, u := &p.rx, p.umem
	n := min(r.available(), uint32(len(frames)))
	for i := range n {
		d := r.desc(r.own + i)
		end := d.Addr&^u.frameMask + u.frameSize
		frames[i] = u.mem[d.Addr : d.Addr+uint64(d.Len) : end]
	}
	r.release(n)
	u.held += int(n)
	return int(n)
}

// Send puts frames on the TX ring and makes the kernel send them. A frame
// in the UMEM (received on any port of the worker, resliced at will within
// its frame) moves as its descriptor; any other is copied into a free frame.
// It returns how many went on the ring, in order, and their bytes: those
// belong to the kernel now; the rest (the ring or the free list is full)
// are still the caller's.
func (p *Port) Send(frames [][]byte) (sent int, bytes uint64) {
	p.reap()
	r, u := &p.tx, p.umem
	n := min(r.free(), uint32(len(frames)))
	var i uint32
	for ; i < n; i++ {
		f := frames[i]
		a := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(f))) - u.base)
		if a >= uint64(len(u.mem)) {
			if len(u.free) == 0 || uint64(len(f)) > u.frameSize {
				break
			}
			a = u.free[len(u.free)-1]
			u.free = u.free[:len(u.free)-1]
			copy(u.mem[a:a+u.frameSize], f)
			p.copied.Add(1)
			u.held++
		}
		*r.desc(r.own + i) = unix.XDPDesc{Addr: a, Len: uint32(len(f))}
		bytes += uint64(len(f))
	}
	r.submit(i)
	u.held -= int(i)
	p.kick()
	return int(i), bytes
}

// maxKicks bounds the sendto calls of one kick.
const maxKicks = 16

// kick makes the kernel send what is on the TX ring, when it asked to be
// woken (in copy mode: always). Copy mode sends at most its TX budget per
// sendto, so this kicks again while frames remain. Errors are counted, never
// fatal: a link that is down keeps its frames on the ring until it is up.
func (p *Port) kick() {
	for range maxKicks {
		if p.tx.pending() == 0 || (p.umem.zeroCopy && !p.tx.needWakeup()) {
			return
		}
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0, unix.EINTR:
		case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
			// The completion ring or the device is full: make room.
			p.reap()
		default:
			p.kickErrs.Add(1)
			return
		}
	}
}

// reap takes the completed TX frames onto the free list.
func (p *Port) reap() {
	r, u := &p.comp, p.umem
	n := r.available()
	for i := range n {
		u.free = append(u.free, *r.addr(r.own + i)&^u.frameMask)
	}
	r.release(n)
}

// fillUp gives the kernel free frames to receive into, and wakes it when it
// asked (zero-copy drivers stop receiving on an empty fill ring).
func (p *Port) fillUp() {
	r, u := &p.fill, p.umem
	n := min(r.free(), uint32(len(u.free)))
	if n > 0 {
		top := uint32(len(u.free))
		for i := range n {
			*r.addr(r.own + i) = u.free[top-1-i]
		}
		u.free = u.free[:top-n]
		r.submit(n)
	}
	if u.zeroCopy && r.needWakeup() {
		unix.Syscall6(unix.SYS_RECVFROM, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
}

// Stats are the kernel's counters of a socket (XDP_STATISTICS) and the
// port's own.
type Stats struct {
	RxDropped       uint64 // dropped by the kernel for any reason
	RxInvalid       uint64 // descriptors the kernel refused
	TxInvalid       uint64
	RxRingFull      uint64 // the worker did not keep up
	RxFillRingEmpty uint64 // no frame to receive into
	TxRingEmpty     uint64
	// Copied counts frames Send copied into the UMEM from outside it;
	// forwarding never does.
	Copied uint64
	// KickErrors counts sendto failures other than a full ring (a link
	// that is down).
	KickErrors uint64
}

// Stats reads the socket's counters.
func (p *Port) Stats() (Stats, error) {
	var k unix.XDPStatistics
	l := uint32(unsafe.Sizeof(k))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&k)), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return Stats{}, fmt.Errorf("port %s: XDP statistics: %w", p.Name, e)
	}
	return Stats{RxDropped: k.Rx_dropped, RxInvalid: k.Rx_invalid_descs, TxInvalid: k.Tx_invalid_descs,
		RxRingFull: k.Rx_ring_full, RxFillRingEmpty: k.Rx_fill_ring_empty_descs, TxRingEmpty: k.Tx_ring_empty_descs,
		Copied: p.copied.Load(), KickErrors: p.kickErrs.Load()}, nil
}

// PreferBusyPoll makes the socket's poll(2) run the interface's NAPI
// receive loop in the caller's thread (SO_PREFER_BUSY_POLL, kernel >= 5.11),
// for up to usecs and budget frames, so receive work is done only as fast
// as the worker consumes it. The interface also needs napi_defer_hard_irqs
// and gro_flush_timeout set, or interrupts keep scheduling NAPI elsewhere.
func (p *Port) PreferBusyPoll(usecs, budget int) error {
	for _, o := range []struct{ opt, val int }{
		{unix.SO_PREFER_BUSY_POLL, 1}, {unix.SO_BUSY_POLL, usecs}, {unix.SO_BUSY_POLL_BUDGET, budget},
	} {
		if err := unix.SetsockoptInt(p.fd, unix.SOL_SOCKET, o.opt, o.val); err != nil {
			return fmt.Errorf("port %s: busy poll option %d: %w", p.Name, o.opt, err)
		}
	}
	return nil
}

// Wake asks the kernel to run the socket's receive side now (recvfrom):
// with PreferBusyPoll, the interface's NAPI runs in the caller's thread.
func (p *Port) Wake() {
	unix.Syscall6(unix.SYS_RECVFROM, uintptr(p.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}
