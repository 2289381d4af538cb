package forwarder

import (
	"encoding/binary"

	"github.com/pnap-project/pnap/fib"
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
)

// Decision is the fast path's verdict on one frame.
type Decision struct {
	Action Action
	Reason Reason
	Port   uint8 // egress port, for ActForward
	Skip   uint8 // bytes at the start of the frame to leave out (a removed VLAN tag)
	// L3 is the offset of the IP header in the frame as received.
	L3 uint8
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

// Worker is the fast path of one queue. Its methods must be called from
// one goroutine only.
type Worker struct {
	plane    *Plane
	counters []portCounters // by port
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
}

// Process decides the fate of each frame received on port in, rewriting
// forwarded frames in place, and counts what it received and dropped. It
// loads the FIBs and the next hops once for the whole batch.
func (w *Worker) Process(in uint8, frames [][]byte, out []Decision) {
	view := batchView{bb: w.plane.Backbones.Load(), cust: w.plane.Customers.Load(), hops: w.plane.hops.Load()}
	c := &w.counters[in]
	var rxBytes uint64
	var drops [numReasons]uint64
	for i, f := range frames {
		rxBytes += uint64(len(f))
		d := w.one(&view, in, f)
		out[i] = d
		if d.Action != ActForward {
			drops[d.Reason]++
		}
	}
	bump(&c.rxPackets, uint64(len(frames)))
	bump(&c.rxBytes, rxBytes)
	for r, n := range drops {
		if n != 0 {
			bump(&c.drops[r], n)
		}
	}
}

func drop(r Reason) Decision { return Decision{Action: ActDrop, Reason: r} }

// one handles a single frame.
func (w *Worker) one(v *batchView, in uint8, f []byte) Decision {
	if len(f) < ethHdrLen {
		return drop(ReasonMalformed)
	}
	l3 := ethHdrLen
	et := binary.BigEndian.Uint16(f[12:14])
	if et == etherTypeVLAN {
		if len(f) < ethHdrLen+vlanTagLen {
			return drop(ReasonMalformed)
		}
		l3 += vlanTagLen
		et = binary.BigEndian.Uint16(f[16:18])
	}
	var d Decision
	var mac MAC
	switch et {
	case etherTypeIPv4:
		d, mac = w.ipv4(v, in, f, l3)
	case etherTypeIPv6:
		d, mac = w.ipv6(v, in, f, l3)
	default:
		return drop(ReasonNotIP)
	}
	d.L3 = uint8(l3)
	if d.Action != ActForward {
		return d
	}
	// Rewrite the Ethernet header; a VLAN tag is removed by moving the
	// addresses over it, so the frame is sent from 4 bytes further on.
	if l3 != ethHdrLen {
		d.Skip = vlanTagLen
	}
	eth := f[d.Skip:]
	copy(eth[0:6], mac[:])
	copy(eth[6:12], w.plane.Ports[d.Port].MAC[:])
	return d
}

func (w *Worker) ipv4(v *batchView, in uint8, f []byte, l3 int) (Decision, MAC) {
	if len(f) < l3+ipv4MinHdr || f[l3]>>4 != 4 {
		return drop(ReasonMalformed), MAC{}
	}
	ihl := int(f[l3]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(f[l3+2 : l3+4]))
	if ihl < ipv4MinHdr || total < ihl || l3+total > len(f) {
		return drop(ReasonMalformed), MAC{}
	}
	h := f[l3 : l3+ihl]
	if !ipv4HeaderSumOK(h) {
		return drop(ReasonMalformed), MAC{}
	}
	dst := binary.BigEndian.Uint32(h[16:20])
	if martian4(dst) {
		return drop(ReasonMartian), MAC{}
	}
	if h[8] <= 1 {
		return Decision{Action: ActSlow, Reason: ReasonTTL}, MAC{}
	}
	d, mac := w.route4(v, in, dst)
	if d.Action != ActForward {
		return d, mac
	}
	if total > w.plane.Ports[d.Port].MTU {
		if h[6]&0x40 != 0 { // DF: the sender must learn the path MTU
			return Decision{Action: ActSlow, Reason: ReasonMTU}, MAC{}
		}
		// Fragmenting is left to the kernel path; on the fast path a packet
		// that does not fit is dropped and counted.
		return drop(ReasonMTU), MAC{}
	}
	decrementTTL(h)
	return d, mac
}

// route4 finds the egress for an IPv4 destination: customer routes first
// (from any port), then, for traffic from customers only, the backbone FIB.
func (w *Worker) route4(v *batchView, in uint8, dst uint32) (Decision, MAC) {
	if _, c, ok := v.cust.Forward4(dst); ok {
		hop := v.hops.Customer[c][fam4]
		sub := v.hops.Subnet4[c]
		if sub.mask != 0 && dst&sub.mask == sub.addr {
			mac, ok := v.hops.Neigh4[[4]byte{byte(dst >> 24), byte(dst >> 16), byte(dst >> 8), byte(dst)}]
			if !ok {
				return drop(ReasonNoNeighbour), MAC{}
			}
			return Decision{Action: ActForward, Port: hop.Port}, mac
		}
		if !hop.Resolved {
			return drop(ReasonNoNeighbour), MAC{}
		}
		return Decision{Action: ActForward, Port: hop.Port}, hop.MAC
	}
	if w.plane.Ports[in].Role != RoleCustomer {
		return Decision{Action: ActSlow, Reason: ReasonNoRoute}, MAC{}
	}
	r, b, ok := v.bb.Forward4(dst)
	if !ok {
		return Decision{Action: ActSlow, Reason: ReasonNoRoute}, MAC{}
	}
	hop := v.hops.Backbone[b][fam4]
	if !hop.Resolved {
		return drop(ReasonNoNeighbour), MAC{}
	}
	return Decision{Action: ActForward, Port: hop.Port, Route: r, Backbone: b, ToBackbone: true}, hop.MAC
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

func (w *Worker) ipv6(v *batchView, in uint8, f []byte, l3 int) (Decision, MAC) {
	if len(f) < l3+ipv6HdrLen || f[l3]>>4 != 6 {
		return drop(ReasonMalformed), MAC{}
	}
	h := f[l3 : l3+ipv6HdrLen]
	total := ipv6HdrLen + int(binary.BigEndian.Uint16(h[4:6]))
	if l3+total > len(f) {
		return drop(ReasonMalformed), MAC{}
	}
	hi := binary.BigEndian.Uint64(h[24:32])
	lo := binary.BigEndian.Uint64(h[32:40])
	if martian6(hi, lo) {
		return drop(ReasonMartian), MAC{}
	}
	if h[7] <= 1 {
		return Decision{Action: ActSlow, Reason: ReasonTTL}, MAC{}
	}
	d, mac := w.route6(v, in, hi, lo, h[24:40])
	if d.Action != ActForward {
		return d, mac
	}
	if total > w.plane.Ports[d.Port].MTU {
		// IPv6 routers never fragment (RFC 8200): always Packet Too Big.
		return Decision{Action: ActSlow, Reason: ReasonMTU}, MAC{}
	}
	h[7]-- // no header checksum in IPv6
	return d, mac
}

func (w *Worker) route6(v *batchView, in uint8, hi, lo uint64, dst []byte) (Decision, MAC) {
	if _, c, ok := v.cust.Forward6(hi, lo); ok {
		hop := v.hops.Customer[c][fam6]
		sub := v.hops.Subnet6[c]
		if sub.maskHi|sub.maskLo != 0 && hi&sub.maskHi == sub.hi && lo&sub.maskLo == sub.lo {
			mac, ok := v.hops.Neigh6[[16]byte(dst)]
			if !ok {
				return drop(ReasonNoNeighbour), MAC{}
			}
			return Decision{Action: ActForward, Port: hop.Port}, mac
		}
		if !hop.Resolved {
			return drop(ReasonNoNeighbour), MAC{}
		}
		return Decision{Action: ActForward, Port: hop.Port}, hop.MAC
	}
	if w.plane.Ports[in].Role != RoleCustomer {
		return Decision{Action: ActSlow, Reason: ReasonNoRoute}, MAC{}
	}
	r, b, ok := v.bb.Forward6(hi, lo)
	if !ok {
		return Decision{Action: ActSlow, Reason: ReasonNoRoute}, MAC{}
	}
	hop := v.hops.Backbone[b][fam6]
	if !hop.Resolved {
		return drop(ReasonNoNeighbour), MAC{}
	}
	return Decision{Action: ActForward, Port: hop.Port, Route: r, Backbone: b, ToBackbone: true}, hop.MAC
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
