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
	flow    uint32
	tsval   uint32
	at      int64
	matched bool
}

const tsSlots = 4096 // per worker; a collision only costs a sample

// sampler is a worker's sampling state. It is only touched by its worker.
type sampler struct {
	ring     *SampleRing
	every    uint32
	count    uint32
	limit    int64
	epoch    time.Time
	ts       [tsSlots]tsSlot
	received uint64
}

// EnableSampling makes the worker hand packet metadata to opt.Ring. Call it
// before the worker runs.
func (w *Worker) EnableSampling(opt SamplerOptions) {
	s := &sampler{ring: opt.Ring, every: opt.TrafficEvery, limit: int64(opt.TSRateLimit), epoch: sampleEpoch}
	if s.every == 0 {
		s.every = 64
	}
	if s.limit == 0 {
		s.limit = int64(100 * time.Millisecond)
	}
	w.sampler = s
}

// sampleEpoch is the zero of Sample.Time, shared by every worker and by
// SampleClock so that samples from different workers compare.
var sampleEpoch = time.Now()

// SampleClock is the current time on Sample.Time's clock.
func SampleClock() int64 { return int64(time.Since(sampleEpoch)) }

// sampleChunk looks at the forwarded frames of one chunk. Only forwarded
// packets are sampled: what pnap measures is the path its traffic takes.
func (w *Worker) sampleChunk(in uint8, frames [][]byte, ds []Decision, now int64) {
	s := w.sampler
	inbound := w.plane.Ports[in].Role == RoleBackbone
	for i := range ds {
		d := &ds[i]
		if d.Action != ActForward {
			continue
		}
		if d.ToBackbone {
			s.count++
			if s.count >= s.every {
				s.count = 0
				w.sampleTraffic(in, frames[i], d, now)
			}
			w.sampleFlow(in, frames[i], d, now, false)
		} else if inbound {
			w.sampleFlow(in, frames[i], d, now, true)
		}
	}
}

// l4 finds a forwarded frame's transport header: protocol, its offset and
// the source and destination addresses. Fragments other than the first
// and IPv6 extension headers are not looked into.
func l4(f []byte, l3 int) (proto uint8, off int, src, dst netip.Addr, ok bool) {
	if f[l3]>>4 == 4 {
		h := f[l3:]
		if binary.BigEndian.Uint16(h[6:8])&0x1fff != 0 {
			return 0, 0, src, dst, false
		}
		off = l3 + int(h[0]&0x0f)*4
		return h[9], off, netip.AddrFrom4([4]byte(h[12:16])), netip.AddrFrom4([4]byte(h[16:20])), true
	}
	h := f[l3:]
	return h[6], l3 + ipv6HdrLen, netip.AddrFrom16([16]byte(h[8:24])), netip.AddrFrom16([16]byte(h[24:40])), true
}

func (w *Worker) sampleTraffic(in uint8, f []byte, d *Decision, now int64) {
	proto, off, src, dst, ok := l4(f, int(d.L3))
	if !ok {
		return
	}
	sm := w.sampler.ring.slot()
	if sm == nil {
		return
	}
	*sm = Sample{Time: now, Kind: SampleTraffic, Port: in, Route: d.Route, Backbone: d.Backbone, Proto: proto,
		Src: src, Dst: dst, Len: d.End - uint16(d.L3)}
	if (proto == 6 || proto == 17) && int(d.End) >= off+4 {
		sm.SrcPort = binary.BigEndian.Uint16(f[off:])
		sm.DstPort = binary.BigEndian.Uint16(f[off+2:])
	}
}

// sampleFlow hands over TCP handshakes, TCP timestamps and ICMP echoes.
func (w *Worker) sampleFlow(in uint8, f []byte, d *Decision, now int64, inbound bool) {
	proto, off, src, dst, ok := l4(f, int(d.L3))
	if !ok {
		return
	}
	end := int(d.End)
	switch proto {
	case 6:
		if end < off+20 {
			return
		}
		t := f[off:end]
		flags := t[13]
		doff := int(t[12]>>4) * 4
		if doff < 20 || doff > len(t) {
			return
		}
		sp, dp := binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4])
		const syn, ack = 0x02, 0x10
		switch {
		case !inbound && flags&(syn|ack) == syn:
			w.emit(Sample{Time: now, Kind: SampleSYN, Port: in, Route: d.Route, Backbone: d.Backbone, Proto: 6,
				Src: src, Dst: dst, SrcPort: sp, DstPort: dp, Seq: binary.BigEndian.Uint32(t[4:8])})
			return
		case inbound && flags&(syn|ack) == syn|ack:
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
			h := flowHash(src, dst, sp, dp)
			slot := &s.ts[h%tsSlots]
			if slot.flow == h && (slot.tsval == tsval || now-slot.at < s.limit) {
				return
			}
			*slot = tsSlot{flow: h, tsval: tsval, at: now}
			w.emit(Sample{Time: now, Kind: SampleTSOut, Port: in, Route: d.Route, Backbone: d.Backbone, Proto: 6,
				Src: src, Dst: dst, SrcPort: sp, DstPort: dp, TSval: tsval, TSecr: tsecr})
			return
		}
		// The reply's flow, in the outbound direction's orientation.
		h := flowHash(dst, src, dp, sp)
		slot := &s.ts[h%tsSlots]
		if slot.flow != h || slot.tsval != tsecr || slot.matched {
			return
		}
		slot.matched = true
		w.emit(Sample{Time: now, Kind: SampleTSIn, Port: in, Proto: 6,
			Src: src, Dst: dst, SrcPort: sp, DstPort: dp, TSval: tsval, TSecr: tsecr})
	case 1, 58:
		if end < off+8 {
			return
		}
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
		sm := Sample{Time: now, Kind: kind, Port: in, Proto: proto, Src: src, Dst: dst,
			SrcPort: binary.BigEndian.Uint16(f[off+4:]), Seq: uint32(binary.BigEndian.Uint16(f[off+6:]))}
		if !inbound {
			sm.Route, sm.Backbone = d.Route, d.Backbone
		}
		w.emit(sm)
	}
}

func (w *Worker) emit(s Sample) {
	if sm := w.sampler.ring.slot(); sm != nil {
		*sm = s
	}
}

// flowHash is FNV-1a over the flow's addresses and ports.
func flowHash(src, dst netip.Addr, sp, dp uint16) uint32 {
	h := uint32(2166136261)
	mix := func(b byte) { h = (h ^ uint32(b)) * 16777619 }
	for _, a := range [2]netip.Addr{src, dst} {
		b := a.As16()
		for _, x := range b {
			mix(x)
		}
	}
	mix(byte(sp >> 8))
	mix(byte(sp))
	mix(byte(dp >> 8))
	mix(byte(dp))
	return h
}

// TCPTimestamps finds the timestamp option (RFC 7323: kind 8, length 10) in
// a TCP header's options. It stops at the end-of-options kind and at any
// malformed length, so no input makes it read out of opts.
func TCPTimestamps(opts []byte) (tsval, tsecr uint32, ok bool) {
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
