package forwarder

import (
	"net/netip"
	"sync/atomic"

	"github.com/pnap-project/pnap/fib"
)

// SampleKind says what a Sample records.
type SampleKind uint8

// The sample kinds. "Out" is customer → backbone, "in" backbone → customer.
const (
	SampleNone SampleKind = iota
	// SampleSYN: an outbound TCP SYN (Seq is its sequence number).
	SampleSYN
	// SampleSYNACK: an inbound SYN-ACK (Ack acknowledges the SYN's Seq+1).
	SampleSYNACK
	// SampleTSOut: an outbound TCP segment with a new TSval (the first
	// with that value, at most one per flow per rate-limit interval).
	SampleTSOut
	// SampleTSIn: an inbound TCP segment with a timestamp option (TSecr
	// echoes an outbound TSval).
	SampleTSIn
	// SampleEchoRequest and SampleEchoReply: ICMP or ICMPv6 echo, outbound
	// and inbound (SrcPort carries the identifier, Seq the sequence number).
	SampleEchoRequest
	SampleEchoReply
	// SampleTraffic: one in every N forwarded outbound packets, for the
	// per-prefix traffic estimate (Len is the IP packet's length).
	SampleTraffic
)

// Sample is the metadata of one packet that probes measures from. It is
// filled on the fast path without allocating (netip.Addr values from
// AddrFrom4/AddrFrom16 do not allocate) and copied into a SampleRing.
type Sample struct {
	Time int64 // monotonic nanoseconds, read once per batch
	Kind SampleKind
	// Port is the port the packet arrived on.
	Port uint8
	// Route and Backbone: how an outbound packet was routed. Inbound
	// samples leave them zero; the matcher takes them from the outbound
	// packet it pairs the reply with.
	Route    fib.RouteID
	Backbone fib.BackboneID
	Proto    uint8 // 6 TCP, 1 ICMP, 58 ICMPv6, 17 UDP
	// The flow as the packet carries it (an inbound packet's Src is the
	// remote end).
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	TSval, TSecr     uint32
	Len              uint16
}

// SampleRing is a single-producer, single-consumer ring of Samples: one
// worker writes, the probes goroutine reads. Neither side locks or waits;
// a full ring drops the sample and counts it.
type SampleRing struct {
	buf  []Sample
	mask uint64
	// head is the next slot to read (consumer), tail the next to write
	// (producer). The producer publishes a whole batch with one store and
	// keeps its own copies so that it touches the consumer's cache line
	// only when the ring looks full: reading head on every sample cost a
	// cross-core miss each (BenchmarkProcessSampling).
	head atomic.Uint64
	_    [56]byte
	tail atomic.Uint64
	// Producer-private.
	ptail, pending, headSeen uint64
	dropped                  atomic.Uint64
	_                        [24]byte
}

// NewSampleRing makes a ring of size slots (a power of two).
func NewSampleRing(size int) *SampleRing {
	if size <= 0 || size&(size-1) != 0 {
		panic("forwarder: sample ring size must be a power of two")
	}
	return &SampleRing{buf: make([]Sample, size), mask: uint64(size - 1)}
}

// slot returns the next free slot for the producer to fill, or nil when the
// ring is full (the drop is counted). commit publishes the filled slots.
func (r *SampleRing) slot() *Sample {
	t := r.ptail + r.pending
	if t-r.headSeen >= uint64(len(r.buf)) {
		r.headSeen = r.head.Load()
		if t-r.headSeen >= uint64(len(r.buf)) {
			r.dropped.Store(r.dropped.Load() + 1) // only the producer writes it
			return nil
		}
	}
	r.pending++
	return &r.buf[t&r.mask]
}

// commit publishes the slots filled since the last commit.
func (r *SampleRing) commit() {
	if r.pending > 0 {
		r.ptail += r.pending
		r.pending = 0
		r.tail.Store(r.ptail)
	}
}

// Read copies up to len(dst) published samples into dst and returns how
// many. Only one goroutine may read.
func (r *SampleRing) Read(dst []Sample) int {
	h, t := r.head.Load(), r.tail.Load()
	n := 0
	for ; h != t && n < len(dst); h++ {
		dst[n] = r.buf[h&r.mask]
		n++
	}
	r.head.Store(h)
	return n
}

// Dropped is how many samples found the ring full.
func (r *SampleRing) Dropped() uint64 { return r.dropped.Load() }
