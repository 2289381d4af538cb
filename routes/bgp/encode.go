package bgp

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// encoder builds, with GoBGP's codec, the UPDATEs this speaker sends to one
// peer.
type encoder struct {
	localAS  uint32
	external bool
	peerAS4  bool
}

// attrKey identifies the path attributes of a Route: routes with equal keys
// share UPDATEs.
type attrKey struct {
	nextHop     netip.Addr
	localPref   uint32
	communities string // 4 bytes each, big-endian
}

func keyOf(r Route) attrKey {
	var b []byte
	for _, c := range r.Communities {
		b = binary.BigEndian.AppendUint32(b, c)
	}
	return attrKey{r.NextHop, r.LocalPref, string(b)}
}

func (k attrKey) route() Route {
	r := Route{NextHop: k.nextHop, LocalPref: k.localPref}
	for b := []byte(k.communities); len(b) >= 4; b = b[4:] {
		r.Communities = append(r.Communities, binary.BigEndian.Uint32(b))
	}
	return r
}

// maxBody is the largest UPDATE body: BGP messages have at most 4096
// bytes, header included.
const maxBody = maxMessage - headerLen

// mpOverhead bounds what MP_REACH_NLRI and MP_UNREACH_NLRI add besides
// their NLRI: extended-length header (4), AFI and SAFI (3), next-hop length
// (1), a global and a link-local IPv6 next hop (32), reserved (1).
const mpOverhead = 4 + 3 + 1 + 32 + 1

// nlriOf makes GoBGP's NLRI of ps.
func nlriOf(ps []netip.Prefix) ([]bgp.PathNLRI, error) {
	out := make([]bgp.PathNLRI, len(ps))
	for i, p := range ps {
		n, err := bgp.NewIPAddrPrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", p, err)
		}
		out[i] = bgp.PathNLRI{NLRI: n}
	}
	return out, nil
}

// chunks splits ps into runs whose NLRI encoding fits in budget bytes.
func chunks(ps []netip.Prefix, budget int) [][]netip.Prefix {
	var out [][]netip.Prefix
	start, size := 0, 0
	for i, p := range ps {
		if n := prefixLen(p); size+n > budget {
			out = append(out, ps[start:i])
			start, size = i, n
		} else {
			size += n
		}
	}
	if start < len(ps) {
		out = append(out, ps[start:])
	}
	return out
}

// withdrawals returns UPDATEs that withdraw ps, all of family f.
func (e *encoder) withdrawals(f Family, ps []netip.Prefix) ([][]byte, error) {
	var out [][]byte
	budget := maxBody - 4
	if f == IPv6Unicast {
		budget -= mpOverhead
	}
	for _, part := range chunks(ps, budget) {
		nlri, err := nlriOf(part)
		if err != nil {
			return nil, err
		}
		var m *bgp.BGPMessage
		if f == IPv4Unicast {
			m = bgp.NewBGPUpdateMessage(nlri, nil, nil)
		} else {
			unreach, err := bgp.NewPathAttributeMpUnreachNLRI(bgp.RF_IPv6_UC, nlri)
			if err != nil {
				return nil, err
			}
			m = bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{unreach}, nil)
		}
		b, err := m.Serialize()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// announcements returns UPDATEs that announce ps, all of family f, with the
// attributes of r.
func (e *encoder) announcements(f Family, r Route, ps []netip.Prefix) ([][]byte, error) {
	attrs, err := e.pathAttributes(f, r)
	if err != nil {
		return nil, err
	}
	size := 0
	for _, a := range attrs {
		size += a.Len()
	}
	budget := maxBody - 4 - size
	if f == IPv6Unicast {
		budget -= mpOverhead
	}
	var out [][]byte
	for _, part := range chunks(ps, budget) {
		nlri, err := nlriOf(part)
		if err != nil {
			return nil, err
		}
		var m *bgp.BGPMessage
		if f == IPv4Unicast {
			m = bgp.NewBGPUpdateMessage(nil, attrs, nlri)
		} else {
			reach, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, nlri, r.NextHop)
			if err != nil {
				return nil, err
			}
			all := append(slices.Clip(attrs), reach)
			slices.SortStableFunc(all, func(a, b bgp.PathAttributeInterface) int { return cmp.Compare(a.GetType(), b.GetType()) })
			m = bgp.NewBGPUpdateMessage(nil, all, nil)
		}
		b, err := m.Serialize()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// pathAttributes are the attributes of r other than MP_REACH_NLRI, in type
// order: ORIGIN IGP, AS_PATH (empty to an internal peer, this speaker's AS
// to an external one, with AS_TRANS and AS4_PATH to a 2-octet peer when it
// needs 4 octets: RFC 6793 4.2.2), NEXT_HOP for IPv4, LOCAL_PREF to an
// internal peer (RFC 4271 5.1.5), COMMUNITIES.
func (e *encoder) pathAttributes(f Family, r Route) ([]bgp.PathAttributeInterface, error) {
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	var as4Path bgp.PathAttributeInterface
	switch {
	case !e.external:
		attrs = append(attrs, bgp.NewPathAttributeAsPath(nil))
	case e.peerAS4:
		attrs = append(attrs, bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{
			bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{e.localAS})}))
	default:
		as := uint16(bgp.AS_TRANS)
		if e.localAS <= 0xffff {
			as = uint16(e.localAS)
		} else {
			as4Path = bgp.NewPathAttributeAs4Path([]*bgp.As4PathParam{
				bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{e.localAS})})
		}
		attrs = append(attrs, bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{
			bgp.NewAsPathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{as})}))
	}
	if f == IPv4Unicast {
		nh, err := bgp.NewPathAttributeNextHop(r.NextHop)
		if err != nil {
			return nil, fmt.Errorf("next hop %v: %w", r.NextHop, err)
		}
		attrs = append(attrs, nh)
	}
	if !e.external {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(cmp.Or(r.LocalPref, 100)))
	}
	if len(r.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(r.Communities))
	}
	if as4Path != nil {
		attrs = append(attrs, as4Path)
	}
	return attrs, nil
}
