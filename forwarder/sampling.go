package forwarder

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// SamplerOptions configure a worker's in-band sampling.
type SamplerOptions struct {
	// Ring receives the samples; the probes goroutine reads it.
	Ring *SampleRing
	// TrafficEvery: one SampleTraffic per this many forwarded outbound
	// packets; 0 means 64.
	TrafficEvery uint32
	// TSRateLimit is the least time between two SampleTSOut of one flow
	// (ePPing's per-flow rate limit); 0 means 100 ms.
	TSRateLimit time.Duration
}

// tsSlot remembers, per flow hash, the last TSval handed over, so that a
// flow yields at most one timestamp sample per rate-limit interval, only the
// first packet carrying a TSval counts, and only the reply echoing it is
// handed over (not every inbound segment).
type tsSlot struct {
	flow  uint32
	tsval uint32
	at    int64 // ns; the lowest bit set once the reply was handed over
}

// The table is 4-way set associative, a set per cache line: with one slot
// per hash, 1000 flows in 4096 slots collided often enough that colliding
// flows evicted each other on every segment and each was sampled every
// time (BenchmarkProcessSampling).
const (
	tsWays = 4
	tsSets = 1024 // per worker: 4096 flows
)

// sampler is a worker's sampling state. It is only touched by its worker.
type sampler struct {
	// The batch being processed: its port, whether that faces a backbone,
	// and the time read once for it.
	in      uint8
	inbound bool
	now     int64

	ring     *SampleRing
	every    uint32
	count    uint32
	limit    int64
	ts       [tsSets][tsWays]tsSlot
	received uint64
}

// EnableSampling makes the worker hand packet metadata to opt.Ring. Call it
// before the worker runs.
func (w *Worker) EnableSampling(opt SamplerOptions) {
	s := &sampler{ring: opt.Ring, every: opt.TrafficEvery, limit: int64(opt.TSRateLimit)}
	if s.every == 0 {
		s.every = 64
	}
	if s.limit == 0 {
		s.limit = int64(100 * time.Millisecond)
	}
	w.sampler = s
}

// worthSampling is finish's quick test, small enough to inline: could the
// frame carry a sample (a TCP SYN or options, an ICMP message)? Most frames
// cannot, and then sampling costs these few byte reads of a header already
// in cache (BenchmarkProcessSampling).
func worthSampling(f []byte, l3 int) bool {
	proto, off := f[l3+6], l3+ipv6HdrLen
	if f[l3]>>4 == 4 {
		proto, off = f[l3+9], l3+int(f[l3]&0x0f)*4
	}
	if proto == 6 {
		return off+13 < len(f) && (f[off+13]&0x02 != 0 || f[off+12]>>4 > 5)
	}
	return proto == 1 || proto == 58
}

// sampleOne samples one forwarded frame that worthSampling chose, or that
// is due for a traffic sample. Only forwarded packets are sampled: what
// pnap measures is the path its traffic takes.
func (w *Worker) sampleOne(f []byte, d *Decision) {
	s := w.sampler
	l3, end := int(d.L3), int(d.End)
	var proto byte
	var off int
	if f[l3]>>4 == 4 {
		if binary.BigEndian.Uint16(f[l3+6:])&0x1fff != 0 {
			return // a later fragment: no transport header
		}
		proto, off = f[l3+9], l3+int(f[l3]&0x0f)*4
	} else {
		proto, off = f[l3+6], l3+ipv6HdrLen
	}
	if d.ToBackbone && s.count >= s.every {
		s.count = 0
		w.sampleTraffic(s.in, f, d, proto, off, s.now)
	}
	switch proto {
	case 6:
		if end < off+20 {
			return
		}
		w.sampleTCP(s.in, f[:end], d, off, s.now, s.inbound)
	case 1, 58:
		if end >= off+8 {
			w.sampleICMP(s.in, f, d, proto, off, s.now, s.inbound)
		}
	}
}

// addrs returns a forwarded packet's source and destination addresses.
func addrs(f []byte, l3 int) (src, dst netip.Addr) {
	if f[l3]>>4 == 4 {
		return netip.AddrFrom4([4]byte(f[l3+12 : l3+16])), netip.AddrFrom4([4]byte(f[l3+16 : l3+20]))
	}
	return netip.AddrFrom16([16]byte(f[l3+8 : l3+24])), netip.AddrFrom16([16]byte(f[l3+24 : l3+40]))
}

func (w *Worker) sampleTraffic(in uint8, f []byte, d *Decision, proto byte, off int, now int64) {
	sm := w.sampler.ring.slot()
	if sm == nil {
		return
	}
	src, dst := addrs(f, int(d.L3))
	*sm = Sample{Time: now, Kind: SampleTraffic, Port: in, Route: d.Route, Backbone: d.Backbone, Proto: proto,
		Src: src, Dst: dst, Len: d.End - uint16(d.L3)}
	if (proto == 6 || proto == 17) && int(d.End) >= off+4 {
		sm.SrcPort = binary.BigEndian.Uint16(f[off:])
		sm.DstPort = binary.BigEndian.Uint16(f[off+2:])
	}
}

