package bgptest

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// The corpus's addresses: a peer at 198.51.100.2 (and 2001:db8:1::2), its
// own next hop, sends the UPDATEs to a speaker at LocalAddr; they announce
// Prefix4 or Prefix6.
var (
	LocalAddr = netip.MustParseAddr("198.51.100.1")
	NextHop4  = netip.MustParseAddr("198.51.100.2")
	NextHop6  = netip.MustParseAddr("2001:db8:1::2")
	Prefix4   = netip.MustParsePrefix("192.0.2.0/24")
	Prefix6   = netip.MustParsePrefix("2001:db8:100::/48")
	// PeerAS is the AS the corpus's AS_PATHs start with.
	PeerAS uint32 = 64501
)

// Path attribute type codes and flags (RFC 4271 4.3, 5).
const (
	AttrOrigin          = 1
	AttrASPath          = 2
	AttrNextHop         = 3
	AttrMED             = 4
	AttrLocalPref       = 5
	AttrAtomicAggregate = 6
	AttrAggregator      = 7
	AttrCommunities     = 8
	AttrMPReach         = 14 // RFC 4760
	AttrMPUnreach       = 15

	flagExtendedLength = 0x10
)

// Attr is a path attribute: flags, type, length (two bytes with the
// Extended Length flag) and value.
func Attr(flags, typ byte, value ...byte) []byte {
	if flags&flagExtendedLength != 0 {
		return append([]byte{flags, typ, byte(len(value) >> 8), byte(len(value))}, value...)
	}
	return append([]byte{flags, typ, byte(len(value))}, value...)
}

// RawUpdate is an UPDATE body (the message less its 19-byte header) with
// the given fields, lengths computed.
func RawUpdate(withdrawn []byte, attrs [][]byte, nlri []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(withdrawn)))
	b = append(b, withdrawn...)
	a := slices.Concat(attrs...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
	b = append(b, a...)
	return append(b, nlri...)
}

// Well-formed pieces, 4-octet AS numbers in AS_PATH.
var (
	Origin    = Attr(0x40, AttrOrigin, 0)
	Path1     = Attr(0x40, AttrASPath, 2, 1, 0, 0, 0xfb, 0xf5) // AS_SEQUENCE 64501
	NextHopOK = Attr(0x40, AttrNextHop, 198, 51, 100, 2)
	NLRI24    = []byte{24, 192, 0, 2} // Prefix4
	// MPReach6 announces Prefix6 with next hop NextHop6.
	MPReach6 = Attr(0x80, AttrMPReach, append([]byte{0, 2, 1, 16, 0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0}, 48, 0x20, 0x01, 0x0d, 0xb8, 1, 0)...)
)

// WellFormedAttrs are ORIGIN, AS_PATH and NEXT_HOP, for NLRI24.
func WellFormedAttrs() [][]byte { return [][]byte{Origin, Path1, NextHopOK} }

// Outcome is what a speaker does with an UPDATE.
type Outcome int

const (
	Accepted        Outcome = iota // announcements delivered
	TreatAsWithdraw                // announcements delivered as withdrawals (RFC 7606 2)
	Discard                        // announcements delivered, the bad attributes ignored
	Reset                          // NOTIFICATION, session reset
	Ignored                        // nothing delivered, no error
)

func (o Outcome) String() string {
	return [...]string{"accepted", "treat-as-withdraw", "attribute discard", "session reset", "ignored"}[o]
}

// Malformed is one UPDATE of the corpus and what RFC 7606 (or RFC 4271)
// says to do with it.
type Malformed struct {
	Name string
	Body []byte // the UPDATE less its header
	Want Outcome
	// Code is the NOTIFICATION's code and subcode, for Reset.
	Code [2]uint8
	// Prefix is the prefix the message announces, Prefix4 or Prefix6,
	// where it parses that far.
	Prefix netip.Prefix
}

