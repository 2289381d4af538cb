package bgp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Path attribute type codes and flags (RFC 4271 4.3, 5).
const (
	attrOrigin                  = 1
	attrASPath                  = 2
	attrNextHop                 = 3
	attrMED                     = 4
	attrLocalPref               = 5
	attrAtomicAggregate         = 6
	attrAggregator              = 7
	attrCommunities             = 8
	attrOriginatorID            = 9
	attrClusterList             = 10
	attrMPReach                 = 14 // RFC 4760
	attrMPUnreach               = 15
	attrExtCommunities          = 16 // RFC 4360
	attrAS4Path                 = 17 // RFC 6793
	attrAS4Aggregator           = 18
	attrIPv6ExtCommunities      = 25 // RFC 5701
	attrLargeCommunity          = 32 // RFC 8092
	flagOptional           byte = 0x80
	flagExtendedLength     byte = 0x10
)

// checked reports whether GoBGP decodes and checks attribute type t for
// this speaker: the attributes RFC 7606 7 (and RFC 8092 for large
// communities) gives an error handling. Any other optional attribute is
// left out undecoded: this speaker neither uses nor propagates it, so for
// it "attribute discard" and "ignore" are the same, and GoBGP's decoders of
// exotic attributes stay out of reach of what a peer sends.
func checked(t byte) bool {
	switch t {
	case attrOrigin, attrASPath, attrNextHop, attrMED, attrLocalPref, attrAtomicAggregate,
		attrAggregator, attrCommunities, attrOriginatorID, attrClusterList,
		attrExtCommunities, attrAS4Path, attrAS4Aggregator, attrIPv6ExtCommunities, attrLargeCommunity:
		return true
	}
	return false
}

// notifyError is an error in what the peer sent that ends the session with
// a NOTIFICATION.
type notifyError struct {
	n   Notification
	msg string
}

func (e *notifyError) Error() string { return e.n.String() + ": " + e.msg }

func notifyf(code, sub uint8, data []byte, format string, args ...any) *notifyError {
	return &notifyError{Notification{code, sub, data}, fmt.Sprintf(format, args...)}
}

func updateErrorf(sub uint8, format string, args ...any) *notifyError {
	return notifyf(bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, sub, nil, format, args...)
}

// decoder turns UPDATE messages into Changes. One per session; it keeps its
// buffers from one message to the next and nothing about the routes.
type decoder struct {
	families familySet  // negotiated
	external bool       // eBGP
	local    netip.Addr // this speaker's address on the connection: never a valid next hop
	opt      bgp.MarshallingOption
	changes  []Change
	attrs    []byte // the attribute field as handed to GoBGP
}

func newDecoder(families familySet, external, peerAS4 bool, local netip.Addr) *decoder {
	return &decoder{
		families: families,
		external: external,
		local:    local.Unmap(),
		opt:      bgp.MarshallingOption{Use2ByteAS: !peerAS4},
	}
}

// update is what one UPDATE said.
type update struct {
	changes []Change // valid until the next decode
	eor     Family   // not 0: the message is the End-of-RIB marker of eor
	// withdrawn is why RFC 7606 made the UPDATE's announcements
	// withdrawals; discarded why it made attributes ignored.
	withdrawn, discarded error
	// ignored counts NLRI fields and attributes of families not negotiated,
	// which are ignored.
	ignored int
}

// mpNLRI is an MP_REACH_NLRI or MP_UNREACH_NLRI attribute as the framing
// scan found it.
type mpNLRI struct {
	seen   bool   // present, for a negotiated family or not
	fam    Family // negotiated family; 0 when ignored or unparsable
	nlri   []byte // its NLRI, when fam is set
	parsed bool   // nlri was located
}

