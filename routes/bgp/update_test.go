package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/pnap-project/pnap/routes/bgp/bgptest"
)

var (
	localAddr = netip.MustParseAddr("198.51.100.1")
	nh4       = netip.MustParseAddr("198.51.100.2")
	nh6       = netip.MustParseAddr("2001:db8:1::2")
	ll6       = netip.MustParseAddr("fe80::2")
)

// body serializes m with GoBGP and returns the UPDATE body.
func body(t testing.TB, m *bgp.BGPMessage, opts ...*bgp.MarshallingOption) []byte {
	t.Helper()
	b, err := m.Serialize(opts...)
	if err != nil {
		t.Fatal(err)
	}
	return b[headerLen:]
}

func pathNLRI(t testing.TB, prefixes ...string) []bgp.PathNLRI {
	t.Helper()
	var out []bgp.PathNLRI
	for _, s := range prefixes {
		n, err := bgp.NewIPAddrPrefix(netip.MustParsePrefix(s))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bgp.PathNLRI{NLRI: n})
	}
	return out
}

func asPath(segs ...bgp.AsPathParamInterface) *bgp.PathAttributeAsPath {
	return bgp.NewPathAttributeAsPath(segs)
}

func seq(as ...uint32) bgp.AsPathParamInterface {
	return bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, as)
}

func set(as ...uint32) bgp.AsPathParamInterface {
	return bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SET, as)
}

func nextHop(t testing.TB, a netip.Addr) *bgp.PathAttributeNextHop {
	t.Helper()
	nh, err := bgp.NewPathAttributeNextHop(a)
	if err != nil {
		t.Fatal(err)
	}
	return nh
}

func mpReach(t testing.TB, hops []netip.Addr, prefixes ...string) *bgp.PathAttributeMpReachNLRI {
	t.Helper()
	f := bgp.RF_IPv6_UC
	if netip.MustParsePrefix(prefixes[0]).Addr().Is4() {
		f = bgp.RF_IPv4_UC
	}
	a, err := bgp.NewPathAttributeMpReachNLRI(f, pathNLRI(t, prefixes...), hops...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mpUnreach(t testing.TB, f bgp.Family, prefixes ...string) *bgp.PathAttributeMpUnreachNLRI {
	t.Helper()
	a, err := bgp.NewPathAttributeMpUnreachNLRI(f, pathNLRI(t, prefixes...))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// v4Update is a well-formed eBGP UPDATE announcing prefixes.
func v4Update(t testing.TB, path *bgp.PathAttributeAsPath, prefixes ...string) []byte {
	return body(t, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), path, nextHop(t, nh4), bgp.NewPathAttributeCommunities([]uint32{64500<<16 | 1}),
	}, pathNLRI(t, prefixes...)))
}

func testDecoder() *decoder {
	return newDecoder(familySet(1<<IPv4Unicast|1<<IPv6Unicast), true, true, localAddr)
}

func TestDecodeAnnouncements(t *testing.T) {
	d := testDecoder()
	u, err := d.decode(v4Update(t, asPath(seq(64501, 64502), set(64503, 64504), seq(64505)), "192.0.2.0/24", "203.0.113.128/25", "0.0.0.0/0"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Change{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PathLen: 4, NextHop: nh4, Communities: []uint32{64500<<16 | 1}},
		{Prefix: netip.MustParsePrefix("203.0.113.128/25"), PathLen: 4, NextHop: nh4, Communities: []uint32{64500<<16 | 1}},
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), PathLen: 4, NextHop: nh4, Communities: []uint32{64500<<16 | 1}},
	}
	checkChanges(t, u.changes, want)
	if u.withdrawn != nil || u.discarded != nil || u.eor != 0 {
		t.Errorf("update %+v, want plain", u)
	}

	// MP_REACH_NLRI: IPv6 with global and link-local next hops.
	u, err = d.decode(body(t, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), asPath(seq(64501)), mpReach(t, []netip.Addr{nh6, ll6}, "2001:db8:100::/48", "2001:db8:200::/40"),
	}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	checkChanges(t, u.changes, []Change{
		{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), PathLen: 1, NextHop: nh6},
		{Prefix: netip.MustParsePrefix("2001:db8:200::/40"), PathLen: 1, NextHop: nh6},
	})
}

