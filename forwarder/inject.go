package forwarder

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// injectSlot holds one frame to send; probe frames are small.
type injectSlot struct {
	port uint8
	n    uint16
	data [256]byte
}

// InjectRing carries frames built off the fast path (pnap's active probes)
// to a Loop, which sends them out of the port they name. Producers may be
// several goroutines (they take a mutex: this is not the fast path); the
// Loop is the only consumer and never locks. An eventfd wakes the Loop
// from poll(2) so a probe leaves at once, not at the next packet: the time
// it waits would count in the RTT measured.
type InjectRing struct {
	mu    sync.Mutex
	slots []injectSlot
	mask  uint64
	head  atomic.Uint64 // next to send (Loop)
	tail  atomic.Uint64 // next to fill (producers)
	efd   int
	full  atomic.Uint64
}

// NewInjectRing makes a ring of size slots (a power of two).
func NewInjectRing(size int) (*InjectRing, error) {
	if size <= 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("inject ring size %d: use a power of two", size)
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &InjectRing{slots: make([]injectSlot, size), mask: uint64(size - 1), efd: efd}, nil
}

// Send queues frame to leave by port and wakes the Loop. It returns false,
// counting it, when the ring is full or the frame too long; it never blocks.
func (r *InjectRing) Send(port uint8, frame []byte) bool {
	r.mu.Lock()
	t := r.tail.Load()
	if t-r.head.Load() >= uint64(len(r.slots)) || len(frame) > len(r.slots[0].data) {
		r.mu.Unlock()
		r.full.Add(1)
		return false
	}
	s := &r.slots[t&r.mask]
	s.port, s.n = port, uint16(copy(s.data[:], frame))
	r.tail.Store(t + 1)
	r.mu.Unlock()
	var one = [8]byte{1}
	unix.Write(r.efd, one[:]) // EAGAIN only when the counter is saturated: the Loop is awake anyway
	return true
}

// Refused is how many frames Send could not queue.
func (r *InjectRing) Refused() uint64 { return r.full.Load() }

// Close releases the eventfd; the ring must no longer be used.
func (r *InjectRing) Close() error { return unix.Close(r.efd) }

// drain clears the eventfd (Loop only).
func (r *InjectRing) drain() {
	var b [8]byte
	unix.Read(r.efd, b[:])
}