// decode decodes the body of an UPDATE (after the 19-byte header). An
// error is a *notifyError: the session must be reset (RFC 7606 2). Other
// malformations are in the update (withdrawn, discarded).
func (d *decoder) decode(body []byte) (update, error) {
	d.changes = d.changes[:0]
	var u update
	if len(body) < 4 {
		return u, updateErrorf(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "UPDATE of %d bytes has no room for its length fields", len(body))
	}
	wlen := int(binary.BigEndian.Uint16(body))
	if 2+wlen+2 > len(body) {
		return u, updateErrorf(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "Withdrawn Routes Length %d overruns the message", wlen)
	}
	withdrawn := body[2 : 2+wlen]
	alen := int(binary.BigEndian.Uint16(body[2+wlen:]))
	rest := body[4+wlen:]
	if alen > len(rest) {
		return u, updateErrorf(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "Total Path Attribute Length %d overruns the message", alen)
	}
	attrs, nlri := rest[:alen], rest[alen:]
	// RFC 4724 2: End-of-RIB is an UPDATE with nothing in it (IPv4) or with
	// only an empty MP_UNREACH_NLRI.
	bare := wlen == 0 && len(nlri) == 0
	if !d.families.has(IPv4Unicast) && !bare {
		withdrawn, nlri = nil, nil
		u.ignored++
	}
	if bare && alen == 0 {
		if d.families.has(IPv4Unicast) {
			u.eor = IPv4Unicast
		}
		return u, nil
	}
	reach, unreach, n, err := d.scan(attrs)
	if err != nil {
		return u, err
	}
	if reach.seen && reach.fam == 0 && reach.parsed || unreach.seen && unreach.fam == 0 && unreach.parsed {
		u.ignored++
	}
	if bare && n == 1 && unreach.parsed && len(unreach.nlri) == 0 {
		u.eor = unreach.fam // 0 for a family not negotiated
		return u, nil
	}

	a, handling, why, err := d.attributes()
	if err != nil {
		return u, err
	}
	hasReach := len(nlri) > 0 || reach.fam != 0
	if handling < bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW && hasReach {
		if err := a.check(d, len(nlri) > 0, reach); err != nil {
			handling, why = bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW, err
		}
	}
	switch handling {
	case bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD:
		u.discarded = why
	case bgp.ERROR_HANDLING_TREAT_AS_WITHDRAW:
		if hasReach {
			u.withdrawn = why
		}
	}

	if err := d.appendChanges(&u, withdrawn, nlri, unreach, reach, &a); err != nil {
		return u, err
	}
	u.changes = d.changes
	return u, nil
}

// appendChanges decodes the prefixes of an UPDATE into d.changes:
// withdrawals first, as the message lists them, then announcements, with
// the attributes a (none when u is treated as withdrawn).
func (d *decoder) appendChanges(u *update, withdrawn, nlri []byte, unreach, reach mpNLRI, a *pathAttrs) error {
	if err := d.appendNLRI(withdrawn, IPv4Unicast, nil); err != nil {
		return updateErrorf(bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "Withdrawn Routes: %v", err)
	}
	if unreach.fam != 0 {
		if err := d.appendNLRI(unreach.nlri, unreach.fam, nil); err != nil {
			return updateErrorf(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, "MP_UNREACH_NLRI %v: %v", unreach.fam, err)
		}
	}
	var tmpl *Change
	if u.withdrawn == nil {
		tmpl = &Change{PathLen: a.pathLen, NextHop: a.nextHop, LocalPref: a.localPref, Communities: a.communities}
	}
	if err := d.appendNLRI(nlri, IPv4Unicast, tmpl); err != nil {
		return updateErrorf(bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD, "NLRI: %v", err)
	}
	if reach.fam != 0 {
		if tmpl != nil {
			tmpl.NextHop = a.mpNextHop
		}
		if err := d.appendNLRI(reach.nlri, reach.fam, tmpl); err != nil {
			return updateErrorf(bgp.BGP_ERROR_SUB_OPTIONAL_ATTRIBUTE_ERROR, "MP_REACH_NLRI %v: %v", reach.fam, err)
		}
	}
	return nil
}

// appendNLRI appends a Change for each prefix of the NLRI-encoded list b:
// a copy of *tmpl with the prefix, or a withdrawal when tmpl is nil.
func (d *decoder) appendNLRI(b []byte, f Family, tmpl *Change) error {
	for len(b) > 0 {
		p, rest, ok := nextPrefix(b, f == IPv6Unicast)
		if !ok {
			if b[0] > 128 || f == IPv4Unicast && b[0] > 32 {
				return fmt.Errorf("prefix length %d", b[0])
			}
			return fmt.Errorf("prefix of length %d truncated", b[0])
		}
		b = rest
		if tmpl == nil {
			d.changes = append(d.changes, Change{Prefix: p, Withdraw: true})
			continue
		}
		c := *tmpl
		c.Prefix = p
		d.changes = append(d.changes, c)
	}
	return nil
}

