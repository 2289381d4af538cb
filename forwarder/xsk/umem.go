package xsk

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Umem is the frame memory one worker shares between all its sockets
// (XDP_SHARED_UMEM, across interfaces since Linux 5.10): a frame received on
// one port leaves by another as its descriptor, never copied. Every frame is
// at any time in exactly one place: a port's fill, RX, TX or completion
// ring, the worker's hands (received, not yet sent or recycled), or the
// free list; Census checks it.
//
// Only the goroutine of the worker that serves the ports may use a Umem and
// its ports, Close included (after the worker stopped).
type Umem struct {
	opt       Options
	mem       []byte
	base      uintptr
	frameSize uint64
	frameMask uint64
	// free holds the address of every frame nobody holds; its capacity is
	// every frame, so giving frames back never allocates.
	free  []uint64
	ports []*Port
	// owner registered the memory with the kernel; later sockets share it
	// through its descriptor.
	owner    *Port
	zeroCopy bool
	// held counts frames handed out by Receive and not yet sent or
	// recycled: the one place Census cannot look into.
	held   int
	closed bool
}

// NewUmem maps the frame memory of a worker that serves ports sockets:
// opt.Frames frames for each. Zero sizes in opt stand for the defaults.
func NewUmem(ports int, opt Options) (*Umem, error) {
	opt.fill()
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if ports < 1 {
		return nil, fmt.Errorf("a UMEM for %d ports", ports)
	}
	n := ports * opt.Frames
	mem, err := unix.Mmap(-1, 0, n*opt.FrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mapping %d frames of UMEM: %w", n, err)
	}
	u := &Umem{opt: opt, mem: mem, base: uintptr(unsafe.Pointer(&mem[0])),
		frameSize: uint64(opt.FrameSize), frameMask: uint64(opt.FrameSize - 1), free: make([]uint64, n)}
	for i := range u.free {
		// Lowest addresses on top: the first frames used are adjacent.
		u.free[i] = uint64(n-1-i) * u.frameSize
	}
	return u, nil
}

// Frames is the number of frames in the UMEM.
func (u *Umem) Frames() int { return len(u.mem) / int(u.frameSize) }

// ZeroCopy says whether the sockets bound in zero-copy mode: the NIC
// writes and reads the frames itself. In copy mode (veth, and drivers
// without AF_XDP support) the kernel copies each frame in and out, but the
// worker still never copies between ports.
func (u *Umem) ZeroCopy() bool { return u.zeroCopy }

// Mode names the mode for logs: "zero-copy" or "copy".
func (u *Umem) Mode() string {
	if u.zeroCopy {
		return "zero-copy"
	}
	return "copy"
}

// Recycle gives frames back to the free list: frames received and dropped,
// or not sent. Frames that are not UMEM memory are ignored.
func (u *Umem) Recycle(frames [][]byte) {
	for _, f := range frames {
		a := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(f))) - u.base)
		if a >= uint64(len(u.mem)) || len(u.free) == cap(u.free) {
			continue // not ours, or recycled twice (Census reports it)
		}
		u.free = append(u.free, a&^u.frameMask)
		u.held--
	}
}

// Refill moves the kernel's frames round: it takes every port's completed
// TX frames onto the free list, tops every fill ring up from it, and makes
// the kernel send what is still on a TX ring. Call it once per round.
// It reports whether a TX ring still holds frames the kernel has not taken
// (a link that is down, or a full device queue).
func (u *Umem) Refill() (txPending bool) {
	for _, p := range u.ports {
		p.reap()
		if p.tx.pending() > 0 {
			p.kick()
			txPending = txPending || p.tx.pending() > 0
		}
	}
	for _, p := range u.ports {
		p.fillUp()
	}
	return txPending
}

// Close closes every port and unmaps the frames: no frame handed out may
// be used after it.
func (u *Umem) Close() error {
	if u.closed {
		return nil
	}
	u.closed = true
	var errs []error
	for i := len(u.ports) - 1; i >= 0; i-- {
		errs = append(errs, u.ports[i].Close())
	}
	errs = append(errs, unix.Munmap(u.mem))
	u.mem, u.free = nil, nil
	return errors.Join(errs...)
}

// Census counts where the frames are, checking that each is in exactly one
// place. It reads rings the kernel writes: call it only while no traffic
// moves and the worker is stopped, as tests do.
type Census struct {
	Free, Fill, RX, TX, Completion int
	// Held were handed out by Receive and not yet sent or recycled.
	Held int
}

// Census walks the free list and every port's rings. It fails when a frame
// is in two places, or when frames are missing: in flight in the kernel
// (give it a moment), or leaked. In copy mode the kernel also keeps a
// frame it took from a fill ring when the RX ring was full, on a free list
// of its own, and receives into it first: receive one more frame on that
// port to bring it back into view.
func (u *Umem) Census() (Census, error) {
	var c Census
	where := make([]string, u.Frames())
	var errs []error
	mark := func(addr uint64, place string, count *int) {
		i := int(addr / u.frameSize)
		if i >= len(where) {
			errs = append(errs, fmt.Errorf("%s holds address %#x, outside the UMEM", place, addr))
			return
		}
		if where[i] != "" {
			errs = append(errs, fmt.Errorf("frame %d is both in %s and in %s", i, where[i], place))
		}
		where[i] = place
		*count++
	}
	for _, a := range u.free {
		mark(a, "the free list", &c.Free)
	}
	for _, p := range u.ports {
		for i := p.fill.consumer.Load(); i != p.fill.own; i++ {
			mark(*p.fill.addr(i), p.Name+"'s fill ring", &c.Fill)
		}
		for i := p.rx.own; i != p.rx.producer.Load(); i++ {
			mark(p.rx.desc(i).Addr, p.Name+"'s RX ring", &c.RX)
		}
		for i := p.tx.consumer.Load(); i != p.tx.own; i++ {
			mark(p.tx.desc(i).Addr, p.Name+"'s TX ring", &c.TX)
		}
		for i := p.comp.own; i != p.comp.producer.Load(); i++ {
			mark(*p.comp.addr(i), p.Name+"'s completion ring", &c.Completion)
		}
	}
	c.Held = u.held
	if missing := u.Frames() - c.Free - c.Fill - c.RX - c.TX - c.Completion - c.Held; missing != 0 {
		errs = append(errs, fmt.Errorf("%d frames are in no ring, not free and not held (%+v)", missing, c))
	}
	return c, errors.Join(errs...)
}
