package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Announce adds routes to those this speaker announces to the peer, or
// replaces the routes of the same prefixes. They are sent while the session
// is Established (those of families the session negotiated), and again on
// every new session. Nothing is changed when a route is invalid.
func (s *Session) Announce(routes []Route) error {
	rs, err := s.checkRoutes(routes)
	if err != nil {
		return err
	}
	s.mu.Lock()
	for _, r := range rs {
		if old, ok := s.desired[r.Prefix]; !ok || !sameRoute(old, r) {
			s.desired[r.Prefix] = r
			s.dirty[r.Prefix] = struct{}{}
		}
	}
	s.mu.Unlock()
	s.poke()
	return nil
}

// Withdraw removes prefixes from those this speaker announces; the peer is
// sent withdrawals for those it has.
func (s *Session) Withdraw(prefixes []netip.Prefix) {
	s.mu.Lock()
	for _, p := range prefixes {
		p = p.Masked()
		if _, ok := s.desired[p]; ok {
			delete(s.desired, p)
			s.dirty[p] = struct{}{}
		}
	}
	s.mu.Unlock()
	s.poke()
}

// SetAnnounced makes routes the whole set this speaker announces: the peer
// is sent what differs from what it has. Nothing is changed when a route is
// invalid or a prefix repeated.
func (s *Session) SetAnnounced(routes []Route) error {
	rs, err := s.checkRoutes(routes)
	if err != nil {
		return err
	}
	want := make(map[netip.Prefix]Route, len(rs))
	for _, r := range rs {
		if _, dup := want[r.Prefix]; dup {
			return fmt.Errorf("bgp: peer %v: announce %v: listed twice", s.opt.PeerAddr, r.Prefix)
		}
		want[r.Prefix] = r
	}
	s.mu.Lock()
	for p, old := range s.desired {
		if r, ok := want[p]; !ok || !sameRoute(old, r) {
			s.dirty[p] = struct{}{}
		}
	}
	for p := range want {
		if _, ok := s.desired[p]; !ok {
			s.dirty[p] = struct{}{}
		}
	}
	s.desired = want
	s.mu.Unlock()
	s.poke()
	return nil
}

func (s *Session) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// checkRoutes returns copies of routes, prefixes masked and communities
// cloned, or an error naming the first that cannot be announced.
func (s *Session) checkRoutes(routes []Route) ([]Route, error) {
	out := make([]Route, len(routes))
	for i, r := range routes {
		nh := r.NextHop.Unmap()
		var err error
		switch {
		case !r.Prefix.IsValid():
			err = errors.New("invalid prefix")
		case r.Prefix.Addr().Is4In6():
			err = errors.New("IPv4-mapped IPv6 prefix")
		case !nh.IsValid() || nh.IsUnspecified():
			err = errors.New("no next hop")
		case nh.Is4() != r.Prefix.Addr().Is4():
			err = fmt.Errorf("next hop %v is of the other family", nh)
		}
		if err != nil {
			return nil, fmt.Errorf("bgp: peer %v: announce %v: %w", s.opt.PeerAddr, r.Prefix, err)
		}
		out[i] = Route{Prefix: r.Prefix.Masked(), NextHop: nh, LocalPref: r.LocalPref, Communities: slices.Clone(r.Communities)}
	}
	return out, nil
}

func sameRoute(a, b Route) bool {
	return a.Prefix == b.Prefix && a.NextHop == b.NextHop && a.LocalPref == b.LocalPref && slices.Equal(a.Communities, b.Communities)
}

// sendChanges sends the peer what differs between the announced set and
// what it has: for the dirty prefixes, or, when all, for every prefix (a
// new session).
func (r *runner) sendChanges(all bool) {
	s := r.s
	fams := r.cur.peer.families
	var withdraw []netip.Prefix
	announce := map[attrKey][]netip.Prefix{}
	add := func(p netip.Prefix, rt Route, ok bool) {
		if !fams.has(familyOf(p.Addr())) {
			return
		}
		old, had := r.sent[p]
		switch {
		case ok && (!had || !sameRoute(old, rt)):
			k := keyOf(rt)
			announce[k] = append(announce[k], p)
			r.sent[p] = rt
		case !ok && had:
			withdraw = append(withdraw, p)
			delete(r.sent, p)
		}
	}
	s.mu.Lock()
	if all {
		for p, rt := range s.desired {
			add(p, rt, true)
		}
	} else {
		for p := range s.dirty {
			rt, ok := s.desired[p]
			add(p, rt, ok)
		}
	}
	clear(s.dirty)
	s.mu.Unlock()

	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		ps := slices.DeleteFunc(slices.Clone(withdraw), func(p netip.Prefix) bool { return familyOf(p.Addr()) != f })
		if len(ps) == 0 {
			continue
		}
		slices.SortFunc(ps, comparePrefix)
		msgs, err := r.enc.withdrawals(f, ps)
		if err != nil {
			s.opt.Log.Error("bgp: cannot encode withdrawals", "err", err)
			continue
		}
		r.cur.send(msgs...)
		r.countOut(len(msgs))
	}
	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		r.sendAnnouncements(f, announce)
	}
	s.mu.Lock()
	s.stats.IPv4.Announced, s.stats.IPv6.Announced = 0, 0
	for p := range r.sent {
		s.stats.family(familyOf(p.Addr())).Announced++
	}
	s.mu.Unlock()
}

// sendAnnouncements sends the routes of byKey that are of family f.
func (r *runner) sendAnnouncements(f Family, byKey map[attrKey][]netip.Prefix) {
	for _, k := range slices.SortedFunc(maps.Keys(byKey), compareKey) {
		if familyOf(k.nextHop) != f {
			continue
		}
		ps := byKey[k]
		slices.SortFunc(ps, comparePrefix)
		msgs, err := r.enc.announcements(f, k.route(), ps)
		if err != nil {
			r.s.opt.Log.Error("bgp: cannot encode announcements", "next_hop", k.nextHop.String(), "err", err)
			continue
		}
		r.cur.send(msgs...)
		r.countOut(len(msgs))
	}
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

func compareKey(a, b attrKey) int {
	return cmp.Or(a.nextHop.Compare(b.nextHop), cmp.Compare(a.localPref, b.localPref), cmp.Compare(a.communities, b.communities))
}
