package daemon

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/internal/setting"
)

// The BGP speaker's defaults, until the speaker owns them in its Options.
const (
	// defaultHoldTime is RFC 4271 §10's suggested hold time.
	defaultHoldTime = 90 * time.Second
	// defaultMaxLen4 and defaultMaxLen6 are the longest prefixes imported:
	// the longest that transits commonly accept from each other, so a
	// longer one is a leak or a traffic-engineering route of no use here.
	defaultMaxLen4 = 24
	defaultMaxLen6 = 48
	// defaultLocalPref is the LOCAL_PREF a router gives routes without
	// one (RFC 4271 §5.1.5 leaves it to policy; 100 is every vendor's).
	defaultLocalPref = 100
)

// importPolicy decides which routes a backbone's BGP session takes into
// the FIB.
type importPolicy struct {
	AllowDefault     bool // take 0.0.0.0/0 and ::/0
	AllowMartians    bool // take prefixes inside the martian ranges
	MaxLen4, MaxLen6 int  // refuse longer prefixes
}

// martians are the ranges no transit should send routes for: the entries
// of IANA's special-purpose address registries (RFC 6890 and its updates)
// that are not globally reachable, and multicast. Not a full bogon list:
// unallocated space is handed out month by month, and a list that falls
// behind refuses real routes; that is a prefix list's job on the router.
// Globally reachable entries stay out even beside martians (64:ff9b::/96,
// the NAT64 well-known prefix; AS112's; the global blocks inside
// 2001::/23, so not 2001::/23 itself), except the two /32s inside
// 192.0.0.0/24, which a length limit refuses anyway. pnap's own lab and
// examples use the benchmarking and documentation ranges, which are here:
// lab configurations set allow_martians = true.
var martians = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network" (RFC 791)
	netip.MustParsePrefix("10.0.0.0/8"),      // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),   // shared, carrier-grade NAT (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local (RFC 3927)
	netip.MustParsePrefix("172.16.0.0/12"),   // private (RFC 1918)
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation, TEST-NET-1 (RFC 5737)
	netip.MustParsePrefix("192.168.0.0/16"),  // private (RFC 1918)
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking (RFC 2544)
	netip.MustParsePrefix("198.51.100.0/24"), // documentation, TEST-NET-2 (RFC 5737)
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation, TEST-NET-3 (RFC 5737)
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast (RFC 5771)
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved (RFC 1112), 255.255.255.255 included

	netip.MustParsePrefix("::/128"),         // unspecified (RFC 4291)
	netip.MustParsePrefix("::1/128"),        // loopback (RFC 4291)
	netip.MustParsePrefix("::ffff:0:0/96"),  // IPv4-mapped (RFC 4291)
	netip.MustParsePrefix("64:ff9b:1::/48"), // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("100::/64"),       // discard-only (RFC 6666)
	netip.MustParsePrefix("2001:2::/48"),    // benchmarking (RFC 5180)
	netip.MustParsePrefix("2001:db8::/32"),  // documentation (RFC 3849)
	netip.MustParsePrefix("3fff::/20"),      // documentation (RFC 9637)
	netip.MustParsePrefix("5f00::/16"),      // SRv6 segment identifiers (RFC 9602)
	netip.MustParsePrefix("fc00::/7"),       // unique local (RFC 4193)
	netip.MustParsePrefix("fe80::/10"),      // link-local (RFC 4291)
	netip.MustParsePrefix("ff00::/8"),       // multicast (RFC 4291)
}

// accept reports whether p takes the route for pfx, and if not, why, in
// words for a log line or a counter's label. A default route is judged by
// AllowDefault alone: 0.0.0.0/0 is not "inside" 0.0.0.0/8.
func (p importPolicy) accept(pfx netip.Prefix) (ok bool, reason string) {
	if !pfx.IsValid() || pfx != pfx.Masked() || pfx.Addr().Zone() != "" {
		return false, "not a canonical prefix"
	}
	if pfx.Bits() == 0 {
		if !p.AllowDefault {
			return false, "default route"
		}
		return true, ""
	}
	if longest := p.maxLen(pfx); pfx.Bits() > longest {
		return false, fmt.Sprintf("longer than /%d", longest)
	}
	if !p.AllowMartians {
		for _, m := range martians {
			if pfx.Bits() >= m.Bits() && m.Contains(pfx.Addr()) {
				return false, "martian, inside " + m.String()
			}
		}
	}
	return true, ""
}

