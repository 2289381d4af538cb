package bgp

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

func TestNewSessionErrors(t *testing.T) {
	ok := Options{LocalAS: 64500, RouterID: netip.MustParseAddr("192.0.2.1"), PeerAS: 64501, PeerAddr: netip.MustParseAddr("192.0.2.2")}
	if _, err := NewSession(ok); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		mutate func(*Options)
		want   string
	}{
		{func(o *Options) { o.LocalAS = 0 }, "LocalAS"},
		{func(o *Options) { o.RouterID = netip.MustParseAddr("2001:db8::1") }, "RouterID 2001:db8::1"},
		{func(o *Options) { o.PeerAddr = netip.Addr{} }, "PeerAddr"},
		{func(o *Options) { o.HoldTime = 2 * time.Second }, "HoldTime 2s: must be at least 3s"},
		{func(o *Options) { o.HoldTime = 3500 * time.Millisecond }, "whole seconds"},
		{func(o *Options) { o.LocalAddr = netip.MustParseAddr("2001:db8::1") }, "LocalAddr 2001:db8::1"},
		{func(o *Options) { o.Password = strings.Repeat("x", 81) }, "Password: 81 bytes"},
		{func(o *Options) { o.Families = []Family{IPv4Unicast, 7} }, "Families: Family(7)"},
		{func(o *Options) { o.Families = []Family{IPv6Unicast, IPv6Unicast} }, "listed twice"},
		{func(o *Options) { o.RestartTime = 2 * time.Hour }, "RestartTime 2h0m0s"},
		{func(o *Options) { o.PeerPort = 70000 }, "PeerPort 70000"},
	} {
		o := ok
		c.mutate(&o)
		_, err := NewSession(o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v, want one naming %q", err, c.want)
		}
	}
}

// capsOf indexes the capabilities of an OPEN by code.
func capsOf(o *bgp.BGPOpen) map[bgp.BGPCapabilityCode][]bgp.ParameterCapabilityInterface {
	m := map[bgp.BGPCapabilityCode][]bgp.ParameterCapabilityInterface{}
	for _, p := range o.OptParams {
		for _, c := range p.(*bgp.OptionParameterCapability).Capability {
			m[c.Code()] = append(m[c.Code()], c)
		}
	}
	return m
}

// The session's OPEN: 4-octet AS (AS_TRANS in My AS), both families, route
// refresh, graceful restart; the hold time is the smaller offer; a peer
// offering IPv6 only gets IPv6 only.
func TestOpenNegotiation(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	opt := testOptions(p)
	opt.LocalAS = 4200000001
	opt.HoldTime = 60 * time.Second
	s, r := newTestSession(t, opt)

	caps := []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC), bgp.NewCapFourOctetASNumber(p.as), bgp.NewCapRouteRefresh()}
	open := p.handshake(30, caps)
	if open.MyAS != bgp.AS_TRANS || open.HoldTime != 60 || open.ID != opt.RouterID || open.Version != 4 {
		t.Errorf("OPEN: My AS %d, hold %d, id %v, version %d", open.MyAS, open.HoldTime, open.ID, open.Version)
	}
	oc := capsOf(open)
	if c := oc[bgp.BGP_CAP_FOUR_OCTET_AS_NUMBER]; len(c) != 1 || c[0].(*bgp.CapFourOctetASNumber).CapValue != 4200000001 {
		t.Errorf("4-octet AS capability %v", c)
	}
	var fams []bgp.Family
	for _, c := range oc[bgp.BGP_CAP_MULTIPROTOCOL] {
		fams = append(fams, c.(*bgp.CapMultiProtocol).CapValue)
	}
	if !slices.Equal(fams, []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC}) {
		t.Errorf("multiprotocol capabilities %v", fams)
	}
	if len(oc[bgp.BGP_CAP_ROUTE_REFRESH]) != 1 {
		t.Error("no route refresh capability")
	}
	gr := oc[bgp.BGP_CAP_GRACEFUL_RESTART]
	if len(gr) != 1 || gr[0].(*bgp.CapGracefulRestart).Time != 90 || len(gr[0].(*bgp.CapGracefulRestart).Tuples) != 0 ||
		gr[0].(*bgp.CapGracefulRestart).Flags&0x8 == 0 {
		t.Errorf("graceful restart capability %+v, want 90s, restarted, no families", gr)
	}

	ev := r.waitState(t, Established)
	if ev.PeerGR.Advertised {
		t.Errorf("peer GR %+v, the peer did not advertise it", ev.PeerGR)
	}
	st := s.Stats()
	if st.HoldTime != 30*time.Second || !slices.Equal(st.Families, []Family{IPv6Unicast}) || st.State != Established || st.EstablishedSince.IsZero() {
		t.Errorf("stats %+v, want hold 30s, IPv6 only", st)
	}
	if err := s.Refresh(IPv4Unicast); err == nil {
		t.Error("Refresh of a family not negotiated succeeded")
	}
	// Only End-of-RIB for IPv6; IPv4 NLRI from the peer are ignored.
	p.recvUpdates(IPv6Unicast)
	p.sendUpdate(v4Update(t, asPath(seq(64501)), "192.0.2.0/24"))
	p.send(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), asPath(seq(64501)), mpReach(t, []netip.Addr{nh6}, "2001:db8:100::/48"),
	}, nil))
	if c := r.takeChanges(t, 1); c[0].Prefix != netip.MustParsePrefix("2001:db8:100::/48") {
		t.Errorf("change %+v, want the IPv6 prefix only", c[0])
	}
}