// scan walks the framing of the attribute field (RFC 4271 4.3) and copies
// it to d.attrs, in UPDATE body form with no withdrawals and no NLRI, for
// GoBGP to decode. On the way MP_REACH_NLRI and MP_UNREACH_NLRI lose their
// NLRI (returned, for nextPrefix), and are left out when their family is not
// negotiated; optional attributes that are not checked are left out. A
// framing error is copied as it is: GoBGP finds it and says how to handle it
// (RFC 7606 4). n counts the attributes framed.
func (d *decoder) scan(attrs []byte) (reach, unreach mpNLRI, n int, err error) {
	d.attrs = append(d.attrs[:0], 0, 0, 0, 0)
	for b := attrs; len(b) > 0; {
		hdr := 3
		if b[0]&flagExtendedLength != 0 {
			hdr = 4
		}
		if len(b) < hdr {
			d.attrs = append(d.attrs, b...)
			break
		}
		l := int(b[2])
		if hdr == 4 {
			l = int(binary.BigEndian.Uint16(b[2:]))
		}
		if hdr+l > len(b) {
			d.attrs = append(d.attrs, b...)
			break
		}
		flags, typ, v := b[0], b[1], b[hdr:hdr+l]
		whole := b[:hdr+l]
		b = b[hdr+l:]
		n++
		switch {
		case typ == attrMPReach || typ == attrMPUnreach:
			m := &reach
			if typ == attrMPUnreach {
				m = &unreach
			}
			if m.seen {
				// RFC 7606 3(g).
				return reach, unreach, n, updateErrorf(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "attribute %d appears twice", typ)
			}
			m.seen = true
			keep := 3 // AFI, SAFI
			if typ == attrMPReach && l >= 4 {
				keep = 3 + 1 + int(v[3]) + 1 // next hop length, next hop, reserved
			}
			if l < keep || (typ == attrMPReach && l < 4) {
				d.attrs = append(d.attrs, whole...) // GoBGP rejects it
				continue
			}
			m.parsed = true
			f, ok := afiSAFI(binary.BigEndian.Uint16(v), v[2])
			if !ok || !d.families.has(f) {
				continue
			}
			m.fam, m.nlri = f, v[keep:]
			d.attrs = append(d.attrs, flags, typ)
			if hdr == 4 {
				d.attrs = binary.BigEndian.AppendUint16(d.attrs, uint16(keep))
			} else {
				d.attrs = append(d.attrs, byte(keep))
			}
			d.attrs = append(d.attrs, v[:keep]...)
		case checked(typ):
			d.attrs = append(d.attrs, whole...)
		case flags&flagOptional == 0:
			return reach, unreach, n, notifyf(bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
				append([]byte(nil), whole...), "unrecognized well-known attribute %d", typ)
		}
	}
	binary.BigEndian.PutUint16(d.attrs[2:], uint16(len(d.attrs)-4))
	return reach, unreach, n, nil
}

// afiSAFI maps an AFI and SAFI to a Family.
func afiSAFI(afi uint16, safi uint8) (Family, bool) {
	switch {
	case afi == bgp.AFI_IP && safi == bgp.SAFI_UNICAST:
		return IPv4Unicast, true
	case afi == bgp.AFI_IP6 && safi == bgp.SAFI_UNICAST:
		return IPv6Unicast, true
	}
	return 0, false
}

// pathAttrs are the path attributes a Change carries, and what check needs.
type pathAttrs struct {
	origin, asPath, nextHopSet, mpReachSet bool
	originValue                            uint8
	confed                                 bool // AS_PATH has confederation segments
	pathLen                                int
	nextHop                                netip.Addr // NEXT_HOP
	mpNextHop, mpLinkLocal                 netip.Addr // MP_REACH_NLRI's
	localPref                              uint32
	communities                            []uint32
}

