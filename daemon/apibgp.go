package daemon

import (
	"net/http"
	"time"

	"github.com/pnap-project/pnap/routes/bgp"
)

// BGPSession is one BGP session as GET /v1/bgp shows it.
type BGPSession struct {
	Name      string  `json:"name"` // the backbone's or the [[announce]]'s
	Role      string  `json:"role"` // "backbone" or "announce"
	Neighbor  string  `json:"neighbor"`
	PeerAS    uint32  `json:"peer_as"`
	State     string  `json:"state"`
	UptimeSec float64 `json:"uptime_seconds"`
	Flaps     uint64  `json:"flaps"`
	UpdatesIn uint64  `json:"updates_in"`
	// UpdatesOut counts UPDATEs sent: announcements and withdrawals.
	UpdatesOut uint64 `json:"updates_out"`
	LastError  string `json:"last_error,omitempty"`
	// Refused counts the routes the import rules turned away, by reason
	// (policy, next_hop, max_prefixes).
	Refused map[string]uint64 `json:"refused,omitempty"`
	// Stale is the routes kept through the peer's graceful restart and not
	// announced again yet.
	Stale int       `json:"stale"`
	IPv4  BGPFamily `json:"ipv4"`
	IPv6  BGPFamily `json:"ipv6"`
}

// BGPFamily is one family's prefixes of a session.
type BGPFamily struct {
	Received  uint64 `json:"received"`  // announced by the peer, every UPDATE counted
	Withdrawn uint64 `json:"withdrawn"` // withdrawn by the peer
	Accepted  uint64 `json:"accepted"`  // taken into the FIB
	Held      int    `json:"held"`      // in the FIB now
	Limited   bool   `json:"max_prefixes_reached"`
	Announced int    `json:"announced"` // the peer has from pnapd now
}

func (d *Daemon) bgpSessions(*http.Request) (any, error) {
	out := []BGPSession{}
	for _, bs := range d.bgp {
		out = append(out, bs.status())
	}
	return out, nil
}

func (bs *bgpSession) status() BGPSession {
	st := bs.s.Stats()
	j := BGPSession{
		Name: bs.name, Role: bs.role, Neighbor: bs.neighbor.String(), PeerAS: bs.peerAS,
		State: st.State.String(), Flaps: st.Flaps, UpdatesIn: st.UpdatesIn, UpdatesOut: st.UpdatesOut, LastError: st.LastError,
	}
	if !st.EstablishedSince.IsZero() {
		j.UptimeSec = time.Since(st.EstablishedSince).Seconds()
	}
	for i, fs := range []bgp.FamilyStats{st.IPv4, st.IPv6} {
		f := &j.IPv4
		if i == 1 {
			f = &j.IPv6
		}
		f.Received, f.Withdrawn, f.Announced = fs.Received, fs.Withdrawn, fs.Announced
	}
	if bs.feed != nil {
		fst := bs.feed.stats()
		j.Refused, j.Stale = fst.Refused, fst.Stale
		for i, f := range []*BGPFamily{&j.IPv4, &j.IPv6} {
			f.Accepted, f.Held, f.Limited = fst.Accepted[i], fst.Held[i], fst.Limited[i]
		}
	}
	return j
}
