package forwarder

import (
	"encoding/binary"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/internal/monotime"
)

// Action is what becomes of one packet.
type Action uint8

const (
	// ActDrop: the packet is dropped and counted under its Reason.
	ActDrop Action = iota
	// ActForward: the frame was rewritten in place; send it out of Port,
	// leaving out its first Skip bytes.
	ActForward
	// ActSlow: dropped and counted like ActDrop, and the sender is owed an
	// ICMP error (time exceeded, unreachable, too big): hand a copy of the
	// frame to the slow path, which builds and rate-limits the answer.
	ActSlow
	// ActProbe: addressed to the probe source address: an answer to one of
	// pnap's probes. Consumed (never forwarded) and handed to probes.
	ActProbe
)

// Decision is the fast path's verdict on one frame.
type Decision struct {
	Action Action
	Reason Reason
	Port   uint8 // egress port, for ActForward and ReasonMTU
	Skip   uint8 // bytes at the start of the frame to leave out (a removed VLAN tag)
	// L3 is the offset of the IP header in the frame as received.
	L3 uint8
	// End is where the IP packet ends in the frame, for ActForward: bytes
	// after it (Ethernet padding, junk) are not sent on.
	End uint16
	// Route and Backbone say how a packet forwarded to a backbone was
	// routed (Backbone is valid when ToBackbone is set).
	Route      fib.RouteID
	Backbone   fib.BackboneID
	ToBackbone bool
}

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	ethHdrLen     = 14
	vlanTagLen    = 4
	ipv4MinHdr    = 20
	ipv6HdrLen    = 40
)

// chunk is how many frames are decided together: the backbone lookups of a
// chunk run as one fib batch lookup, whose cache misses overlap.
const chunk = 64

// Worker is the fast path of one queue. Its methods must be called from
// one goroutine only.
type Worker struct {
	plane    *Plane
	counters []portCounters // by port
	s        scratch
	sampler  *sampler // nil: sampling off
}

// scratch is a chunk's working state, kept in the Worker so that nothing is
// allocated per batch.
type scratch struct {
	mac    [chunk]MAC // next-hop MAC of each forwarded frame
	idx4   [chunk]uint8
	dst4   [chunk]uint32
	idx6   [chunk]uint8
	dst6   [chunk][2]uint64
	routes [chunk]fib.RouteID
	bbs    [chunk]fib.BackboneID
}

// NewWorker makes a worker for plane; its counters cover every port.
func NewWorker(plane *Plane) *Worker {
	return &Worker{plane: plane, counters: make([]portCounters, len(plane.Ports))}
}

// Stats adds this worker's counters for port into s.
func (w *Worker) Stats(port int, s *PortStats) { s.add(&w.counters[port]) }

// CountTx records packets the TX stage put on port's ring, and the ones it
// could not.
func (w *Worker) CountTx(port uint8, packets, bytes, ringFull uint64) {
	c := &w.counters[port]
	bump(&c.txPackets, packets)
	bump(&c.txBytes, bytes)
	if ringFull > 0 {
		bump(&c.drops[ReasonTxRingFull], ringFull)
	}
}

// batchView is what one batch reads: every table loaded once.
type batchView struct {
	bb   *fib.Version
	cust *fib.Version
	hops *Hops
	// The receiving port's MAC and whether it faces a customer, read once.
	mac      MAC
	customer bool
}

// Process decides the fate of each frame received on port in, rewriting
// forwarded frames in place, and counts what it received and dropped. It
// loads the FIBs and the next hops once for the whole batch. out must be at
// least as long as frames.
func (w *Worker) Process(in uint8, frames [][]byte, out []Decision) {
	port := &w.plane.Ports[in]
	view := batchView{bb: w.plane.Backbones.Load(), cust: w.plane.Customers.Load(), hops: w.plane.hops.Load(),
		mac: port.MAC, customer: port.Role == RoleCustomer}
	c := &w.counters[in]
	var rxBytes uint64
	var drops [numReasons]uint64
	if s := w.sampler; s != nil {
		s.in, s.inbound, s.now = in, port.Role == RoleBackbone, monotime.Now()
	}
	for k := 0; k < len(frames); k += chunk {
		fs := frames[k:min(k+chunk, len(frames))]
		ds := out[k : k+len(fs)]
		w.decide(&view, in, fs, ds)
		for i, d := range ds {
			rxBytes += uint64(len(fs[i]))
			if d.Action != ActForward {
				drops[d.Reason]++
			}
		}
	}
	if w.sampler != nil {
		w.sampler.ring.commit() // one publishing store per batch
	}
	bump(&c.rxPackets, uint64(len(frames)))
	bump(&c.rxBytes, rxBytes)
	for r, n := range drops {
		if n != 0 {
			bump(&c.drops[r], n)
		}
	}
}