func (p importPolicy) maxLen(pfx netip.Prefix) int {
	if pfx.Addr().Is4() {
		return p.MaxLen4
	}
	return p.MaxLen6
}

// bgpPeerPlan is one session learning a backbone's routes: one neighbor of
// a [backbone.bgp], defaults applied.
type bgpPeerPlan struct {
	Backbone int // index in cfg.Backbones, which is the FIB's
	// Neighbor is the router's address; an IPv6 link-local one carries
	// the backbone's interface as its zone, ready to dial.
	Neighbor        netip.Addr
	PeerAS          uint32
	HoldTime        time.Duration
	Password        string // TCP MD5; "" for none
	Passive         bool
	MaxPrefixes     [2]int // IPv4, IPv6; 0 is no limit
	Teardown        bool   // past MaxPrefixes, close the session rather than refuse more
	GracefulRestart bool   // be an RFC 4724 helper
	Policy          importPolicy
	// OwnFamilyOnly: the backbone has a session per family, and this one
	// negotiates only its neighbor's family.
	OwnFamilyOnly bool
}

// announcePlan is one [[announce]] session, defaults applied.
type announcePlan struct {
	Name        string
	Neighbor    netip.Addr
	PeerAS      uint32 // local_as unless written: iBGP
	HoldTime    time.Duration
	Password    string
	Passive     bool
	LocalPref   uint32
	Communities []uint32 // RFC 1997, in the file's order
	AllSelected bool     // every selected prefix, not only the overrides
	NextHopSelf bool     // pnapd's address as next hop, not the gateway
}

// bgpPlan translates the BGP sessions of cfg into what the speaker runs:
// a bgpPeerPlan per backbone neighbor and an announcePlan per [[announce]],
// in file order, with the speaker's defaults where the file is silent. A
// value the speaker cannot take comes back as a *configs.Error at its line.
func bgpPlan(cfg *configs.Config) (peers []bgpPeerPlan, announces []announcePlan, err error) {
	for i, b := range cfg.Backbones {
		if b.BGP == nil {
			continue
		}
		table, name := fmt.Sprintf("backbone[%d].bgp", i), fmt.Sprintf("backbone %q: bgp", b.Name)
		peer, err := peerPlan(cfg, table, b.BGP)
		if err := located(cfg, table, name, err); err != nil {
			return nil, nil, err
		}
		peer.Backbone = i
		if err := oneNeighborPerFamily(cfg, table, name, b.BGP.Neighbors); err != nil {
			return nil, nil, err
		}
		for _, n := range b.BGP.Neighbors {
			peer.Neighbor = n
			if n.Is6() && n.IsLinkLocalUnicast() {
				peer.Neighbor = n.WithZone(b.Interface)
			}
			// With a session per family, each carries its own family only:
			// two sessions announcing one prefix would withdraw it for each
			// other.
			peer.OwnFamilyOnly = len(b.BGP.Neighbors) > 1
			peers = append(peers, peer)
		}
	}
	for i, a := range cfg.Announces {
		table := fmt.Sprintf("announce[%d]", i)
		ann, err := announceSession(cfg, table, a)
		if err := located(cfg, table, fmt.Sprintf("announce %q", a.Name), err); err != nil {
			return nil, nil, err
		}
		announces = append(announces, ann)
	}
	return peers, announces, nil
}