// OPENs that must be refused, with the NOTIFICATION RFC 4271 6.2 names.
func TestOpenErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		open func(p *testPeer) *bgp.BGPMessage
		code [2]uint8
	}{
		{"bad peer AS", func(p *testPeer) *bgp.BGPMessage {
			p.as = 64999
			return p.open(90, p.caps())
		}, [2]uint8{2, 2}},
		{"hold time 2", func(p *testPeer) *bgp.BGPMessage { return p.open(2, p.caps()) }, [2]uint8{2, 6}},
		{"BGP identifier 0", func(p *testPeer) *bgp.BGPMessage {
			p.id = netip.IPv4Unspecified()
			return p.open(90, p.caps())
		}, [2]uint8{2, 3}},
		{"no family in common", func(p *testPeer) *bgp.BGPMessage {
			return p.open(90, []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_IPv4_VPN), bgp.NewCapFourOctetASNumber(p.as)})
		}, [2]uint8{2, 7}},
		{"version 3", func(p *testPeer) *bgp.BGPMessage {
			m := p.open(90, p.caps())
			m.Body.(*bgp.BGPOpen).Version = 3
			return m
		}, [2]uint8{2, 1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPeer(t, 64501, "192.0.2.2")
			opt := testOptions(p)
			opt.Families = []Family{IPv4Unicast, IPv6Unicast}
			_, r := newTestSession(t, opt)
			p.accept()
			p.recvType(msgOpen)
			p.send(c.open(p))
			p.expectNotification(c.code[0], c.code[1])
			ev := r.waitState(t, Active)
			if ev.Reason != ReasonNotificationSent || ev.Notification.Code != c.code[0] || ev.Notification.Subcode != c.code[1] {
				t.Errorf("event %+v", ev)
			}
		})
	}
}