func TestDecodeWithdrawals(t *testing.T) {
	d := testDecoder()
	u, err := d.decode(body(t, bgp.NewBGPUpdateMessage(pathNLRI(t, "192.0.2.0/24", "198.18.0.0/15"), []bgp.PathAttributeInterface{
		mpUnreach(t, bgp.RF_IPv6_UC, "2001:db8:100::/48"),
	}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	checkChanges(t, u.changes, []Change{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Withdraw: true},
		{Prefix: netip.MustParsePrefix("198.18.0.0/15"), Withdraw: true},
		{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), Withdraw: true},
	})
}

func TestDecodeEndOfRIB(t *testing.T) {
	d := testDecoder()
	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		u, err := d.decode(body(t, bgp.NewEndOfRib(gobgpFamily(f))))
		if err != nil || u.eor != f || len(u.changes) != 0 {
			t.Errorf("End-of-RIB %v: eor %v, %d changes, err %v", f, u.eor, len(u.changes), err)
		}
	}
	// Not negotiated: no End-of-RIB.
	d4 := newDecoder(familySet(1<<IPv4Unicast), true, true, localAddr)
	if u, err := d4.decode(body(t, bgp.NewEndOfRib(bgp.RF_IPv6_UC))); err != nil || u.eor != 0 {
		t.Errorf("IPv6 End-of-RIB on an IPv4 session: eor %v, err %v", u.eor, err)
	}
}

// PathLen counts as best-path selection does: an AS_SET 1, confederation
// segments 0, and from a 2-octet peer AS_PATH's count (RFC 6793 4.2.3).
func TestDecodePathLen(t *testing.T) {
	confed := func(typ uint8, as ...uint32) bgp.AsPathParamInterface { return bgp.NewAs4PathParam(typ, as) }
	cases := []struct {
		name     string
		external bool
		path     *bgp.PathAttributeAsPath
		want     int
	}{
		{"empty (iBGP)", false, asPath(), 0},
		{"sequence", true, asPath(seq(1, 2, 3)), 3},
		{"set counts 1", true, asPath(seq(1, 2), set(3, 4, 5)), 3},
		{"confederation counts 0", false, asPath(confed(bgp.BGP_ASPATH_ATTR_TYPE_CONFED_SEQ, 10, 11), confed(bgp.BGP_ASPATH_ATTR_TYPE_CONFED_SET, 12), seq(1, 2)), 2},
		{"prepends", true, asPath(seq(7, 7, 7, 8)), 4},
	}
	for _, c := range cases {
		d := newDecoder(familySet(1<<IPv4Unicast), c.external, true, localAddr)
		u, err := d.decode(v4Update(t, c.path, "192.0.2.0/24"))
		if err != nil || len(u.changes) != 1 || u.changes[0].Withdraw {
			t.Fatalf("%s: %+v, %v", c.name, u, err)
		}
		if got := u.changes[0].PathLen; got != c.want {
			t.Errorf("%s: PathLen %d, want %d", c.name, got, c.want)
		}
	}
}

// A 2-octet peer sends AS_TRANS in AS_PATH and the real path in AS4_PATH.
func TestDecodeAS4Path(t *testing.T) {
	two := func(as ...uint16) bgp.AsPathParamInterface {
		return bgp.NewAsPathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, as)
	}
	as4 := func(segs ...*bgp.As4PathParam) *bgp.PathAttributeAs4Path { return bgp.NewPathAttributeAs4Path(segs) }
	old := &bgp.MarshallingOption{Use2ByteAS: true}
	cases := []struct {
		name string
		path *bgp.PathAttributeAsPath
		as4  *bgp.PathAttributeAs4Path
		want int
	}{
		// 64501 23456 23456 + AS4_PATH 4200000001 4200000002: merged
		// 64501 4200000001 4200000002.
		{"merged", asPath(two(64501, bgp.AS_TRANS, bgp.AS_TRANS)), as4(bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000001, 4200000002})), 3},
		// AS4_PATH longer than AS_PATH: ignored.
		{"AS4_PATH longer, ignored", asPath(two(bgp.AS_TRANS)), as4(bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000001, 4200000002})), 1},
		// An AS_SET in AS4_PATH counts 1 as in AS_PATH.
		{"with set", asPath(two(64501, bgp.AS_TRANS), bgp.NewAsPathParam(bgp.BGP_ASPATH_ATTR_TYPE_SET, []uint16{bgp.AS_TRANS, 64502})),
			as4(bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{4200000001}), bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SET, []uint32{4200000003, 64502})), 3},
	}
	for _, c := range cases {
		d := newDecoder(familySet(1<<IPv4Unicast), true, false, localAddr)
		b := body(t, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(0), c.path, nextHop(t, nh4), c.as4,
		}, pathNLRI(t, "192.0.2.0/24")), old)
		u, err := d.decode(b)
		if err != nil || len(u.changes) != 1 || u.changes[0].Withdraw || u.withdrawn != nil {
			t.Fatalf("%s: %+v, %v", c.name, u, err)
		}
		if got := u.changes[0].PathLen; got != c.want {
			t.Errorf("%s: PathLen %d, want %d", c.name, got, c.want)
		}
	}
}

