package forwarder

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/pnap-project/pnap/fib"
)

// MAC is an Ethernet address.
type MAC [6]byte

// Role says which side of pnap a port faces.
type Role uint8

const (
	RoleCustomer Role = iota // traffic from it is routed by the backbone FIB
	RoleBackbone             // traffic from it may only reach customers
)

// PortInfo is what the fast path knows of a port.
type PortInfo struct {
	Name string
	MAC  MAC
	MTU  int // largest IP packet sent out of this port
	Role Role
}

// NextHop is where a packet leaves: a port and the neighbour's MAC.
type NextHop struct {
	Port     uint8
	MAC      MAC
	Resolved bool
}

// Fam4 and Fam6 index the per-family arrays of Hops: IPv4 and IPv6.
const (
	Fam4 = 0
	Fam6 = 1
)

// Hops is an immutable snapshot of every next hop the fast path may use,
// swapped whole when a neighbour changes. Workers load it once per batch.
type Hops struct {
	// Backbone is, per backbone and family, its port and gateway MAC.
	Backbone [fib.MaxBackbones][2]NextHop
	// Customer is, per customer and family, its port and static next hop;
	// for a connected customer (Connected set) the MAC comes from Neigh4 or
	// Neigh6 by destination address.
	Customer [fib.MaxBackbones][2]NextHop
	// Subnet4 and Subnet6 are each customer port's connected subnet:
	// destinations inside it are neighbours, found in Neigh4 and Neigh6.
	Subnet4 [fib.MaxBackbones]subnet4
	Subnet6 [fib.MaxBackbones]subnet6
	Neigh4  map[[4]byte]MAC
	Neigh6  map[[16]byte]MAC
	// LastGateway is, per backbone and family, the MAC its gateway had
	// when last resolved, kept while it is not (zero if never). The fast
	// path never uses it; probes do (see Hops.ProbeMAC).
	LastGateway [fib.MaxBackbones][2]MAC
}

// ProbeMAC is where probes out of backbone b go for family fam: the
// gateway's MAC, else the one it last had. A gateway that stops answering
// ARP in an outage loses its entry; probed no more, its backbone could not
// be seen to fail or to come back until the kernel learnt the MAC again
// (a second or more after the outage in the blackout scenario).
func (h *Hops) ProbeMAC(b fib.BackboneID, fam int) (MAC, bool) {
	if hop := h.Backbone[b][fam]; hop.Resolved {
		return hop.MAC, true
	}
	m := h.LastGateway[b][fam]
	return m, m != MAC{}
}

type subnet4 struct{ addr, mask uint32 }

type subnet6 struct{ hi, lo, maskHi, maskLo uint64 }

// SetSubnet records customer c's connected subnet (the prefix of its port
// address); the zero Prefix clears it.
func (h *Hops) SetSubnet(c int, p netip.Prefix) {
	p = p.Masked()
	switch {
	case !p.IsValid():
		h.Subnet4[c], h.Subnet6[c] = subnet4{}, subnet6{}
	case p.Addr().Is4():
		a := p.Addr().As4()
		m := ^uint32(0) << (32 - p.Bits())
		if p.Bits() == 0 {
			m = 0
		}
		h.Subnet4[c] = subnet4{addr: binary.BigEndian.Uint32(a[:]), mask: m}
	default:
		a := p.Addr().As16()
		var mh, ml uint64
		if b := p.Bits(); b >= 64 {
			mh, ml = ^uint64(0), ^uint64(0)<<(128-b)
			if b == 64 {
				ml = 0
			}
		} else if b > 0 {
			mh = ^uint64(0) << (64 - b)
		}
		h.Subnet6[c] = subnet6{hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:]), maskHi: mh, maskLo: ml}
	}
}

// Plane is what a worker forwards with: the two FIBs, the ports and the
// current next hops.
type Plane struct {
	// Backbones is the per-backbone FIB: customer traffic is forwarded
	// over the backbone selected for its destination.
	Backbones *fib.FIB
	// Customers holds the customer routes, one "backbone" per customer
	// port: traffic to them goes to that customer, from any port.
	Customers *fib.FIB
	Ports     []PortInfo
	hops      atomic.Pointer[Hops]
	// The probe source addresses (zero: none); set before workers run.
	probe4 uint32
	probe6 [2]uint64
}

// SetProbeSources names the addresses pnap's active probes come from:
// packets to them are answers to probes and are consumed (ActProbe), never
// forwarded. Call it before any worker runs. An invalid address means none.
func (p *Plane) SetProbeSources(v4, v6 netip.Addr) {
	p.probe4, p.probe6 = 0, [2]uint64{}
	if v4.Is4() {
		b := v4.As4()
		p.probe4 = binary.BigEndian.Uint32(b[:])
	}
	if v6.Is6() && !v6.Is4In6() {
		b := v6.As16()
		p.probe6 = [2]uint64{binary.BigEndian.Uint64(b[0:8]), binary.BigEndian.Uint64(b[8:16])}
	}
}

// SetHops publishes a new next-hop snapshot.
func (p *Plane) SetHops(h *Hops) { p.hops.Store(h) }

// CurrentHops returns the snapshot in use.
func (p *Plane) CurrentHops() *Hops { return p.hops.Load() }