// Corpus is the malformed UPDATEs (and one well-formed one, first).
var Corpus = []Malformed{
	{"well-formed", RawUpdate(nil, WellFormedAttrs(), NLRI24), Accepted, [2]uint8{}, Prefix4},
	{"too short", []byte{0, 0, 0}, Reset, [2]uint8{3, 1}, Prefix4},
	{"withdrawn length overruns", append([]byte{0, 200}, RawUpdate(nil, WellFormedAttrs(), NLRI24)[2:]...), Reset, [2]uint8{3, 1}, Prefix4},
	{"attribute length overruns message", func() []byte {
		b := RawUpdate(nil, WellFormedAttrs(), NLRI24)
		b[3] = 0xff
		return b
	}(), Reset, [2]uint8{3, 1}, Prefix4},
	{"NLRI prefix length 33", RawUpdate(nil, WellFormedAttrs(), []byte{33, 192, 0, 2, 0, 0}), Reset, [2]uint8{3, 10}, Prefix4},
	{"NLRI truncated", RawUpdate(nil, WellFormedAttrs(), []byte{24, 192, 0}), Reset, [2]uint8{3, 10}, Prefix4},
	{"withdrawn truncated", RawUpdate([]byte{32, 192, 0}, nil, nil), Reset, [2]uint8{3, 10}, Prefix4},
	{"ORIGIN length 2", RawUpdate(nil, [][]byte{Attr(0x40, AttrOrigin, 0, 0), Path1, NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"ORIGIN value 5", RawUpdate(nil, [][]byte{Attr(0x40, AttrOrigin, 5), Path1, NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"ORIGIN flagged optional", RawUpdate(nil, [][]byte{Attr(0xc0, AttrOrigin, 0), Path1, NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"ORIGIN missing", RawUpdate(nil, [][]byte{Path1, NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"AS_PATH missing", RawUpdate(nil, [][]byte{Origin, NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"AS_PATH segment overruns", RawUpdate(nil, [][]byte{Origin, Attr(0x40, AttrASPath, 2, 3, 0, 0, 0xfb, 0xf5), NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"AS_PATH segment type 9", RawUpdate(nil, [][]byte{Origin, Attr(0x40, AttrASPath, 9, 1, 0, 0, 0xfb, 0xf5), NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"AS_PATH odd length", RawUpdate(nil, [][]byte{Origin, Attr(0x40, AttrASPath, 2, 1, 0, 0, 0xfb), NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"AS_PATH confederation from eBGP", RawUpdate(nil, [][]byte{Origin, Attr(0x40, AttrASPath, 3, 1, 0, 0, 0xfb, 0xf5), NextHopOK}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"NEXT_HOP missing", RawUpdate(nil, [][]byte{Origin, Path1}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"NEXT_HOP length 5", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x40, AttrNextHop, 198, 51, 100, 2, 0)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"NEXT_HOP 0.0.0.0", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x40, AttrNextHop, 0, 0, 0, 0)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"NEXT_HOP multicast", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x40, AttrNextHop, 224, 0, 0, 1)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"NEXT_HOP our address", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x40, AttrNextHop, 198, 51, 100, 1)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"NEXT_HOP IPv6 for IPv4 NLRI", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x40, AttrNextHop, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"LOCAL_PREF length 3", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0x40, AttrLocalPref, 0, 0, 100)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"MED length 2", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0x80, AttrMED, 0, 1)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"COMMUNITIES length 5", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0xc0, AttrCommunities, 0, 0, 0, 1, 2)}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"last attribute overruns the attribute field", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0xc0, AttrCommunities, 0, 0, 0, 1)[:5]}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"2 stray bytes in the attribute field", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, {0x40, 1}}, NLRI24), TreatAsWithdraw, [2]uint8{}, Prefix4},
	{"ORIGIN twice", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0x40, AttrOrigin, 2)}, NLRI24), Discard, [2]uint8{}, Prefix4},
	{"AGGREGATOR length 5", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0xc0, AttrAggregator, 1, 2, 3, 4, 5)}, NLRI24), Discard, [2]uint8{}, Prefix4},
	{"ATOMIC_AGGREGATE length 1", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0x40, AttrAtomicAggregate, 1)}, NLRI24), Discard, [2]uint8{}, Prefix4},
	{"unknown optional attribute", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0xc0, 99, 1, 2, 3)}, NLRI24), Accepted, [2]uint8{}, Prefix4},
	{"unknown well-known attribute", RawUpdate(nil, [][]byte{Origin, Path1, NextHopOK, Attr(0x40, 99, 1, 2, 3)}, NLRI24), Reset, [2]uint8{3, 2}, Prefix4},
	{"MP_REACH_NLRI twice", RawUpdate(nil, [][]byte{Origin, Path1, MPReach6, MPReach6}, nil), Reset, [2]uint8{3, 1}, Prefix6},
	{"MP_REACH_NLRI next hop length 5", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x80, AttrMPReach, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0, 48, 0x20, 1, 0xd, 0xb8, 1, 0)}, nil), Reset, [2]uint8{3, 5}, Prefix6},
	{"MP_REACH_NLRI truncated header", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x80, AttrMPReach, 0, 2)}, nil), Reset, [2]uint8{3, 5}, Prefix6},
	{"MP_REACH_NLRI prefix length 129", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x80, AttrMPReach, append(MPReach6[3:3+21:3+21], 129, 1)...)}, nil), Reset, [2]uint8{3, 9}, Prefix6},
	{"MP_REACH_NLRI overruns the attribute field", RawUpdate(nil, [][]byte{Origin, Path1, MPReach6[:len(MPReach6)-2]}, nil), Reset, [2]uint8{3, 5}, Prefix6},
	{"MP_UNREACH_NLRI truncated prefix", RawUpdate(nil, [][]byte{Attr(0x80, AttrMPUnreach, 0, 2, 1, 64, 0x20, 1)}, nil), Reset, [2]uint8{3, 9}, Prefix6},
	{"MP_REACH_NLRI with IPv4 next hop for IPv6", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x80, AttrMPReach, 0, 2, 1, 4, 198, 51, 100, 2, 0, 48, 0x20, 1, 0xd, 0xb8, 1, 0)}, nil), TreatAsWithdraw, [2]uint8{}, Prefix6},
	{"MP_REACH_NLRI of a family not negotiated", RawUpdate(nil, [][]byte{Origin, Path1, Attr(0x80, AttrMPReach, 0, 1, 128, 12, 0, 0, 0, 0, 0, 0, 0, 0, 198, 51, 100, 2, 0, 88, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 192, 0, 2)}, nil), Ignored, [2]uint8{}, Prefix4},
	{"MP_REACH_NLRI with AS_PATH missing", RawUpdate(nil, [][]byte{Origin, MPReach6}, nil), TreatAsWithdraw, [2]uint8{}, Prefix6},
	{"attribute flags error on MP_REACH_NLRI", RawUpdate(nil, [][]byte{Origin, Path1, append([]byte{0x40}, MPReach6[1:]...)}, nil), TreatAsWithdraw, [2]uint8{}, Prefix6},
}
