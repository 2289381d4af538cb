package bgp

import (
	"net/netip"
)

// nextPrefix decodes the first prefix of an NLRI-encoded list (RFC 4271
// 4.3; RFC 4760 5 for IPv6): a length in bits, then the fewest octets that
// hold it. Bits past the length are cleared, so the prefix is canonical. ok
// is false when the length exceeds the family's or the octets are missing.
//
// This walker, rather than GoBGP's NLRI decoder, reads the prefix lists:
// GoBGP allocates an object per prefix, and a full feed is about a million
// of them per session.
func nextPrefix(b []byte, v6 bool) (p netip.Prefix, rest []byte, ok bool) {
	if len(b) == 0 {
		return netip.Prefix{}, b, false
	}
	bits := int(b[0])
	n := (bits + 7) / 8
	if (!v6 && bits > 32) || (v6 && bits > 128) || len(b) < 1+n {
		return netip.Prefix{}, b, false
	}
	var a [16]byte
	copy(a[:n], b[1:1+n])
	if r := bits % 8; r != 0 {
		a[n-1] &= 0xff << (8 - r)
	}
	var addr netip.Addr
	if v6 {
		addr = netip.AddrFrom16(a)
	} else {
		addr = netip.AddrFrom4([4]byte(a[:4]))
	}
	return netip.PrefixFrom(addr, bits), b[1+n:], true
}

// appendPrefix appends p in NLRI encoding.
func appendPrefix(b []byte, p netip.Prefix) []byte {
	n := (p.Bits() + 7) / 8
	b = append(b, byte(p.Bits()))
	if p.Addr().Is4() {
		a := p.Addr().As4()
		return append(b, a[:n]...)
	}
	a := p.Addr().As16()
	return append(b, a[:n]...)
}

// prefixLen is the length of p in NLRI encoding.
func prefixLen(p netip.Prefix) int { return 1 + (p.Bits()+7)/8 }