// decide handles one chunk in three passes: parse and validate each frame
// (resolving customer destinations on the spot: that table is small and
// stays in cache); look up all backbone destinations in one batch per
// family; then finish each forwarded frame (next hop, MTU, TTL, MACs).
func (w *Worker) decide(v *batchView, in uint8, frames [][]byte, out []Decision) {
	s := &w.s
	n4, n6 := 0, 0
	for i, f := range frames {
		d := &out[i]
		switch w.parse(v, in, f, d, &s.mac[i], &s.dst4[n4], &s.dst6[n6]) {
		case 4:
			s.idx4[n4] = uint8(i)
			n4++
		case 6:
			s.idx6[n6] = uint8(i)
			n6++
		}
	}
	if n4 > 0 {
		v.bb.Forward4Batch(s.dst4[:n4], s.routes[:n4], s.bbs[:n4])
		for k := 0; k < n4; k++ {
			w.viaBackbone(v, &out[s.idx4[k]], &s.mac[s.idx4[k]], s.routes[k], s.bbs[k], Fam4)
		}
	}
	if n6 > 0 {
		v.bb.Forward6Batch(s.dst6[:n6], s.routes[:n6], s.bbs[:n6])
		for k := 0; k < n6; k++ {
			w.viaBackbone(v, &out[s.idx6[k]], &s.mac[s.idx6[k]], s.routes[k], s.bbs[k], Fam6)
		}
	}
	for i, f := range frames {
		if out[i].Action == ActForward {
			w.finish(f, &out[i], &s.mac[i])
		}
	}
}

// parse validates a frame and routes it as far as it can without the
// backbone FIB: drops, and customer destinations. For a frame that needs the
// backbone lookup it stores the destination in *dst4 or *dst6 and returns
// 4 or 6. Results go through pointers: returning the decision by value cost
// a tenth of the packet's time in copies.
func (w *Worker) parse(v *batchView, in uint8, f []byte, d *Decision, mac *MAC, dst4 *uint32, dst6 *[2]uint64) int {
	*d = Decision{}
	if len(f) < ethHdrLen {
		d.Action, d.Reason = ActDrop, ReasonMalformed
		return 0
	}
	// Only frames sent to this port are routed (RFC 1812 5.3.4): a flooded,
	// broadcast or multicast frame is not ours to forward.
	if MAC(f[0:6]) != v.mac {
		d.Action, d.Reason = ActDrop, ReasonOtherHost
		return 0
	}
	l3 := ethHdrLen
	et := binary.BigEndian.Uint16(f[12:14])
	if et == etherTypeVLAN {
		if len(f) < ethHdrLen+vlanTagLen {
			d.Action, d.Reason = ActDrop, ReasonMalformed
			return 0
		}
		l3 += vlanTagLen
		et = binary.BigEndian.Uint16(f[16:18])
	}
	d.L3 = uint8(l3)
	switch et {
	case etherTypeIPv4:
		return w.parse4(v, in, f, l3, d, mac, dst4)
	case etherTypeIPv6:
		return w.parse6(v, in, f, l3, d, mac, dst6)
	}
	d.Action, d.Reason = ActDrop, ReasonNotIP
	return 0
}