// UPDATEs over the wire become Changes, End-of-RIB is reported, counters
// count.
func TestUpdatesToChanges(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	s, r := newTestSession(t, testOptions(p))
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	p.recvUpdates(IPv4Unicast, IPv6Unicast)

	p.sendUpdate(v4Update(t, asPath(seq(64501, 64502), set(1, 2, 3)), "192.0.2.0/24", "203.0.113.0/24"))
	p.send(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(0), asPath(seq(64501)), mpReach(t, []netip.Addr{nh6, ll6}, "2001:db8:100::/48"),
	}, nil))
	p.send(bgp.NewEndOfRib(bgp.RF_IPv4_UC))
	p.send(bgp.NewEndOfRib(bgp.RF_IPv6_UC))
	p.send(bgp.NewBGPUpdateMessage(pathNLRI(t, "203.0.113.0/24"), nil, nil))
	p.send(bgp.NewBGPUpdateMessage(nil, []bgp.PathAttributeInterface{mpUnreach(t, bgp.RF_IPv6_UC, "2001:db8:100::/48")}, nil))
	checkChanges(t, r.takeChanges(t, 5), []Change{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), PathLen: 3, NextHop: nh4, Communities: []uint32{64500<<16 | 1}},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), PathLen: 3, NextHop: nh4, Communities: []uint32{64500<<16 | 1}},
		{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), PathLen: 1, NextHop: nh6},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Withdraw: true},
		{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), Withdraw: true},
	})
	r.waitEOR(t, IPv4Unicast)
	r.waitEOR(t, IPv6Unicast)
	st := s.Stats()
	if st.UpdatesIn != 6 || st.IPv4.Received != 2 || st.IPv4.Withdrawn != 1 || st.IPv6.Received != 1 || st.IPv6.Withdrawn != 1 {
		t.Errorf("stats %+v", st)
	}
	if st.UpdatesOut != 2 { // the two End-of-RIB markers
		t.Errorf("%d UPDATEs out, want 2", st.UpdatesOut)
	}
}

// A peer that goes silent: the hold timer expires, the session sends the
// NOTIFICATION and reports a loss a graceful-restart helper rides out.
// Before that, the session's keepalives come every hold time / 3.
func TestHoldTimerExpiry(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	s, r := newTestSession(t, testOptions(p))
	p.handshake(3, p.caps())
	r.waitState(t, Established)
	p.recvUpdates(IPv4Unicast, IPv6Unicast)
	start := time.Now()
	keepalives := 0
	for {
		m := p.recv()
		if m.Header.Type == msgKeepalive {
			keepalives++
			continue
		}
		if n, ok := m.Body.(*bgp.BGPNotification); !ok || n.ErrorCode != bgp.BGP_ERROR_HOLD_TIMER_EXPIRED {
			t.Fatalf("got %+v, want Hold Timer Expired", m.Body)
		}
		break
	}
	if el := time.Since(start); el < 2500*time.Millisecond || el > 5*time.Second {
		t.Errorf("hold timer expired after %v, want about 3s", el)
	}
	if keepalives < 2 {
		t.Errorf("%d keepalives in a 3s hold time, want 2 or 3", keepalives)
	}
	ev := r.waitState(t, Active)
	if ev.From != Established || ev.Reason != ReasonHoldTimerExpired || !ev.KeepStale || ev.PeerGR.Time != 120*time.Second ||
		!slices.Equal(ev.PeerGR.Preserved, []Family{IPv4Unicast}) {
		t.Errorf("event %+v, want hold timer expired, keep stale for 120s", ev)
	}
	if st := s.Stats(); st.Flaps != 1 || !st.EstablishedSince.IsZero() {
		t.Errorf("stats %+v", st)
	}
}

// How the session's end qualifies for graceful restart: not after a
// NOTIFICATION, after a TCP failure.
func TestLossAndGracefulRestart(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	_, r := newTestSession(t, testOptions(p))
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	p.send(bgp.NewBGPNotificationMessage(bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_ADMINISTRATIVE_RESET, nil))
	ev := r.waitState(t, Active)
	if ev.Reason != ReasonNotificationReceived || ev.KeepStale || ev.Notification.Code != bgp.BGP_ERROR_CEASE {
		t.Errorf("after a NOTIFICATION: %+v", ev)
	}

	// The session reconnects by itself; this time the TCP connection dies.
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	p.c.Close()
	ev = r.waitState(t, Active)
	if ev.Reason != ReasonTCPError || !ev.KeepStale {
		t.Errorf("after a TCP failure: %+v", ev)
	}

	// Without the capability, nothing is kept.
	p.handshake(90, p.caps()[:4])
	r.waitState(t, Established)
	p.c.Close()
	if ev = r.waitState(t, Active); ev.KeepStale || ev.PeerGR.Advertised {
		t.Errorf("without graceful restart: %+v", ev)
	}
}

