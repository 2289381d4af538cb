package routes

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/packet/mrt"
)

// MRTPeer identifies one peer of a TABLE_DUMP_V2 PEER_INDEX_TABLE.
type MRTPeer struct {
	Index   int // position in the peer table, as RIB entries refer to it
	AS      uint32
	Address netip.Addr
	BGPID   netip.Addr
}

func (p MRTPeer) String() string {
	return fmt.Sprintf("AS%d %s", p.AS, p.Address)
}

// MRTSelector picks one peer of a dump: by AS (AS != 0) or by address
// (Address.IsValid()); exactly one is set. Select by address when the
// collector has several sessions with the same AS.
type MRTSelector struct {
	AS      uint32
	Address netip.Addr
}

func (s MRTSelector) String() string {
	if s.Address.IsValid() {
		return "address " + s.Address.String()
	}
	return fmt.Sprintf("AS%d", s.AS)
}

// MRTStats counts what ReadMRTWithStats read and what it passed over.
type MRTStats struct {
	Records int // MRT records read, the peer table included
	Entries int // RIB entries (paths) in unicast RIB records, all peers
	// Skipped counts records of other types and subtypes (ADD-PATH,
	// multicast, BGP4MP, ...) by name, e.g. "RIB_IPV4_UNICAST_ADDPATH".
	// A dump whose paths are all ADD-PATH yields no routes, and this is
	// where that shows.
	Skipped map[string]int
	// Mapped counts routes dropped because their prefix is IPv4-mapped
	// IPv6: the FIB never treats those as IPv4, and as IPv6 they lead
	// nowhere.
	Mapped int
}

// ReadMRT reads a TABLE_DUMP_V2 RIB dump (plain or gzip, detected by magic)
// and returns its peer table and, for each selector in order, the routes of
// the peer it selects from the RIB_IPV4_UNICAST and RIB_IPV6_UNICAST
// records. Other records are skipped (see ReadMRTWithStats for counts). A
// selector that matches no peer, or several, is an error that lists the
// candidates. A corrupt or truncated record is an error naming its byte
// offset in the uncompressed stream. With no selectors it stops after the
// peer table.
func ReadMRT(r io.Reader, name string, sel []MRTSelector) (peers []MRTPeer, routes [][]Route, err error) {
	peers, routes, _, err = ReadMRTWithStats(r, name, sel)
	return peers, routes, err
}

// ReadMRTFile opens path and calls ReadMRT.
func ReadMRTFile(path string, sel []MRTSelector) ([]MRTPeer, [][]Route, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return ReadMRT(f, path, sel)
}

// MRTPeers lists the peers of a dump. It reads only up to the
// PEER_INDEX_TABLE, which RFC 6396 puts before the RIB records.
func MRTPeers(r io.Reader, name string) ([]MRTPeer, error) {
	peers, _, _, err := readMRT(r, name, nil, true)
	return peers, err
}

// ReadMRTWithStats is ReadMRT that also says what it read and skipped.
func ReadMRTWithStats(r io.Reader, name string, sel []MRTSelector) ([]MRTPeer, [][]Route, MRTStats, error) {
	for i, s := range sel {
		if (s.AS != 0) == s.Address.IsValid() {
			return nil, nil, MRTStats{}, fmt.Errorf("%s: peer selector %d: set exactly one of AS and address", name, i)
		}
	}
	return readMRT(r, name, sel, len(sel) == 0)
}

// Records are read into a buffer this large at a time, so that a header
// claiming gigabytes on a short input fails as truncated instead of
// allocating. Real RIB records are at most tens of KB.
const mrtChunk = 1 << 20

// mrtReader splits an MRT stream into records by the header's length
// field; all other decoding is gobgp's.
type mrtReader struct {
	name string
	r    io.Reader
	off  int64  // offset of the next record
	rec  []byte // last record, header included; reused
}