func (w *Worker) parse4(v *batchView, in uint8, f []byte, l3 int, d *Decision, mac *MAC, dst4 *uint32) int {
	if len(f) < l3+ipv4MinHdr || f[l3]>>4 != 4 {
		d.Action, d.Reason = ActDrop, ReasonMalformed
		return 0
	}
	ihl := int(f[l3]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(f[l3+2 : l3+4]))
	if ihl < ipv4MinHdr || total < ihl || l3+total > len(f) {
		d.Action, d.Reason = ActDrop, ReasonMalformed
		return 0
	}
	h := f[l3 : l3+ihl]
	if !ipv4HeaderSumOK(h) {
		d.Action, d.Reason = ActDrop, ReasonMalformed
		return 0
	}
	dst := binary.BigEndian.Uint32(h[16:20])
	switch {
	case dst == w.plane.probe4 && dst != 0:
		d.Action, d.Reason = ActProbe, ReasonProbeReply
		return 0
	case martian4(dst), martianSource4(binary.BigEndian.Uint32(h[12:16])):
		d.Action, d.Reason = ActDrop, ReasonMartian
		return 0
	case h[8] <= 1:
		d.Action, d.Reason = ActSlow, ReasonTTL
		return 0
	}
	if _, c, ok := v.cust.Forward4(dst); ok {
		w.toCustomer4(v, c, dst, d, mac)
		return 0
	}
	if !v.customer {
		d.Action, d.Reason = ActSlow, ReasonNoRoute
		return 0
	}
	*dst4 = dst
	return 4
}

func (w *Worker) toCustomer4(v *batchView, c fib.BackboneID, dst uint32, d *Decision, mac *MAC) {
	hop := v.hops.Customer[c][Fam4]
	if sub := v.hops.Subnet4[c]; sub.mask != 0 && dst&sub.mask == sub.addr {
		m, ok := v.hops.Neigh4[[4]byte{byte(dst >> 24), byte(dst >> 16), byte(dst >> 8), byte(dst)}]
		if !ok {
			askNeighbour(d, hop.Port)
			return
		}
		hop = NextHop{Port: hop.Port, MAC: m, Resolved: true}
	}
	via(hop, d, mac)
}

// askNeighbour drops a packet for a connected host without a MAC and hands
// it to the slow path, which asks the kernel to resolve the host: nothing
// else would, since pnap's traffic never passes through the kernel.
func askNeighbour(d *Decision, port uint8) {
	d.Action, d.Reason, d.Port = ActSlow, ReasonNoNeighbour, port
}

// via completes d to leave by hop, or to be dropped if hop is unresolved.
func via(hop NextHop, d *Decision, mac *MAC) {
	if !hop.Resolved {
		d.Action, d.Reason = ActDrop, ReasonNoNeighbour
		return
	}
	*mac = hop.MAC
	d.Action, d.Port = ActForward, hop.Port
}

// martianSource4: sources a router must not forward from (RFC 1812
// 5.3.7, RFC 3927 for link-local): the martian destinations and class E.
func martianSource4(src uint32) bool {
	return martian4(src) || src>>28 == 0xf
}

// martian4: destinations never forwarded: this network (0/8), loopback,
// link-local, multicast and the limited broadcast.
func martian4(dst uint32) bool {
	switch dst >> 24 {
	case 0, 127:
		return true
	}
	return dst>>16 == 169<<8|254 || dst>>28 == 0xe || dst == 0xffffffff
}

func (w *Worker) parse6(v *batchView, in uint8, f []byte, l3 int, d *Decision, mac *MAC, dst6 *[2]uint64) int {
	if len(f) < l3+ipv6HdrLen || f[l3]>>4 != 6 {
		d.Action, d.Reason = ActDrop, ReasonMalformed
		return 0
	}
	h := f[l3 : l3+ipv6HdrLen]
	if l3+ipv6HdrLen+int(binary.BigEndian.Uint16(h[4:6])) > len(f) {
		d.Action, d.Reason = ActDrop, ReasonMalformed
		return 0
	}
	hi := binary.BigEndian.Uint64(h[24:32])
	lo := binary.BigEndian.Uint64(h[32:40])
	switch {
	case hi == w.plane.probe6[0] && lo == w.plane.probe6[1] && hi|lo != 0:
		d.Action, d.Reason = ActProbe, ReasonProbeReply
		return 0
	case martian6(hi, lo), martian6(binary.BigEndian.Uint64(h[8:16]), binary.BigEndian.Uint64(h[16:24])):
		// The same set for sources: unspecified, loopback, mapped,
		// link-local (RFC 4291 2.5.6) and multicast are never forwarded.
		d.Action, d.Reason = ActDrop, ReasonMartian
		return 0
	case h[7] <= 1:
		d.Action, d.Reason = ActSlow, ReasonTTL
		return 0
	}
	if _, c, ok := v.cust.Forward6(hi, lo); ok {
		w.toCustomer6(v, c, hi, lo, h[24:40], d, mac)
		return 0
	}
	if !v.customer {
		d.Action, d.Reason = ActSlow, ReasonNoRoute
		return 0
	}
	*dst6 = [2]uint64{hi, lo}
	return 6
}