// Malformed UPDATEs on a live session: treat-as-withdraw keeps the session
// and withdraws; a session-reset error sends the right NOTIFICATION and the
// session comes back.
func TestMalformedUpdateOnSession(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	s, r := newTestSession(t, testOptions(p))
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	p.recvUpdates(IPv4Unicast, IPv6Unicast)

	p.sendUpdate(rawUpdate(nil, [][]byte{origin, attr(0x40, attrASPath, 2, 3, 0, 0, 0xfb, 0xf5), nextHopOK}, nlri24))
	if c := r.takeChanges(t, 1)[0]; !c.Withdraw || c.Prefix != netip.MustParsePrefix("192.0.2.0/24") {
		t.Errorf("change %+v, want the prefix withdrawn", c)
	}
	if s.State() != Established || s.Stats().TreatedAsWithdraw != 1 {
		t.Errorf("state %v, stats %+v", s.State(), s.Stats())
	}

	p.sendUpdate(rawUpdate(nil, wellFormedAttrs(), []byte{33, 192, 0, 2, 0, 0}))
	p.expectNotification(bgp.BGP_ERROR_UPDATE_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_INVALID_NETWORK_FIELD)
	ev := r.waitState(t, Active)
	if ev.Reason != ReasonNotificationSent || ev.KeepStale {
		t.Errorf("event %+v", ev)
	}
	r.noChanges(t)
	p.handshake(90, p.caps())
	r.waitState(t, Established)

	// A bad header: Bad Message Length with the length as data.
	p.sendRaw(append(slices.Repeat([]byte{0xff}, 16), 0, 18, msgKeepalive))
	n := p.recvNotification()
	if n.ErrorCode != bgp.BGP_ERROR_MESSAGE_HEADER_ERROR || n.ErrorSubcode != bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH || !slices.Equal(n.Data, []byte{0, 18}) {
		t.Errorf("NOTIFICATION %+v", n)
	}
	r.waitState(t, Active)
	// An OPEN while Established: FSM error (RFC 6608).
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	p.send(p.open(90, p.caps()))
	p.expectNotification(bgp.BGP_ERROR_FSM_ERROR, bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE)
}

// updateRoutes flattens announcements of UPDATEs to "prefix via next hop",
// and withdrawals to "-prefix".
func updateRoutes(us []*bgp.BGPUpdate) []string {
	var out []string
	for _, u := range us {
		var nh string
		for _, a := range u.PathAttributes {
			switch a := a.(type) {
			case *bgp.PathAttributeNextHop:
				nh = a.Value.String()
			case *bgp.PathAttributeMpReachNLRI:
				for _, n := range a.Value {
					out = append(out, n.NLRI.String()+" via "+a.Nexthop.String())
				}
			case *bgp.PathAttributeMpUnreachNLRI:
				for _, n := range a.Value {
					out = append(out, "-"+n.NLRI.String())
				}
			}
		}
		for _, n := range u.WithdrawnRoutes {
			out = append(out, "-"+n.NLRI.String())
		}
		for _, n := range u.NLRI {
			out = append(out, n.NLRI.String()+" via "+nh)
		}
	}
	slices.Sort(out)
	return out
}

