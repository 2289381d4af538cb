//go:build linux

package emu

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"
)

// DestDelays is a table of extra delays by destination prefix, for
// Params.DestDelay. It is immutable once made: a scenario that shifts some
// prefixes builds a new table and hands it to Set, which swaps it whole.
// Its methods are safe for concurrent use.
//
// It takes IPv4 /24 and IPv6 /48 prefixes only: with one fixed length per
// family, a frame's destination prefix is a fixed slice of its header bytes,
// and finding its delay is one probe of a map keyed by an integer, which
// neither allocates nor depends on the table's size. Longest-prefix matching
// over mixed lengths would need a trie walk per frame for no gain: /24 and /48
// are the longest prefixes that backbones carry.
type DestDelays struct {
	byKey map[uint64]int64 // destKey -> extra delay, ns
}

// Keys of destination prefixes (destKey): the family in the top two bits, so
// that no key is 0 (which the line's per-prefix table takes for empty).
const (
	v4Key    = 1 << 62 // | the /24, 24 bits
	v6Key    = 2 << 62 // | the /48, 48 bits
	otherKey = 3 << 62 // every frame that is neither IPv4 nor IPv6
)

// NewDestDelays makes a table from extra delays by prefix. Each prefix must
// be an IPv4 /24 or an IPv6 /48 without host bits, each delay 0 or more.
func NewDestDelays(delays map[netip.Prefix]time.Duration) (*DestDelays, error) {
	t := &DestDelays{byKey: make(map[uint64]int64, len(delays))}
	// Sorted, so that of several bad prefixes the error names the same one
	// every time.
	for _, p := range slices.SortedFunc(maps.Keys(delays), netip.Prefix.Compare) {
		d := delays[p]
		switch {
		case !p.IsValid():
			return nil, fmt.Errorf("emu: per-destination delay for an invalid prefix %v", p)
		case p.Addr().Is4() && p.Bits() != 24, p.Addr().Is6() && p.Bits() != 48:
			return nil, fmt.Errorf("emu: per-destination delay for %v: only IPv4 /24 and IPv6 /48 prefixes are taken (split or widen it to those)", p)
		case p != p.Masked():
			return nil, fmt.Errorf("emu: per-destination delay for %v: host bits set, did you mean %v?", p, p.Masked())
		case d < 0:
			return nil, fmt.Errorf("emu: per-destination delay for %v is negative (%v)", p, d)
		}
		t.byKey[addrKey(p.Addr())] = int64(d)
	}
	return t, nil
}

// Len returns the number of prefixes in the table.
func (t *DestDelays) Len() int { return len(t.byKey) }

// Delay returns the extra delay of frames to dst: that of the /24 or /48
// holding it, 0 if the table has none.
func (t *DestDelays) Delay(dst netip.Addr) time.Duration {
	return time.Duration(t.byKey[addrKey(dst)])
}

// lookup returns the destination prefix of a frame (Ethernet header first)
// and its extra delay in ns. It runs for every frame: it must not allocate.
func (t *DestDelays) lookup(eth []byte) (key uint64, extra int64) {
	key = destKey(eth)
	return key, t.byKey[key]
}

func addrKey(a netip.Addr) uint64 {
	b := a.As16()
	if a.Is4() {
		return v4Key | uint64(b[12])<<16 | uint64(b[13])<<8 | uint64(b[14])
	}
	return v6Key | uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
}

// Where the destination address lies in an untagged Ethernet frame.
const (
	ethHdrLen = 14
	v4DstOff  = ethHdrLen + 16 // 4 bytes
	v6DstOff  = ethHdrLen + 24 // 16 bytes
)

// destKey returns the key of a frame's destination prefix: its IPv4 /24 or
// IPv6 /48, or otherKey for frames of other types (ARP, VLAN-tagged) and for
// IP headers too short to hold the address.
func destKey(eth []byte) uint64 {
	if len(eth) < ethHdrLen {
		return otherKey
	}
	switch uint16(eth[12])<<8 | uint16(eth[13]) {
	case 0x0800:
		if len(eth) >= ethHdrLen+20 && eth[ethHdrLen]>>4 == 4 {
			b := eth[v4DstOff:]
			return v4Key | uint64(b[0])<<16 | uint64(b[1])<<8 | uint64(b[2])
		}
	case 0x86dd:
		if len(eth) >= ethHdrLen+40 && eth[ethHdrLen]>>4 == 6 {
			b := eth[v6DstOff:]
			return v6Key | uint64(b[0])<<40 | uint64(b[1])<<32 | uint64(b[2])<<24 | uint64(b[3])<<16 | uint64(b[4])<<8 | uint64(b[5])
		}
	}
	return otherKey
}

// lossTakes reports whether Loss may drop a frame (Ethernet header first):
// any frame without LossOnly, else an IP frame to one of its prefixes. It
// runs for every frame: it must not allocate.
func (p *Params) lossTakes(eth []byte) bool {
	if len(p.LossOnly) == 0 {
		return true
	}
	dst, ok := destAddr(eth)
	if !ok {
		return false
	}
	for _, q := range p.LossOnly {
		if q.Contains(dst) {
			return true
		}
	}
	return false
}

// destAddr is the destination address of an IP frame (Ethernet header
// first); false for other frames and for headers too short to hold it.
func destAddr(eth []byte) (netip.Addr, bool) {
	switch k := destKey(eth); k & otherKey {
	case v4Key:
		return netip.AddrFrom4([4]byte(eth[v4DstOff : v4DstOff+4])), true
	case v6Key:
		return netip.AddrFrom16([16]byte(eth[v6DstOff : v6DstOff+16])), true
	}
	return netip.Addr{}, false
}
