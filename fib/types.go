package fib

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// MaxBackbones is the number of backbones one FIB can hold: a route's holder
// set is a 24-bit mask inside its 32-bit state word.
const MaxBackbones = 24

// BackboneID identifies a backbone by its position in the FIB's backbone list.
type BackboneID uint8

// HolderSet is the set of backbones that hold a route for one prefix.
type HolderSet uint32

// Has reports whether b is in the set.
func (h HolderSet) Has(b BackboneID) bool { return h&(1<<b) != 0 }

// Len is the number of backbones in the set.
func (h HolderSet) Len() int { return bits.OnesCount32(uint32(h)) }

// IDs lists the backbones in the set in ascending order.
func (h HolderSet) IDs() []BackboneID {
	out := make([]BackboneID, 0, h.Len())
	for m := uint32(h); m != 0; m &= m - 1 {
		out = append(out, BackboneID(bits.TrailingZeros32(m)))
	}
	return out
}

// RouteID names one prefix of the union table. It stays the same while any
// backbone holds the prefix; after the last holder withdraws, the ID is kept
// out of use for the FIB's grace period so that a reader still holding an
// older Version never sees it name another prefix.
type RouteID uint32

// Entry is what a lookup finds: the route, the backbone selected for it, and
// every backbone that holds a route for that exact prefix.
type Entry struct {
	Route    RouteID
	Backbone BackboneID
	Holders  HolderSet
}

// A route's state word, read by lookups with one atomic load and changed by
// compare-and-swap: holders in bits 0-23, selected backbone in bits 24-28,
// bit 29 set when the selection was made explicitly (Select) rather than by
// the default preference order, bit 30 set once the route is withdrawn.
const (
	holdersMask   = 1<<MaxBackbones - 1
	selShift      = 24
	selMask       = 0x1f << selShift
	overrideFlag  = 1 << 29
	goneFlag      = 1 << 30 // the prefix left the trie; the ID waits out the grace period
	stateNoRoute  = 0
	unknownPath   = 255 // per-backbone AS-path length when the source gives none
	maxPathLength = 254
)

func makeState(holders HolderSet, sel BackboneID, override bool) uint32 {
	s := uint32(holders)&holdersMask | uint32(sel)<<selShift
	if override {
		s |= overrideFlag
	}
	return s
}

func stateEntry(r RouteID, s uint32) Entry {
	return Entry{Route: r, Backbone: BackboneID(s & selMask >> selShift), Holders: HolderSet(s & holdersMask)}
}

// Backbone describes one transit backbone to the FIB.
type Backbone struct {
	Name string
	// Preference orders backbones for the default selection: lower wins.
	// Ties are broken by the shorter AS path, then by the lower BackboneID.
	Preference int
}

// checkPrefix rejects what the FIB will not store: invalid prefixes, prefixes
// with host bits set, and IPv4-mapped IPv6 prefixes. The FIB deliberately
// never treats a mapped address as IPv4: an IPv6 packet to ::ffff:a.b.c.d is
// an IPv6 packet, and routing it by an IPv4 route would be wrong.
func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid prefix %v", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("prefix %v has host bits set; use %v", p, p.Masked())
	}
	if p.Addr().Is4In6() {
		return fmt.Errorf("prefix %v is IPv4-mapped IPv6; use the IPv4 form", p)
	}
	return nil
}

// storedPrefix is a prefix kept without pointers, so that the garbage
// collector need not scan a million of them: netip.Prefix holds a pointer
// (its zone handle). bits is the length plus one; 0 marks an unused slot.
type storedPrefix struct {
	addr [16]byte
	bits uint8
	v4   bool
}

func storePrefix(p netip.Prefix) storedPrefix {
	s := storedPrefix{bits: uint8(p.Bits() + 1), v4: p.Addr().Is4()}
	if s.v4 {
		a := p.Addr().As4()
		copy(s.addr[:], a[:])
	} else {
		s.addr = p.Addr().As16()
	}
	return s
}

func (s storedPrefix) valid() bool { return s.bits != 0 }

func (s storedPrefix) prefix() netip.Prefix {
	if s.bits == 0 {
		return netip.Prefix{}
	}
	if s.v4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(s.addr[:4])), int(s.bits)-1)
	}
	return netip.PrefixFrom(netip.AddrFrom16(s.addr), int(s.bits)-1)
}