// next returns the next record and its offset, or io.EOF at a clean end.
func (m *mrtReader) next() (off int64, h *mrt.MRTHeader, body []byte, err error) {
	off = m.off
	rec := m.rec[:0]
	rec = append(rec, make([]byte, mrt.MRT_COMMON_HEADER_LEN)...)
	n, err := io.ReadFull(m.r, rec)
	switch {
	case n == 0 && err == io.EOF:
		return off, nil, nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return off, nil, nil, m.errorf(off, "truncated header: %d of %d bytes", n, mrt.MRT_COMMON_HEADER_LEN)
	case err != nil:
		return off, nil, nil, m.errorf(off, "%w", err)
	}
	if off == 0 {
		// Check before trusting the length field: text fed in by
		// mistake would otherwise claim a body of hundreds of MB.
		if t := mrt.MRTType(binary.BigEndian.Uint16(rec[4:6])); !knownType(t) {
			return off, nil, nil, m.errorf(off, "unknown MRT type %d: not an MRT file?", t)
		}
	}
	bodyLen := int64(binary.BigEndian.Uint32(rec[8:12]))
	for need := bodyLen; need > 0; {
		chunk := int(min(need, mrtChunk))
		rec = slices.Grow(rec, chunk)
		k, err := io.ReadFull(m.r, rec[len(rec):len(rec)+chunk])
		rec = rec[:len(rec)+k]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return off, nil, nil, m.errorf(off, "truncated: %d of %d body bytes", int64(len(rec)-mrt.MRT_COMMON_HEADER_LEN), bodyLen)
		}
		if err != nil {
			return off, nil, nil, m.errorf(off, "%w", err)
		}
		need -= int64(chunk)
	}
	m.rec = rec
	m.off += int64(len(rec))
	// ParseHeader also reads the microsecond field of _ET types, which
	// the length counts as body.
	h, err = mrt.ParseHeader(rec)
	if err != nil {
		return off, nil, nil, m.errorf(off, "%w", err)
	}
	return off, h, rec[mrt.MRT_COMMON_HEADER_LEN:], nil
}

func (m *mrtReader) errorf(off int64, format string, args ...any) error {
	return fmt.Errorf("%s: record at offset %d: %w", m.name, off, fmt.Errorf(format, args...))
}

// parseBody is gobgp's record decoder; a variable so a test can make it
// panic.
var parseBody = mrt.ParseBody

// parse decodes one record with gobgp. gobgp's decoders are written for
// BGP sessions whose peers mostly behave; a panic on hostile bytes becomes
// an error for this record rather than taking the process down.
func (m *mrtReader) parse(off int64, h *mrt.MRTHeader, body []byte) (msg *mrt.MRTMessage, err error) {
	defer func() {
		if p := recover(); p != nil {
			msg, err = nil, m.errorf(off, "gobgp panicked decoding it: %v", p)
		}
	}()
	msg, err = parseBody(body, h)
	if err != nil {
		return nil, m.errorf(off, "%w", err)
	}
	return msg, nil
}

func readMRT(r io.Reader, name string, sel []MRTSelector, peersOnly bool) ([]MRTPeer, [][]Route, MRTStats, error) {
	src, _, err := maybeGunzip(r, 16<<10)
	if err != nil {
		return nil, nil, MRTStats{}, fmt.Errorf("%s: offset 0: %w", name, err)
	}
	m := &mrtReader{name: name, r: src}
	d := &mrtDump{m: m, sel: sel, routes: make([][]Route, len(sel))}
	for {
		off, h, body, err := m.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, d.stats, err
		}
		d.stats.Records++
		if h.Type != mrt.TABLE_DUMPv2 {
			d.stats.skip(typeName(h.Type, h.SubType))
			continue
		}
		switch mrt.MRTSubTypeTableDumpv2(h.SubType) {
		case mrt.PEER_INDEX_TABLE:
			if err := d.peerTable(off, h, body); err != nil {
				return nil, nil, d.stats, err
			}
			if peersOnly {
				return d.peers, d.routes, d.stats, nil
			}
		case mrt.RIB_IPV4_UNICAST, mrt.RIB_IPV6_UNICAST:
			if err := d.rib(off, h, body); err != nil {
				return nil, nil, d.stats, err
			}
		default:
			d.stats.skip(typeName(h.Type, h.SubType))
		}
	}
	if d.peers == nil {
		return nil, nil, d.stats, fmt.Errorf("%s: no PEER_INDEX_TABLE before the end at offset %d: not a TABLE_DUMP_V2 RIB dump?", name, m.off)
	}
	return d.peers, d.routes, d.stats, nil
}

// mrtDump is what readMRT has learned of a dump so far: its peers, which
// selectors want each, and the routes gathered for each selector.
type mrtDump struct {
	m      *mrtReader
	sel    []MRTSelector
	peers  []MRTPeer
	want   [][]int // selector indexes by peer index
	routes [][]Route
	stats  MRTStats
}

// peerTable reads the PEER_INDEX_TABLE and resolves the selectors against it.
func (d *mrtDump) peerTable(off int64, h *mrt.MRTHeader, body []byte) error {
	if d.peers != nil {
		// RIB entries name peers by index; a second table would
		// change what the indexes mean halfway through.
		return d.m.errorf(off, "second PEER_INDEX_TABLE; one dump holds one")
	}
	msg, err := d.m.parse(off, h, body)
	if err != nil {
		return err
	}
	d.peers = peerList(msg.Body.(*mrt.PeerIndexTable))
	d.want, err = resolve(d.peers, d.sel)
	if err != nil {
		return fmt.Errorf("%s: peer table at offset %d: %w", d.m.name, off, err)
	}
	return nil
}

