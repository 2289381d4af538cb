package fib

import (
	"net/netip"
	"sync/atomic"
)

// The read side. A forwarding worker loads one Version per batch of packets
// and looks addresses up in it: no lock, no allocation, and nothing a writer
// does to the FIB afterwards changes the trie it reads (see publish.go). Only
// a route's state word and selection byte are shared live, read with atomic
// loads.

// Version is an immutable snapshot of the trie. Readers load one per batch of
// lookups (FIB.Load) and must not keep it longer than Options.Grace.
type Version struct {
	words []uint64
	root4 *rootDir
	root6 *rootDir
	state []atomic.Uint32
	sel   []atomic.Uint32
	gen   uint64
}

// Load returns the current Version. It is one atomic load.
func (f *FIB) Load() *Version { return f.cur.Load() }

// Generation counts the Versions published: it grows with every route
// change committed (not with selection changes, which need no new Version).
func (v *Version) Generation() uint64 { return v.gen }

// Lookup finds the longest prefix matching a and its entry. An IPv4-mapped
// IPv6 address is looked up as the IPv6 address it is, in the IPv6 routes.
func (v *Version) Lookup(a netip.Addr) (Entry, bool) {
	id := v.lookupAddr(a)
	if id == 0 {
		return Entry{}, false
	}
	return stateEntry(RouteID(id), v.state[id].Load()), true
}

// lookupAddr is the trie lookup for either family; 0 means no route.
func (v *Version) lookupAddr(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return v.lookup4(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
	}
	if !a.Is6() {
		return 0
	}
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
		uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	return v.lookup6(hi, lo)
}

// Forward is the forwarding lookup: the longest-prefix route for a and the
// backbone selected for it, without the holder set. It reads the trie and
// one byte of the selection array, the least a packet needs.
func (v *Version) Forward(a netip.Addr) (RouteID, BackboneID, bool) {
	id := v.lookupAddr(a)
	return RouteID(id), v.selected(id), id != 0
}

// Forward4 is Forward for an IPv4 address held in a uint32 (host order), as
// the forwarder reads it from a packet.
func (v *Version) Forward4(a uint32) (RouteID, BackboneID, bool) {
	id := v.lookup4(a)
	return RouteID(id), v.selected(id), id != 0
}

// Forward6 is Forward for an IPv6 address held as two uint64 (host order).
func (v *Version) Forward6(hi, lo uint64) (RouteID, BackboneID, bool) {
	id := v.lookup6(hi, lo)
	return RouteID(id), v.selected(id), id != 0
}

func (v *Version) selected(id uint32) BackboneID {
	return BackboneID(v.sel[id>>2].Load() >> (8 * (id & 3)))
}

func (v *Version) lookup4(a uint32) uint32 {
	e := v.root4[a>>24][a>>16&0xff]
	if e&childFlag == 0 {
		return e
	}
	val, best := searchBitmap(v.words, e&^childFlag, uint8(a>>8))
	if val&childFlag != 0 {
		var def uint32
		val, def = searchBitmap(v.words, val&^childFlag, uint8(a))
		if def != 0 {
			best = def
		}
	}
	if val == 0 {
		return best
	}
	return val
}

func (v *Version) lookup6(hi, lo uint64) uint32 {
	e := v.root6[hi>>56][hi>>48&0xff]
	var best uint32
	// Keys after the root are the address's bytes 2..15.
	for sh := 40; e&childFlag != 0; sh -= 8 {
		var key uint8
		if sh >= 0 {
			key = uint8(hi >> sh)
		} else {
			key = uint8(lo >> (64 + sh))
		}
		val, def := searchBitmap(v.words, e&^childFlag, key)
		if def != 0 {
			best = def
		}
		e = val
	}
	if e == 0 {
		return best
	}
	return e
}