func TestDecodeLocalPref(t *testing.T) {
	msg := body(t, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), asPath(), nextHop(t, nh4), bgp.NewPathAttributeLocalPref(250),
	}, pathNLRI(t, "192.0.2.0/24")))
	for _, external := range []bool{false, true} {
		d := newDecoder(familySet(1<<IPv4Unicast), external, true, localAddr)
		u, err := d.decode(msg)
		if err != nil || len(u.changes) != 1 {
			t.Fatalf("external %v: %+v, %v", external, u, err)
		}
		want := uint32(250)
		if external {
			want = 0 // RFC 4271 5.1.5
		}
		if got := u.changes[0].LocalPref; got != want {
			t.Errorf("external %v: LocalPref %d, want %d", external, got, want)
		}
	}
}

// Prefixes come out canonical even when the peer sets bits past the length.
func TestDecodeCanonical(t *testing.T) {
	b := rawUpdate(nil, wellFormedAttrs(), []byte{23, 192, 0, 3, 24, 203, 0, 113, 9, 0xff, 0xff})
	u, err := testDecoder().decode(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range u.changes {
		got = append(got, c.Prefix.String())
	}
	if want := []string{"192.0.2.0/23", "203.0.113.0/24", "255.128.0.0/9"}; !slices.Equal(got, want) {
		t.Errorf("prefixes %v, want %v", got, want)
	}
}

func checkChanges(t *testing.T, got, want []Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d changes %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Prefix != w.Prefix || g.Withdraw != w.Withdraw || g.PathLen != w.PathLen || g.NextHop != w.NextHop ||
			g.LocalPref != w.LocalPref || !slices.Equal(g.Communities, w.Communities) {
			t.Errorf("change %d: %+v, want %+v", i, g, w)
		}
	}
}

// The corpus's raw builders and pieces, by short names.
var (
	attr            = bgptest.Attr
	rawUpdate       = bgptest.RawUpdate
	wellFormedAttrs = bgptest.WellFormedAttrs
	origin          = bgptest.Origin
	nextHopOK       = bgptest.NextHopOK
	nlri24          = bgptest.NLRI24
)

// Outcomes of decoding a malformed UPDATE.
const (
	accepted        = bgptest.Accepted
	treatAsWithdraw = bgptest.TreatAsWithdraw
	discard         = bgptest.Discard
	reset           = bgptest.Reset
	ignored         = bgptest.Ignored
)

// TestMalformedCorpus: each malformed UPDATE is handled as RFC 7606 says,
// and treat-as-withdraw withdraws exactly the announced prefixes.
func TestMalformedCorpus(t *testing.T) {
	for _, c := range bgptest.Corpus {
		t.Run(c.Name, func(t *testing.T) {
			u, err := testDecoder().decode(c.Body)
			var ne *notifyError
			switch {
			case c.Want == reset:
				if !errors.As(err, &ne) {
					t.Fatalf("err %v, want a NOTIFICATION %d/%d", err, c.Code[0], c.Code[1])
				}
				if got := [2]uint8{ne.n.Code, ne.n.Subcode}; got != c.Code {
					t.Errorf("NOTIFICATION %d/%d (%v), want %d/%d", got[0], got[1], err, c.Code[0], c.Code[1])
				}
				return
			case err != nil:
				t.Fatalf("err %v, want %v", err, c.Want)
			}
			got := accepted
			switch {
			case u.withdrawn != nil:
				got = treatAsWithdraw
			case u.discarded != nil:
				got = discard
			case len(u.changes) == 0:
				got = ignored
			}
			if got != c.Want {
				t.Fatalf("outcome %v (changes %+v, withdrawn %v, discarded %v), want %v", got, u.changes, u.withdrawn, u.discarded, c.Want)
			}
			for _, ch := range u.changes {
				if ch.Withdraw != (got == treatAsWithdraw) {
					t.Errorf("change %+v in a %v update", ch, got)
				}
			}
			if got == treatAsWithdraw && len(u.changes) == 0 {
				t.Error("treat-as-withdraw withdrew nothing")
			}
		})
	}
}