// rib reads one unicast RIB record: the route of each entry whose peer a
// selector wants goes to that selector's routes.
func (d *mrtDump) rib(off int64, h *mrt.MRTHeader, body []byte) error {
	if d.peers == nil {
		return d.m.errorf(off, "RIB record before the PEER_INDEX_TABLE")
	}
	msg, err := d.m.parse(off, h, body)
	if err != nil {
		return err
	}
	rib := msg.Body.(*mrt.Rib)
	nlri, ok := rib.Prefix.(*bgp.IPAddrPrefix)
	if !ok {
		return d.m.errorf(off, "prefix of type %T", rib.Prefix)
	}
	prefix := nlri.Prefix.Masked()
	mapped := prefix.Addr().Is4In6() && prefix.Bits() >= mappedV4.Bits()
	for ei, e := range rib.Entries {
		d.stats.Entries++
		if int(e.PeerIndex) >= len(d.peers) {
			return d.m.errorf(off, "RIB entry for peer index %d; the peer table has %d peers", e.PeerIndex, len(d.peers))
		}
		sels := d.want[e.PeerIndex]
		if len(sels) == 0 {
			continue
		}
		if mapped {
			d.stats.Mapped++
			continue
		}
		rt, err := d.m.entryRoute(off, body, rib, prefix, ei)
		if err != nil {
			return err
		}
		for _, i := range sels {
			d.routes[i] = append(d.routes[i], rt)
		}
	}
	return nil
}

func (s *MRTStats) skip(kind string) {
	if s.Skipped == nil {
		s.Skipped = make(map[string]int)
	}
	s.Skipped[kind]++
}

func peerList(t *mrt.PeerIndexTable) []MRTPeer {
	peers := make([]MRTPeer, len(t.Peers))
	for i, p := range t.Peers {
		peers[i] = MRTPeer{Index: i, AS: p.AS, Address: p.IpAddress, BGPID: p.BgpId}
	}
	return peers
}

// resolve maps each selector to exactly one peer and returns, by peer
// index, the selectors that want it. Errors list the candidates, because
// the operator fixing the config needs them and has no other view of the
// dump.
func resolve(peers []MRTPeer, sel []MRTSelector) ([][]int, error) {
	want := make([][]int, len(peers))
	for i, s := range sel {
		var match []MRTPeer
		for _, p := range peers {
			if (s.Address.IsValid() && p.Address == s.Address) || (!s.Address.IsValid() && p.AS == s.AS) {
				match = append(match, p)
			}
		}
		switch {
		case len(match) == 0:
			return nil, fmt.Errorf("no peer with %s; peers: %s", s, peerString(peers))
		case len(match) > 1 && s.Address.IsValid():
			return nil, fmt.Errorf("%d peers with %s, which cannot be told apart: %s", len(match), s, peerString(match))
		case len(match) > 1:
			return nil, fmt.Errorf("%d peers with %s: %s; select one by address", len(match), s, peerString(match))
		}
		want[match[0].Index] = append(want[match[0].Index], i)
	}
	return want, nil
}