func (w *Worker) toCustomer6(v *batchView, c fib.BackboneID, hi, lo uint64, raw []byte, d *Decision, mac *MAC) {
	hop := v.hops.Customer[c][Fam6]
	if sub := v.hops.Subnet6[c]; sub.maskHi|sub.maskLo != 0 && hi&sub.maskHi == sub.hi && lo&sub.maskLo == sub.lo {
		m, ok := v.hops.Neigh6[[16]byte(raw)]
		if !ok {
			askNeighbour(d, hop.Port)
			return
		}
		hop = NextHop{Port: hop.Port, MAC: m, Resolved: true}
	}
	via(hop, d, mac)
}

// martian6: unspecified, loopback, IPv4-mapped (deliberately never routed as
// IPv4), link-local and multicast destinations.
func martian6(hi, lo uint64) bool {
	switch {
	case hi == 0 && (lo <= 1 || lo>>32 == 0xffff):
		return true
	case hi>>54 == 0xfe80>>6: // fe80::/10
		return true
	case hi>>56 == 0xff:
		return true
	}
	return false
}

// viaBackbone completes a decision with the backbone lookup's answer.
func (w *Worker) viaBackbone(v *batchView, d *Decision, mac *MAC, r fib.RouteID, b fib.BackboneID, fam int) {
	if r == 0 {
		*d = Decision{Action: ActSlow, Reason: ReasonNoRoute, L3: d.L3}
		return
	}
	hop := v.hops.Backbone[b][fam]
	if !hop.Resolved {
		*d = Decision{Action: ActDrop, Reason: ReasonNoNeighbour, L3: d.L3}
		return
	}
	*mac = hop.MAC
	d.Action, d.Port, d.Route, d.Backbone, d.ToBackbone = ActForward, hop.Port, r, b, true
}

// finish checks the egress MTU, decrements TTL or hop limit and rewrites the
// Ethernet header of a frame to be forwarded.
func (w *Worker) finish(f []byte, d *Decision, mac *MAC) {
	l3 := int(d.L3)
	mtu := w.plane.Ports[d.Port].MTU
	if f[l3]>>4 == 4 {
		h := f[l3:]
		d.End = uint16(l3 + int(binary.BigEndian.Uint16(h[2:4])))
		if int(binary.BigEndian.Uint16(h[2:4])) > mtu {
			if h[6]&0x40 != 0 { // DF: the sender must learn the path MTU
				*d = Decision{Action: ActSlow, Reason: ReasonMTU, L3: d.L3, Port: d.Port}
			} else {
				// Fragmenting is left to the kernel path; on the fast path
				// a packet that does not fit is dropped and counted.
				*d = Decision{Action: ActDrop, Reason: ReasonMTU, L3: d.L3}
			}
			return
		}
		decrementTTL(h)
	} else {
		h := f[l3:]
		d.End = uint16(l3 + ipv6HdrLen + int(binary.BigEndian.Uint16(h[4:6])))
		if ipv6HdrLen+int(binary.BigEndian.Uint16(h[4:6])) > mtu {
			// IPv6 routers never fragment (RFC 8200): always Packet Too Big.
			*d = Decision{Action: ActSlow, Reason: ReasonMTU, L3: d.L3, Port: d.Port}
			return
		}
		h[7]-- // no header checksum in IPv6
	}
	// A VLAN tag is removed by moving the addresses over it, so the frame is
	// sent from 4 bytes further on.
	if l3 != ethHdrLen {
		d.Skip = vlanTagLen
	}
	eth := f[d.Skip:]
	copy(eth[0:6], mac[:])
	copy(eth[6:12], w.plane.Ports[d.Port].MAC[:])
	if s := w.sampler; s != nil && (d.ToBackbone || s.inbound) {
		if d.ToBackbone {
			s.count++
		}
		if s.count >= s.every || worthSampling(f, l3) {
			w.sampleOne(f, d)
		}
	}
}