// oneNeighborPerFamily refuses two neighbors of one family on a backbone:
// the FIB holds one route per backbone and prefix, so two routers of the
// same family could not both be its source. (Several routers of a transit
// are several backbones, or one router holding both sessions.)
func oneNeighborPerFamily(cfg *configs.Config, table, name string, ns []netip.Addr) error {
	seen := [2]bool{}
	for _, n := range ns {
		fam := 0
		if n.Is6() {
			fam = 1
		}
		if seen[fam] {
			line, _ := cfg.Line(table + ".neighbors")
			return &configs.Error{File: cfg.Path, Line: line, Msg: fmt.Sprintf("%s: neighbors lists two IPv%d routers; a backbone has at most one BGP neighbor per family (make the second router a backbone of its own)", name, map[int]int{0: 4, 1: 6}[fam])}
		}
		seen[fam] = true
	}
	return nil
}

// peerPlan is the session settings of [backbone.bgp] g, written at table,
// less the backbone and the neighbor.
func peerPlan(cfg *configs.Config, table string, g *configs.BackboneBGP) (bgpPeerPlan, error) {
	p := bgpPeerPlan{
		PeerAS:          g.PeerAS,
		HoldTime:        defaultHoldTime,
		Password:        g.Password,
		Passive:         g.Passive,
		MaxPrefixes:     [2]int{g.MaxPrefixesV4, g.MaxPrefixesV6},
		Teardown:        g.MaxPrefixesAction == configs.MaxPrefixesTeardown,
		GracefulRestart: true,
		Policy: importPolicy{
			AllowDefault:  g.AllowDefault,
			AllowMartians: g.AllowMartians,
			MaxLen4:       defaultMaxLen4,
			MaxLen6:       defaultMaxLen6,
		},
	}
	take(cfg, table+".hold_time", &p.HoldTime, g.HoldTime.Duration())
	take(cfg, table+".graceful_restart", &p.GracefulRestart, g.GracefulRestart)
	take(cfg, table+".max_length_v4", &p.Policy.MaxLen4, g.MaxLengthV4)
	take(cfg, table+".max_length_v6", &p.Policy.MaxLen6, g.MaxLengthV6)
	return p, setting.First(
		holdTime(p.HoldTime),
		setting.Int("max_prefixes_v4", p.MaxPrefixes[0], 0, math.MaxInt),
		setting.Int("max_prefixes_v6", p.MaxPrefixes[1], 0, math.MaxInt),
		setting.Int("max_length_v4", p.Policy.MaxLen4, 1, 32),
		setting.Int("max_length_v6", p.Policy.MaxLen6, 1, 128),
	)
}

// announceSession is [[announce]] a, written at table, defaults applied.
func announceSession(cfg *configs.Config, table string, a configs.Announce) (announcePlan, error) {
	p := announcePlan{
		Name:        a.Name,
		Neighbor:    a.Neighbor,
		PeerAS:      cfg.BGP.LocalAS,
		HoldTime:    defaultHoldTime,
		Password:    a.Password,
		Passive:     a.Passive,
		LocalPref:   defaultLocalPref,
		AllSelected: a.AllSelected,
		NextHopSelf: a.NextHopSelf,
	}
	take(cfg, table+".peer_as", &p.PeerAS, a.PeerAS)
	take(cfg, table+".hold_time", &p.HoldTime, a.HoldTime.Duration())
	take(cfg, table+".local_pref", &p.LocalPref, a.LocalPref)
	for _, c := range a.Communities {
		p.Communities = append(p.Communities, uint32(c))
	}
	return p, holdTime(p.HoldTime)
}

// holdTime checks a hold time against RFC 4271 §4.2: whole seconds in 16
// bits, and none from 1 to 2 (0, no keepalives, the file cannot write).
func holdTime(d time.Duration) error {
	switch {
	case d < 3*time.Second || d > 65535*time.Second:
		return setting.Errorf("hold_time", "hold_time = %q is out of range; use 3s to 65535s", d)
	case d%time.Second != 0:
		return setting.Errorf("hold_time", "hold_time = %q is not a whole number of seconds, which BGP carries; use %q", d, d.Round(time.Second))
	}
	return nil
}