// attributes decodes d.attrs with GoBGP and applies its RFC 7606 error
// handling: an error return means session reset (RFC 7606 says "AFI/SAFI
// disable" for MP_REACH_NLRI and MP_UNREACH_NLRI errors, or session reset;
// this speaker resets); otherwise handling says whether to discard
// attributes or treat the UPDATE as withdraw, and why.
func (d *decoder) attributes() (a pathAttrs, handling bgp.ErrorHandling, why, err error) {
	var msg bgp.BGPUpdate
	if derr := msg.DecodeFromBytes(d.attrs, &d.opt); derr != nil {
		var me *bgp.MessageError
		if !errors.As(derr, &me) {
			return a, 0, nil, updateErrorf(bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST, "%v", derr)
		}
		handling, why = me.ErrorHandling, derr
		if handling >= bgp.ERROR_HANDLING_AFISAFI_DISABLE {
			code, sub := me.TypeCode, me.SubTypeCode
			if code == 0 {
				code, sub = bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_MALFORMED_ATTRIBUTE_LIST
			}
			return a, handling, why, notifyf(code, sub, me.Data, "%s", me.Message)
		}
	}
	var seen [256 / 64]uint64
	for _, pa := range msg.PathAttributes {
		t := pa.GetType()
		if seen[t/64]&(1<<(t%64)) != 0 {
			// RFC 7606 3(g): all but the first are discarded.
			if handling < bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD {
				handling, why = bgp.ERROR_HANDLING_ATTRIBUTE_DISCARD, fmt.Errorf("attribute %v appears twice", t)
			}
			continue
		}
		seen[t/64] |= 1 << (t % 64)
		switch pa := pa.(type) {
		case *bgp.PathAttributeOrigin:
			a.origin, a.originValue = true, pa.Value
		case *bgp.PathAttributeAsPath:
			a.asPath = true
			for _, seg := range pa.Value {
				a.pathLen += seg.ASLen()
				if t := seg.GetType(); t == bgp.BGP_ASPATH_ATTR_TYPE_CONFED_SEQ || t == bgp.BGP_ASPATH_ATTR_TYPE_CONFED_SET {
					a.confed = true
				}
			}
		case *bgp.PathAttributeNextHop:
			a.nextHopSet, a.nextHop = true, pa.Value
		case *bgp.PathAttributeMpReachNLRI:
			a.mpReachSet, a.mpNextHop, a.mpLinkLocal = true, pa.Nexthop, pa.LinkLocalNexthop
		case *bgp.PathAttributeLocalPref:
			if !d.external {
				a.localPref = pa.Value
			}
		case *bgp.PathAttributeCommunities:
			a.communities = pa.Value
		}
	}
	// AS4_PATH needs no merging here: RFC 6793 4.2.3 builds the merged path
	// so that it has as many AS numbers as AS_PATH (or ignores AS4_PATH),
	// counting as best-path selection does, and PathLen is that count.
	return a, handling, why, nil
}

// check applies the checks of GoBGP's ValidateUpdateMsg that decoding does
// not, to an UPDATE that announces prefixes (nlri: in the NLRI field; reach:
// in MP_REACH_NLRI). A non-nil error means treat-as-withdraw.
func (a *pathAttrs) check(d *decoder, nlri bool, reach mpNLRI) error {
	// RFC 7606 3(d); RFC 4760 makes NEXT_HOP mandatory only with NLRI.
	switch {
	case !a.origin:
		return errors.New("ORIGIN missing")
	case !a.asPath:
		return errors.New("AS_PATH missing")
	case nlri && !a.nextHopSet:
		return errors.New("NEXT_HOP missing")
	case a.originValue > bgp.BGP_ORIGIN_ATTR_TYPE_INCOMPLETE:
		return fmt.Errorf("ORIGIN %d", a.originValue)
	case a.confed && d.external:
		// RFC 5065 5 (this speaker is in no confederation); RFC 7606 7.2.
		return errors.New("AS_PATH has confederation segments from an external peer")
	}
	if nlri {
		if err := d.usableNextHop(a.nextHop, IPv4Unicast); err != nil {
			return fmt.Errorf("NEXT_HOP %v", err)
		}
	}
	if reach.fam != 0 {
		if !a.mpReachSet {
			return errors.New("MP_REACH_NLRI not decoded")
		}
		nh := a.mpNextHop
		if reach.fam == IPv6Unicast && (!nh.Is6() || nh.IsUnspecified() || nh.IsLinkLocalUnicast()) && a.mpLinkLocal.IsLinkLocalUnicast() {
			nh = a.mpLinkLocal // RFC 2545 3: the global address may be absent
		}
		if err := d.usableNextHop(nh, reach.fam); err != nil {
			return fmt.Errorf("MP_REACH_NLRI next hop %v", err)
		}
		a.mpNextHop = nh
	}
	return nil
}

// usableNextHop says what is wrong with nh as a next hop of family f
// (RFC 4271 6.3: semantically incorrect NEXT_HOP; RFC 7606 7.3).
func (d *decoder) usableNextHop(nh netip.Addr, f Family) error {
	switch {
	case !nh.IsValid():
		return errors.New("missing")
	case f == IPv4Unicast && !nh.Is4():
		return fmt.Errorf("%v: not IPv4", nh)
	case f == IPv6Unicast && (!nh.Is6() || nh.Is4In6()):
		return fmt.Errorf("%v: not IPv6", nh)
	case nh.IsUnspecified(), nh.IsMulticast(), nh.IsLoopback(),
		nh.Is4() && (nh.As4()[0] == 0 || nh.As4()[0] >= 240):
		return fmt.Errorf("%v: not a host address", nh)
	case nh == d.local:
		return fmt.Errorf("%v: this speaker's own address", nh)
	}
	return nil
}