// Announcements reach the peer with eBGP's attributes, changes go as
// differences, and everything is sent again on a new session.
func TestAnnounce(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	opt := testOptions(p)
	opt.LocalAS = 4200000001
	s, r := newTestSession(t, opt)
	routes := []Route{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: nh4, Communities: []uint32{1}},
		{Prefix: netip.MustParsePrefix("198.18.0.1/15"), NextHop: nh4},
		{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), NextHop: nh6},
	}
	if err := s.Announce(routes); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce([]Route{{Prefix: netip.MustParsePrefix("2001:db8::/32"), NextHop: nh4}}); err == nil {
		t.Error("an IPv6 prefix with an IPv4 next hop was accepted")
	}
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	us := p.recvUpdates(IPv4Unicast, IPv6Unicast)
	want := []string{"192.0.2.0/24 via 198.51.100.2", "198.18.0.0/15 via 198.51.100.2", "2001:db8:100::/48 via 2001:db8:1::2"}
	if got := updateRoutes(us); !slices.Equal(got, want) {
		t.Errorf("announced %v, want %v", got, want)
	}
	for _, u := range us {
		for _, a := range u.PathAttributes {
			switch a := a.(type) {
			case *bgp.PathAttributeAsPath:
				if len(a.Value) != 1 || !slices.Equal(a.Value[0].GetAS(), []uint32{4200000001}) {
					t.Errorf("AS_PATH %v, want 4200000001", a)
				}
			case *bgp.PathAttributeLocalPref:
				t.Error("LOCAL_PREF sent to an external peer")
			}
		}
	}

	// Changes: one withdrawn, one new next hop.
	s.Withdraw([]netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")})
	s.Announce([]Route{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: netip.MustParseAddr("198.51.100.3")}})
	got := updateRoutes([]*bgp.BGPUpdate{p.recvType(msgUpdate).Body.(*bgp.BGPUpdate), p.recvType(msgUpdate).Body.(*bgp.BGPUpdate)})
	if want := []string{"-198.18.0.0/15", "192.0.2.0/24 via 198.51.100.3"}; !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	if st := s.Stats(); st.IPv4.Announced != 1 || st.IPv6.Announced != 1 {
		t.Errorf("stats %+v, want 1 and 1 announced", st)
	}

	// A new session gets everything again.
	p.c.Close()
	r.waitState(t, Active)
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	want = []string{"192.0.2.0/24 via 198.51.100.3", "2001:db8:100::/48 via 2001:db8:1::2"}
	if got := updateRoutes(p.recvUpdates(IPv4Unicast, IPv6Unicast)); !slices.Equal(got, want) {
		t.Errorf("after reconnecting, announced %v, want %v", got, want)
	}

	// SetAnnounced sends the difference only.
	if err := s.SetAnnounced([]Route{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: netip.MustParseAddr("198.51.100.3")},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), NextHop: nh4},
	}); err != nil {
		t.Fatal(err)
	}
	got = updateRoutes([]*bgp.BGPUpdate{p.recvType(msgUpdate).Body.(*bgp.BGPUpdate), p.recvType(msgUpdate).Body.(*bgp.BGPUpdate)})
	if want := []string{"-2001:db8:100::/48", "203.0.113.0/24 via 198.51.100.2"}; !slices.Equal(got, want) {
		t.Errorf("SetAnnounced sent %v, want %v", got, want)
	}
}

// To an internal peer: empty AS_PATH, LOCAL_PREF, communities; to a
// 2-octet peer: AS_TRANS and AS4_PATH.
func TestAnnounceAttributes(t *testing.T) {
	t.Run("iBGP", func(t *testing.T) {
		p := newTestPeer(t, 64500, "192.0.2.2")
		s, r := newTestSession(t, testOptions(p))
		s.Announce([]Route{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: nh4, LocalPref: 300, Communities: []uint32{64500<<16 | 7}}})
		p.handshake(90, p.caps())
		r.waitState(t, Established)
		us := p.recvUpdates(IPv4Unicast, IPv6Unicast)
		if len(us) != 1 {
			t.Fatalf("%d UPDATEs", len(us))
		}
		var lp uint32
		var comms []uint32
		for _, a := range us[0].PathAttributes {
			switch a := a.(type) {
			case *bgp.PathAttributeAsPath:
				if len(a.Value) != 0 {
					t.Errorf("AS_PATH %v to an internal peer", a)
				}
			case *bgp.PathAttributeLocalPref:
				lp = a.Value
			case *bgp.PathAttributeCommunities:
				comms = a.Value
			}
		}
		if lp != 300 || !slices.Equal(comms, []uint32{64500<<16 | 7}) {
			t.Errorf("LOCAL_PREF %d, communities %v", lp, comms)
		}
	})
	t.Run("2-octet peer", func(t *testing.T) {
		p := newTestPeer(t, 64501, "192.0.2.2")
		opt := testOptions(p)
		opt.LocalAS = 4200000001
		s, r := newTestSession(t, opt)
		s.Announce([]Route{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: nh4}})
		p.handshake(90, []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC)})
		r.waitState(t, Established)
		us := p.recvUpdates(IPv4Unicast)
		var path, path4 []uint32
		for _, a := range us[0].PathAttributes {
			switch a := a.(type) {
			case *bgp.PathAttributeAsPath:
				path = a.Value[0].GetAS()
			case *bgp.PathAttributeAs4Path:
				path4 = a.Value[0].AS
			}
		}
		if !slices.Equal(path, []uint32{bgp.AS_TRANS}) || !slices.Equal(path4, []uint32{4200000001}) {
			t.Errorf("AS_PATH %v, AS4_PATH %v", path, path4)
		}
	})
}

