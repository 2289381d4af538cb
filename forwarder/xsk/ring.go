package xsk

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is one of a socket's four single-producer single-consumer rings,
// mapped from the kernel. Each side writes only its own index, with an
// atomic store that publishes the entries written before it, and reads the
// other side's with an atomic load (the kernel's smp_load_acquire /
// smp_store_release pairing; Go's atomics are at least that strong, on
// arm64 too, where asavie/xdp's plain loads were not).
type ring struct {
	producer *atomic.Uint32
	consumer *atomic.Uint32
	flags    *atomic.Uint32
	entries  unsafe.Pointer // the first entry
	mask     uint32
	// own is this side's index, kept here so that only the other side's
	// index is read from shared memory.
	own uint32
	mem []byte // the whole mapping, for munmap
}

// setRingSize asks for ring opt of fd to have size entries (a power of
// two); the rings are mapped once all their sizes are set.
func setRingSize(fd, opt int, size int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, size); err != nil {
		return fmt.Errorf("ring size %d: %w", size, err)
	}
	return nil
}

// mmap maps a ring of size entries of entry bytes at pgoff, with the
// offsets the kernel reported.
func (r *ring) mmap(fd int, size int, entry uintptr, pgoff int64, off unix.XDPRingOffset) error {
	length := int(off.Desc) + size*int(entry)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("mapping a ring: %w", err)
	}
	r.mem = mem
	r.mask = uint32(size - 1)
	r.producer = (*atomic.Uint32)(unsafe.Pointer(&mem[off.Producer]))
	r.consumer = (*atomic.Uint32)(unsafe.Pointer(&mem[off.Consumer]))
	r.flags = (*atomic.Uint32)(unsafe.Pointer(&mem[off.Flags]))
	r.entries = unsafe.Pointer(&mem[off.Desc])
	return nil
}

func (r *ring) unmap() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	*r = ring{}
	return err
}

// needWakeup says the kernel asked to be woken (XDP_USE_NEED_WAKEUP): by
// sendto for TX, by poll or recvfrom for the fill ring.
func (r *ring) needWakeup() bool { return r.flags.Load()&unix.XDP_RING_NEED_WAKEUP != 0 }

// Producer side (fill, TX): own is the producer index.

// free is how many entries can be produced now.
func (r *ring) free() uint32 { return r.mask + 1 - (r.own - r.consumer.Load()) }

// submit publishes n entries written from own on.
func (r *ring) submit(n uint32) {
	r.own += n
	r.producer.Store(r.own)
}

// pending is how many produced entries the kernel has not consumed yet.
func (r *ring) pending() uint32 { return r.own - r.consumer.Load() }

// Consumer side (RX, completion): own is the consumer index.

// available is how many entries can be consumed now.
func (r *ring) available() uint32 { return r.producer.Load() - r.own }

// release gives n consumed entries back to the kernel.
func (r *ring) release(n uint32) {
	r.own += n
	r.consumer.Store(r.own)
}

// addr and desc are the entry at index i (any index: it wraps).
func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.entries, uintptr(i&r.mask)*8))
}

func (r *ring) desc(i uint32) *unix.XDPDesc {
	return (*unix.XDPDesc)(unsafe.Add(r.entries, uintptr(i&r.mask)*unsafe.Sizeof(unix.XDPDesc{})))
}