func peerString(peers []MRTPeer) string {
	var b strings.Builder
	for i, p := range peers {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// entryRoute builds the Route of entry i of rib, whose record body is body.
func (m *mrtReader) entryRoute(off int64, body []byte, rib *mrt.Rib, prefix netip.Prefix, i int) (Route, error) {
	e := rib.Entries[i]
	rt := Route{Prefix: prefix, PathLen: -1}
	var nextHop, mpNextHop netip.Addr
	for j, a := range e.PathAttributes {
		switch a := a.(type) {
		case *bgp.PathAttributeAsPath:
			rt.PathLen = pathLen(a)
		case *bgp.PathAttributeNextHop:
			nextHop = a.Value
		case *bgp.PathAttributeMpReachNLRI:
			mpNextHop = a.Nexthop
			if !mpNextHop.IsValid() && a.Length > 1 {
				// RFC 6396 4.3.4 cuts this attribute down to the next
				// hop, and gobgp decodes it so in MRT. RouteViews (Quagga
				// lineage) writes it whole: AFI, SAFI, next hop, reserved,
				// NLRI. gobgp then takes the AFI's high byte, 0, for the
				// next-hop length and returns no next hop and no error.
				// Decode the attribute's bytes again as in an UPDATE.
				raw, ok := attrBytes(body, rib, i, j)
				if !ok {
					return rt, m.errorf(off, "entry %d: cannot locate MP_REACH_NLRI", i)
				}
				var whole bgp.PathAttributeMpReachNLRI
				if err := whole.DecodeFromBytes(raw); err != nil {
					return rt, m.errorf(off, "entry %d: MP_REACH_NLRI: %w", i, err)
				}
				mpNextHop = whole.Nexthop
			}
		}
	}
	// NEXT_HOP is the IPv4 next hop; MP_REACH_NLRI carries IPv6 ones and
	// IPv6 next hops of IPv4 routes (RFC 8950).
	rt.NextHop = nextHop
	if mpNextHop.IsValid() && (prefix.Addr().Is6() || !nextHop.IsValid()) {
		rt.NextHop = mpNextHop
	}
	return rt, nil
}

// attrBytes returns the bytes of attribute j of entry i of a non-ADD-PATH
// RIB record body, found by walking the record with the lengths gobgp
// itself advanced by (parseRib, parseRibEntry): sequence number, prefix,
// entry count, then per entry peer index, time, attribute length and the
// attributes.
func attrBytes(body []byte, rib *mrt.Rib, i, j int) ([]byte, bool) {
	off := 4 + rib.Prefix.Len() + 2
	for ei, e := range rib.Entries {
		off += 8
		for aj, a := range e.PathAttributes {
			n := a.Len()
			if ei == i && aj == j {
				if off < 0 || off+n > len(body) {
					return nil, false
				}
				return body[off : off+n], true
			}
			off += n
		}
	}
	return nil, false
}

// pathLen is the AS_PATH length for best-path selection: an AS_SET counts
// 1 (RFC 4271 9.1.2.2) and confederation segments count 0 (RFC 5065 5.3),
// which is what gobgp's ASLen returns.
func pathLen(a *bgp.PathAttributeAsPath) int {
	n := 0
	for _, seg := range a.Value {
		n += seg.ASLen()
	}
	return n
}

func knownType(t mrt.MRTType) bool {
	switch t {
	case mrt.NULL, mrt.START, mrt.DIE, mrt.I_AM_DEAD, mrt.PEER_DOWN, mrt.BGP, mrt.RIP, mrt.IDRP,
		mrt.RIPNG, mrt.BGP4PLUS, mrt.BGP4PLUS01, mrt.OSPFv2, mrt.TABLE_DUMP, mrt.TABLE_DUMPv2,
		mrt.BGP4MP, mrt.BGP4MP_ET, mrt.ISIS, mrt.ISIS_ET, mrt.OSPFv3, mrt.OSPFv3_ET:
		return true
	}
	return false
}

// typeName names a record kind for MRTStats.Skipped; gobgp has no String
// methods for these.
func typeName(t mrt.MRTType, sub uint16) string {
	if t == mrt.TABLE_DUMPv2 {
		names := [...]string{
			mrt.PEER_INDEX_TABLE:           "PEER_INDEX_TABLE",
			mrt.RIB_IPV4_UNICAST:           "RIB_IPV4_UNICAST",
			mrt.RIB_IPV4_MULTICAST:         "RIB_IPV4_MULTICAST",
			mrt.RIB_IPV6_UNICAST:           "RIB_IPV6_UNICAST",
			mrt.RIB_IPV6_MULTICAST:         "RIB_IPV6_MULTICAST",
			mrt.RIB_GENERIC:                "RIB_GENERIC",
			mrt.GEO_PEER_TABLE:             "GEO_PEER_TABLE",
			mrt.RIB_IPV4_UNICAST_ADDPATH:   "RIB_IPV4_UNICAST_ADDPATH",
			mrt.RIB_IPV4_MULTICAST_ADDPATH: "RIB_IPV4_MULTICAST_ADDPATH",
			mrt.RIB_IPV6_UNICAST_ADDPATH:   "RIB_IPV6_UNICAST_ADDPATH",
			mrt.RIB_IPV6_MULTICAST_ADDPATH: "RIB_IPV6_MULTICAST_ADDPATH",
			mrt.RIB_GENERIC_ADDPATH:        "RIB_GENERIC_ADDPATH",
		}
		if int(sub) < len(names) && names[sub] != "" {
			return names[sub]
		}
		return fmt.Sprintf("TABLE_DUMP_V2 subtype %d", sub)
	}
	names := map[mrt.MRTType]string{mrt.TABLE_DUMP: "TABLE_DUMP", mrt.BGP4MP: "BGP4MP", mrt.BGP4MP_ET: "BGP4MP_ET"}
	if n, ok := names[t]; ok {
		return fmt.Sprintf("%s subtype %d", n, sub)
	}
	return fmt.Sprintf("type %d subtype %d", t, sub)
}