// Many routes: UPDATEs stay within 4096 bytes and all arrive.
func TestAnnounceMany(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	s, r := newTestSession(t, testOptions(p))
	var routes []Route
	for i := range 3000 {
		routes = append(routes, Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18 + byte(i>>8), byte(i), 0}), 24), NextHop: nh4})
		routes = append(routes, Route{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48), NextHop: nh6})
	}
	if err := s.Announce(routes); err != nil {
		t.Fatal(err)
	}
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	if got := len(updateRoutes(p.recvUpdates(IPv4Unicast, IPv6Unicast))); got != len(routes) {
		t.Errorf("%d prefixes announced, want %d", got, len(routes))
	}
}

// ROUTE-REFRESH both ways.
func TestRouteRefresh(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	s, r := newTestSession(t, testOptions(p))
	if err := s.Refresh(IPv4Unicast); err == nil {
		t.Error("Refresh before Established succeeded")
	}
	s.Announce([]Route{{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), NextHop: nh6}})
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	p.recvUpdates(IPv4Unicast, IPv6Unicast)
	if err := s.Refresh(IPv6Unicast); err != nil {
		t.Fatal(err)
	}
	rr := p.recvType(msgRouteRefresh).Body.(*bgp.BGPRouteRefresh)
	if rr.AFI != bgp.AFI_IP6 || rr.SAFI != bgp.SAFI_UNICAST {
		t.Errorf("ROUTE-REFRESH %+v", rr)
	}
	p.send(bgp.NewBGPRouteRefreshMessage(bgp.AFI_IP6, 0, bgp.SAFI_UNICAST))
	if got := updateRoutes([]*bgp.BGPUpdate{p.recvType(msgUpdate).Body.(*bgp.BGPUpdate)}); !slices.Equal(got, []string{"2001:db8:100::/48 via 2001:db8:1::2"}) {
		t.Errorf("after ROUTE-REFRESH: %v", got)
	}
}

// Ending Run's context sends Cease / Administrative Shutdown.
func TestCloseSendsCease(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	r := newRecorder()
	opt := testOptions(p)
	r.hook(&opt)
	s, err := NewSession(opt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	p.handshake(90, p.caps())
	r.waitState(t, Established)
	if err := s.Run(ctx); err == nil {
		t.Error("a second Run succeeded")
	}
	cancel()
	p.expectNotification(bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN)
	p.c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ev := r.waitState(t, Idle)
	if ev.Reason != ReasonClosed || ev.KeepStale || s.State() != Idle {
		t.Errorf("event %+v, state %v", ev, s.State())
	}
}

// dialFrom connects from src to the listener.
func dialFrom(t testing.TB, src string, l *Listener, password string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	if password != "" {
		d.Control = md5Control(map[netip.Addr]string{l.Addr().Addr(): password})
	}
	return d.Dial("tcp", l.Addr().String())
}

// A passive session takes its peer's connection from the Listener; a
// connection from an address no session has is closed.
func TestListenerPassive(t *testing.T) {
	p := newTestPeer(t, 64501, "192.0.2.2")
	opt := testOptions(p)
	opt.Passive = true
	s, r := newTestSession(t, opt)
	l, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), []*Session{s})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	c, err := dialFrom(t, "127.0.0.2", l, "")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(testTimeout))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("unknown peer: read %d bytes, want the connection closed", n)
	}
	c.Close()

	if p.c, err = dialFrom(t, "127.0.0.1", l, ""); err != nil {
		t.Fatal(err)
	}
	p.exchangeOpens(90, p.caps())
	r.waitState(t, Established)
}