// FuzzUpdate feeds arbitrary UPDATE bodies to the decoder, as an eBGP and
// an iBGP session from 2- and 4-octet peers see them: it must never panic,
// and what it delivers must be well-formed.
func FuzzUpdate(f *testing.F) {
	for _, c := range bgptest.Corpus {
		f.Add(c.Body)
	}
	f.Add(v4Update(f, asPath(seq(64501, 64502), set(1, 2)), "192.0.2.0/24", "198.18.0.0/15"))
	f.Add(body(f, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), asPath(seq(64501)), mpReach(f, []netip.Addr{nh6, ll6}, "2001:db8:100::/48"),
		bgp.NewPathAttributeLocalPref(200), bgp.NewPathAttributeMultiExitDisc(5),
	}, nil)))
	f.Add(body(f, bgp.NewBGPUpdateMessage(pathNLRI(f, "192.0.2.0/24"), []bgp.PathAttributeInterface{mpUnreach(f, bgp.RF_IPv6_UC, "2001:db8::/32")}, nil)))
	f.Add(body(f, bgp.NewEndOfRib(bgp.RF_IPv6_UC)))
	f.Add(body(f, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAsPathParam(2, []uint16{64501, bgp.AS_TRANS})}),
		nextHop(f, nh4), bgp.NewPathAttributeAs4Path([]*bgp.As4PathParam{bgp.NewAs4PathParam(2, []uint32{4200000001})}),
	}, pathNLRI(f, "203.0.113.0/24")), &bgp.MarshallingOption{Use2ByteAS: true}))
	decoders := []*decoder{
		newDecoder(familySet(1<<IPv4Unicast|1<<IPv6Unicast), true, true, localAddr),
		newDecoder(familySet(1<<IPv4Unicast|1<<IPv6Unicast), false, false, localAddr),
		newDecoder(familySet(1<<IPv6Unicast), true, false, localAddr),
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		for _, d := range decoders {
			u, err := d.decode(msg)
			if err != nil {
				var ne *notifyError
				if !errors.As(err, &ne) || ne.n.Code == 0 {
					t.Fatalf("error %v is no NOTIFICATION", err)
				}
				continue
			}
			if u.eor != 0 && (len(u.changes) > 0 || !d.families.has(u.eor)) {
				t.Fatalf("End-of-RIB %v with %d changes", u.eor, len(u.changes))
			}
			for _, c := range u.changes {
				fam := familyOf(c.Prefix.Addr())
				switch {
				case !c.Prefix.IsValid() || c.Prefix != c.Prefix.Masked() || c.Prefix.Addr().Is4In6():
					t.Fatalf("prefix %v not canonical", c.Prefix)
				case !d.families.has(fam):
					t.Fatalf("prefix %v of a family not negotiated", c.Prefix)
				case c.Withdraw && (c.NextHop.IsValid() || c.PathLen != 0 || c.Communities != nil || c.LocalPref != 0):
					t.Fatalf("withdrawal with attributes: %+v", c)
				case !c.Withdraw && (familyOf(c.NextHop) != fam || !c.NextHop.IsValid() || c.PathLen < 0):
					t.Fatalf("announcement %+v: bad next hop or path length", c)
				case !c.Withdraw && d.external && c.LocalPref != 0:
					t.Fatalf("LOCAL_PREF from an external peer: %+v", c)
				}
			}
		}
	})
}

// TestDecodeCost measures, in passing, what decoding costs per prefix, and
// holds that IPv4 and IPv6 prefixes cost no allocation of their own: a
// full feed is a million prefixes per session. (A figure, not a benchmark:
// the time is logged, the allocations are checked.)
func TestDecodeCost(t *testing.T) {
	full4 := func(n int) []byte {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>8), byte(i), 0}), 24).String()
		}
		return v4Update(t, asPath(seq(64501, 3356, 1299)), ps...)
	}
	full6 := func(n int) []byte {
		ps := make([]string, n)
		for i := range ps {
			ps[i] = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48).String()
		}
		return body(t, bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
			bgp.NewPathAttributeOrigin(0), asPath(seq(64501, 3356)), mpReach(t, []netip.Addr{nh6, ll6}, ps...),
		}, nil))
	}
	for _, c := range []struct {
		name       string
		few, many  []byte
		nFew, nMax int
	}{
		{"IPv4", full4(10), full4(900), 10, 900},
		{"IPv6", full6(10), full6(500), 10, 500},
	} {
		d := testDecoder()
		allocs := func(msg []byte) float64 {
			return testing.AllocsPerRun(200, func() {
				if _, err := d.decode(msg); err != nil {
					t.Fatal(err)
				}
			})
		}
		few, many := allocs(c.few), allocs(c.many)
		if many > few+1 {
			t.Errorf("%s: %.0f allocations for %d prefixes, %.0f for %d: prefixes allocate", c.name, many, c.nMax, few, c.nFew)
		}
		const rounds = 2000
		start := time.Now()
		for range rounds {
			d.decode(c.many)
		}
		el := time.Since(start)
		t.Logf("%s: %.1f ns per prefix (UPDATEs of %d), %.0f allocations per UPDATE", c.name,
			float64(el.Nanoseconds())/rounds/float64(c.nMax), c.nMax, many)
	}
}