// sampleTCP hands over handshakes and timestamps. t is the frame up to the
// end of the IP packet; off is where TCP starts.
func (w *Worker) sampleTCP(in uint8, f []byte, d *Decision, off int, now int64, inbound bool) {
	t := f[off:]
	flags := t[13]
	doff := int(t[12]>>4) * 4
	if doff < 20 || doff > len(t) {
		return
	}
	l3 := int(d.L3)
	sp, dp := binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
	const syn, ack = 0x02, 0x10
	switch {
	case !inbound && flags&(syn|ack) == syn:
		src, dst := addrs(f, l3)
		w.emit(Sample{Time: now, Kind: SampleSYN, Port: in, Route: d.Route, Backbone: d.Backbone, Proto: 6,
			Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Seq: binary.BigEndian.Uint32(t[4:8])})
		return
	case inbound && flags&(syn|ack) == syn|ack:
		src, dst := addrs(f, l3)
		w.emit(Sample{Time: now, Kind: SampleSYNACK, Port: in, Proto: 6,
			Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Ack: binary.BigEndian.Uint32(t[8:12])})
		return
	}
	tsval, tsecr, ok := TCPTimestamps(t[20:doff])
	if !ok {
		return
	}
	s := w.sampler
	if !inbound {
		h := flowHash(f, l3, sp, dp, false)
		set := &s.ts[h%tsSets]
		slot := &set[0]
		for k := range set {
			if set[k].flow == h {
				slot = &set[k]
				if slot.tsval == tsval || now-slot.at < s.limit {
					return
				}
				break
			}
			if set[k].at < slot.at {
				slot = &set[k] // the least recently sampled way, if h is new
			}
		}
		*slot = tsSlot{flow: h, tsval: tsval, at: now &^ 1}
		src, dst := addrs(f, l3)
		w.emit(Sample{Time: now, Kind: SampleTSOut, Port: in, Route: d.Route, Backbone: d.Backbone, Proto: 6,
			Src: src, Dst: dst, SrcPort: sp, DstPort: dp, TSval: tsval, TSecr: tsecr})
		return
	}
	// The reply's flow, in the outbound direction's orientation.
	h := flowHash(f, l3, dp, sp, true)
	set := &s.ts[h%tsSets]
	for k := range set {
		slot := &set[k]
		if slot.flow != h {
			continue
		}
		if slot.tsval != tsecr || slot.at&1 != 0 {
			return
		}
		slot.at |= 1 // matched: later echoes of the same TSval are not new
		src, dst := addrs(f, l3)
		w.emit(Sample{Time: now, Kind: SampleTSIn, Port: in, Proto: 6,
			Src: src, Dst: dst, SrcPort: sp, DstPort: dp, TSval: tsval, TSecr: tsecr})
		return
	}
}

// sampleICMP hands over echo requests (out) and replies (in).
func (w *Worker) sampleICMP(in uint8, f []byte, d *Decision, proto byte, off int, now int64, inbound bool) {
	typ := f[off]
	var kind SampleKind
	switch {
	case !inbound && (proto == 1 && typ == 8 || proto == 58 && typ == 128):
		kind = SampleEchoRequest
	case inbound && (proto == 1 && typ == 0 || proto == 58 && typ == 129):
		kind = SampleEchoReply
	default:
		return
	}
	src, dst := addrs(f, int(d.L3))
	sm := Sample{Time: now, Kind: kind, Port: in, Proto: proto, Src: src, Dst: dst,
		SrcPort: binary.BigEndian.Uint16(f[off+4:]), Seq: uint32(binary.BigEndian.Uint16(f[off+6:]))}
	if !inbound {
		sm.Route, sm.Backbone = d.Route, d.Backbone
	}
	w.emit(sm)
}

func (w *Worker) emit(s Sample) {
	if sm := w.sampler.ring.slot(); sm != nil {
		*sm = s
	}
}

// flowHash identifies a TCP flow in the outbound orientation, read straight
// from the header: swap says the packet is inbound (its source is the
// remote end). A multiply-xorshift mix of the addresses and ports, not a
// byte loop: it runs for every segment carrying timestamps.
func flowHash(f []byte, l3 int, sp, dp uint16, swap bool) uint32 {
	var a, b [2]uint64
	if f[l3]>>4 == 4 {
		a[0] = uint64(binary.BigEndian.Uint32(f[l3+12:]))
		b[0] = uint64(binary.BigEndian.Uint32(f[l3+16:]))
	} else {
		a = [2]uint64{binary.BigEndian.Uint64(f[l3+8:]), binary.BigEndian.Uint64(f[l3+16:])}
		b = [2]uint64{binary.BigEndian.Uint64(f[l3+24:]), binary.BigEndian.Uint64(f[l3+32:])}
	}
	if swap {
		a, b = b, a
	}
	h := uint64(sp)<<16 | uint64(dp)
	for _, x := range [4]uint64{a[0], a[1], b[0], b[1]} {
		h = (h ^ x) * 0x9e3779b97f4a7c15
		h ^= h >> 29
	}
	return uint32(h ^ h>>32)
}

// TCPTimestamps finds the timestamp option (RFC 7323: kind 8, length 10) in
// a TCP header's options. It stops at the end-of-options kind and at any
// malformed length, so no input makes it read out of opts.
func TCPTimestamps(opts []byte) (tsval, tsecr uint32, ok bool) {
	// Most stacks lay the option out as RFC 7323 appendix A suggests:
	// NOP, NOP, kind 8, length 10.
	if len(opts) >= 12 && binary.BigEndian.Uint32(opts) == 0x0101080a {
		return binary.BigEndian.Uint32(opts[4:]), binary.BigEndian.Uint32(opts[8:]), true
	}
	for i := 0; i < len(opts); {
		switch kind := opts[i]; kind {
		case 0: // end of options
			return 0, 0, false
		case 1: // no-op
			i++
		default:
			if i+1 >= len(opts) {
				return 0, 0, false
			}
			n := int(opts[i+1])
			if n < 2 || i+n > len(opts) {
				return 0, 0, false
			}
			if kind == 8 && n == 10 {
				return binary.BigEndian.Uint32(opts[i+2:]), binary.BigEndian.Uint32(opts[i+6:]), true
			}
			i += n
		}
	}
	return 0, 0, false
}