// RFC 4271 6.8: both sides connect; the connection the speaker with the
// higher BGP Identifier made survives, the other gets Cease / Connection
// Collision Resolution.
func TestCollision(t *testing.T) {
	for _, c := range []struct {
		name         string
		peerID       string
		keepIncoming bool
	}{
		{"peer's identifier higher", "192.0.2.9", true},
		{"peer's identifier lower", "192.0.2.0", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newTestPeer(t, 64501, c.peerID)
			s, r := newTestSession(t, testOptions(p))
			l, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), []*Session{s})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()

			// The session's own connection reaches OpenSent, then the peer
			// connects too and sends its OPEN there.
			p.accept()
			outgoing := p.c
			p.recvType(msgOpen)
			in, err := dialFrom(t, "127.0.0.1", l, "")
			if err != nil {
				t.Fatal(err)
			}
			incoming := &testPeer{t: t, c: in, as: p.as, id: p.id, opt: &bgp.MarshallingOption{}}
			defer in.Close()
			incoming.recvType(msgOpen)
			incoming.send(incoming.open(90, p.caps()))

			winner, loser := incoming, &testPeer{t: t, c: outgoing, as: p.as, id: p.id, opt: &bgp.MarshallingOption{}}
			if !c.keepIncoming {
				winner, loser = loser, winner
			}
			loser.expectNotification(bgp.BGP_ERROR_CEASE, bgp.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION)
			if !c.keepIncoming {
				winner.send(winner.open(90, p.caps()))
			}
			winner.recvType(msgKeepalive)
			winner.send(bgp.NewBGPKeepAliveMessage())
			r.waitState(t, Established)

			// A connection while Established from a graceful-restart peer
			// replaces the session (RFC 4724 4.2).
			again, err := dialFrom(t, "127.0.0.1", l, "")
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			ev := r.waitState(t, OpenSent)
			if ev.From != Established || ev.Reason != ReasonPeerReconnected || !ev.KeepStale {
				t.Errorf("event %+v, want a peer restart", ev)
			}
		})
	}
}

// TCP MD5: with the password on both ends the session comes up (listener
// and dialer both install keys); without it, the listener's kernel drops
// the connection attempt.
func TestMD5(t *testing.T) {
	const password = "s3cret"
	p := newTestPeer(t, 64501, "192.0.2.2")
	opt := testOptions(p)
	opt.Passive = true
	opt.Password = password
	s, r := newTestSession(t, opt)
	l, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), []*Session{s})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if c, err := dialFrom(t, "127.0.0.1", l, ""); err == nil {
		c.Close()
		t.Fatal("connected without the password")
	}
	if p.c, err = dialFrom(t, "127.0.0.1", l, password); err != nil {
		t.Fatal(err)
	}
	p.exchangeOpens(90, p.caps())
	r.waitState(t, Established)

	// The active side: the session dials a listener that wants the key.
	lc := net.ListenConfig{Control: md5Control(map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): password})}
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p2 := &testPeer{t: t, ln: ln.(*net.TCPListener), as: 64501, id: netip.MustParseAddr("192.0.2.3"), opt: &bgp.MarshallingOption{}}
	t.Cleanup(func() {
		ln.Close()
		if p2.c != nil {
			p2.c.Close()
		}
	})
	opt2 := testOptions(p2)
	opt2.Password = password
	_, r2 := newTestSession(t, opt2)
	p2.handshake(90, p2.caps())
	r2.waitState(t, Established)
}
