package configs

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// bgp reads [bgp]. Whether local_as and router_id are required depends on
// the sessions, which sessions checks once every table is read.
func (d *decoder) bgp(t *table) BGP {
	var g BGP
	if n, ok := t.integer("local_as", 1, math.MaxUint32); ok {
		g.LocalAS = uint32(n)
	}
	if s, ok := t.str("router_id"); ok {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil || !a.Is4():
			t.errf("router_id", "router_id %q is not an IPv4 address; write one of pnapd's IPv4 addresses, like \"192.0.2.1\" (IPv6-only hosts too need a 32-bit id)", s)
		case a.IsUnspecified():
			t.errf("router_id", "router_id %q is zero, which BGP does not allow (RFC 6286); write one of pnapd's IPv4 addresses", s)
		default:
			g.RouterID = a
		}
	}
	if s, ok := t.str("listen"); ok && s != "" {
		g.Listen = bgpListen(t, s)
	}
	return g
}

// bgpListen parses [bgp] listen, an IP address and a port: a BGP speaker
// listens on addresses, never on a name to resolve.
func bgpListen(t *table, s string) netip.AddrPort {
	const example = `; write an IP address and a port, like "0.0.0.0:179" or "[::]:179", or "" to only connect out`
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		t.errf("listen", "listen %q is not an address and port (%s)%s", s, reason(err), example)
	case ap.Port() == 0:
		t.errf("listen", "listen %q has port 0; use 179, BGP's port, or another from 1 to 65535", s)
	case ap.Addr().Zone() != "":
		t.errf("listen", "listen %q has a zone; listen on \"[::]:%d\" or on a global address", s, ap.Port())
	case ap.Addr().Is4In6():
		t.errf("listen", "listen %q is an IPv4-mapped IPv6 address; write \"%s\"", s, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	case ap.Addr().IsMulticast():
		t.errf("listen", "listen %q is not a unicast address", s)
	default:
		return ap
	}
	return netip.AddrPort{}
}

// backboneBGP reads [backbone.bgp] of backbone b, whose gateways are read.
func (d *decoder) backboneBGP(t *table, b *Backbone) *BackboneBGP {
	g := &BackboneBGP{}
	g.Neighbors = d.neighbors(t, b)
	if n, ok := t.integer("peer_as", 1, math.MaxUint32); ok {
		g.PeerAS = uint32(n)
	}
	if _, set := t.m["peer_as"]; !set {
		t.errf("peer_as", "peer_as is missing; add peer_as = the router's AS number")
	}
	g.Password, g.PasswordFile = d.password(t)
	t.duration("hold_time", &g.HoldTime)
	t.bool("passive", &g.Passive)
	// The speaker's and the import policy's numbers: only their types are
	// checked here, and unwritten ones stay zero for the defaults.
	t.int("max_prefixes_v4", &g.MaxPrefixesV4, math.MinInt, math.MaxInt)
	t.int("max_prefixes_v6", &g.MaxPrefixesV6, math.MinInt, math.MaxInt)
	oneOf(t, "max_prefixes_action", &g.MaxPrefixesAction, MaxPrefixesStop, MaxPrefixesTeardown)
	t.bool("graceful_restart", &g.GracefulRestart)
	t.bool("allow_default", &g.AllowDefault)
	t.bool("allow_martians", &g.AllowMartians)
	t.int("max_length_v4", &g.MaxLengthV4, math.MinInt, math.MaxInt)
	t.int("max_length_v6", &g.MaxLengthV6, math.MinInt, math.MaxInt)
	return g
}

// neighbors reads the required neighbors of [backbone.bgp] t: unicast
// addresses, each of a family backbone b has a gateway for, as the session
// runs over b's interface. An IPv6 link-local one is allowed, as for
// gateway_v6: the interface is its zone.
func (d *decoder) neighbors(t *table, b *Backbone) []netip.Addr {
	const key = "neighbors"
	v, set := t.lookup(key)
	if !set {
		t.errf(key, "neighbors is missing; add neighbors = [\"...\"] with the router's address, one session each")
		return nil
	}
	vs, ok := v.([]any)
	if s, isString := v.(string); isString {
		t.errf(key, "neighbors must be an array, not the string %q; write neighbors = [%q]", s, s)
		return nil
	} else if !ok {
		t.typeErr(key, "an array of addresses", v)
		return nil
	}
	if len(vs) == 0 {
		t.errf(key, "neighbors is empty; list the router's address, one session each")
		return nil
	}
	out := make([]netip.Addr, 0, len(vs))
	for i, v := range vs {
		s, ok := v.(string)
		if !ok {
			t.elemErr(key, i, "neighbors must hold address strings like \"192.0.2.1\", not %s", describe(v))
			return nil
		}
		a, msg := parseNeighbor("neighbor", s)
		switch {
		case msg != "":
		case a.Is4() && !b.GatewayV4.IsValid():
			msg = fmt.Sprintf("neighbor %s is IPv4, but the backbone has no gateway_v4; set gateway_v4 or use the router's IPv6 address", a)
		case a.Is6() && !b.GatewayV6.IsValid():
			msg = fmt.Sprintf("neighbor %s is IPv6, but the backbone has no gateway_v6; set gateway_v6 or use the router's IPv4 address", a)
		case slices.Contains(out, a):
			msg = fmt.Sprintf("neighbors lists %s twice; remove one", a)
		}
		if msg != "" {
			t.elemErr(key, i, "%s", msg)
			return nil
		}
		out = append(out, a)
	}
	return out
}

// parseNeighbor parses the address of a BGP neighbor, named key in
// messages, and explains what is wrong with it, if anything.
func parseNeighbor(key, s string) (netip.Addr, string) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return a, fmt.Sprintf("%s %q is not an IP address (%s)", key, s, reason(err))
	case a.Is4In6():
		return a, fmt.Sprintf("%s %q is an IPv4-mapped IPv6 address; write %q", key, s, a.Unmap().String())
	case a.Zone() != "":
		return a, fmt.Sprintf("%s %q has a zone; write %q", key, s, a.WithZone("").String())
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return a, fmt.Sprintf("%s %q is not a router's address; write the address pnapd connects to", key, s)
	}
	return a, ""
}

// maxMD5Key is the longest TCP MD5 key Linux takes (TCP_MD5SIG_MAXKEYLEN).
const maxMD5Key = 80

// password reads password or password_file of session table t: the secret
// and, when it came from a file, the file's absolute path. A file lets the secret stay out of a config file
// that others may read; it is read at load, so pnapd check proves it can be.
func (d *decoder) password(t *table) (secret, file string) {
	if s, ok := t.str("password"); ok {
		switch {
		case s == "":
			t.errf("password", "password is empty; write the TCP MD5 password or remove the key")
		case len(s) > maxMD5Key:
			t.errf("password", "password is %d bytes; a TCP MD5 key has at most %d", len(s), maxMD5Key)
		default:
			secret = s
		}
	}
	p, ok := t.str("password_file")
	if !ok {
		return secret, ""
	}
	if _, both := t.m["password"]; both {
		t.errf("password_file", "both password and password_file are set; keep one")
		return "", ""
	}
	if p == "" {
		t.errf("password_file", "password_file is empty; name the file holding the password or remove the key")
		return "", ""
	}
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(d.dir, abs)
	}
	if a, err := filepath.Abs(abs); err == nil {
		abs = a
	}
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		t.errf("password_file", "password_file %q is a directory (%s); name the file holding the password", p, abs)
		return "", ""
	}
	data, err := os.ReadFile(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t.errf("password_file", "password_file %q not found (resolved to %s); fix the path", p, abs)
	case errors.Is(err, fs.ErrPermission):
		t.errf("password_file", "password_file %q cannot be read by this user (%s); pnapd reads it at load", p, abs)
	case err != nil:
		t.errf("password_file", "password_file %q cannot be read: %s", p, oneLine(err.Error()))
	default:
		// One line ending is the file's, not the password's: echo and
		// editors add it.
		s := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
		switch {
		case s == "":
			t.errf("password_file", "password_file %q is empty; write the TCP MD5 password in it", p)
		case strings.ContainsAny(s, "\r\n"):
			t.errf("password_file", "password_file %q holds more than one line; write only the password", p)
		case len(s) > maxMD5Key:
			t.errf("password_file", "password_file %q holds %d bytes; a TCP MD5 key has at most %d", p, len(s), maxMD5Key)
		default:
			return s, abs
		}
	}
	return "", ""
}

func (d *decoder) announces(root *table) []Announce {
	ts := root.tables("announce", "announce")
	names := map[string]owner{}
	as := make([]Announce, len(ts))
	for i, t := range ts {
		a := &as[i]
		readName(t, "announce", &a.Name)
		d.unique(t, "announce", a.Name, names)
		if s, ok := t.str("neighbor"); ok {
			n, msg := parseNeighbor("neighbor", s)
			if msg == "" && n.Is6() && n.IsLinkLocalUnicast() {
				msg = fmt.Sprintf("neighbor %q is link-local, which needs an interface; write the router's global or unique local address", s)
			}
			if msg != "" {
				t.errf("neighbor", "%s", msg)
			} else {
				a.Neighbor = n
			}
		}
		if _, set := t.m["neighbor"]; !set {
			t.errf("neighbor", "neighbor is missing; add neighbor = \"...\" with the router's address")
		}
		if n, ok := t.integer("peer_as", 1, math.MaxUint32); ok {
			a.PeerAS = uint32(n)
		}
		a.Password, a.PasswordFile = d.password(t)
		t.duration("hold_time", &a.HoldTime)
		t.bool("passive", &a.Passive)
		if n, ok := t.integer("local_pref", 0, math.MaxUint32); ok {
			a.LocalPref = uint32(n)
		}
		a.Communities = communities(t)
		t.bool("all_selected", &a.AllSelected)
		t.bool("next_hop_self", &a.NextHopSelf)
	}
	return as
}

// communities reads the communities of [[announce]] t: distinct standard
// communities written "ASN:VALUE", both parts 0..65535.
func communities(t *table) []Community {
	const key = "communities"
	vs, ok := t.list(key)
	if !ok {
		return nil
	}
	out := make([]Community, 0, len(vs))
	for i, v := range vs {
		s, ok := v.(string)
		if !ok {
			t.elemErr(key, i, "communities must hold strings like \"64500:100\", not %s", describe(v))
			return nil
		}
		c, msg := parseCommunity(s)
		if msg == "" && slices.Contains(out, c) {
			msg = fmt.Sprintf("communities lists %s twice; remove one", c)
		}
		if msg != "" {
			t.elemErr(key, i, "%s", msg)
			return nil
		}
		out = append(out, c)
	}
	return out
}

// parseCommunity parses "ASN:VALUE" and explains what is wrong, if anything.
func parseCommunity(s string) (Community, string) {
	asn, val, found := strings.Cut(s, ":")
	if !found {
		return 0, fmt.Sprintf("community %q is not ASN:VALUE; write it like \"64500:100\"", s)
	}
	a, errA := strconv.ParseUint(asn, 10, 64)
	v, errV := strconv.ParseUint(val, 10, 64)
	switch {
	case errA != nil || errV != nil:
		return 0, fmt.Sprintf("community %q is not ASN:VALUE with two decimal numbers; write it like \"64500:100\"", s)
	case a > math.MaxUint16:
		return 0, fmt.Sprintf("community %q: AS %d does not fit a standard community's 16 bits; use a 16-bit (or private, 64512..65534) AS number", s, a)
	case v > math.MaxUint16:
		return 0, fmt.Sprintf("community %q: value %d is out of range; use 0 to 65535", s, v)
	}
	return Community(a<<16 | v), ""
}

// session is one BGP session of the file, for the checks across tables.
type session struct {
	what  string // `[backbone.bgp] of backbone "a"`, `[[announce]] "rr1"`
	table string // its table's path: "backbone[0].bgp", "announce[1]"
	at    string // where its neighbor is written
	// peer identifies the neighbor: its address, which for an IPv6
	// link-local one holds the backbone's interface as its zone.
	peer    netip.Addr
	passive bool
}

// sessions checks what every BGP session of c needs together: pnapd's AS
// number and router id, and one session per neighbor.
func (d *decoder) sessions(c *Config) {
	var all []session
	for i, b := range c.Backbones {
		if b.BGP == nil {
			continue
		}
		what := fmt.Sprintf("[backbone.bgp] of backbone %q", b.Name)
		for j, n := range b.BGP.Neighbors {
			if n.Is6() && n.IsLinkLocalUnicast() {
				n = n.WithZone(b.Interface)
			}
			table := elem("backbone", i) + ".bgp"
			all = append(all, session{what, table, elem(table+".neighbors", j), n, b.BGP.Passive})
		}
	}
	for i, a := range c.Announces {
		table := elem("announce", i)
		all = append(all, session{fmt.Sprintf("[[announce]] %q", a.Name), table, table + ".neighbor", a.Neighbor, a.Passive})
	}
	if len(all) == 0 || !d.ok() { // no neighbor is missing, then
		return
	}
	slices.SortStableFunc(all, func(a, b session) int { return cmp.Compare(d.where(a.at).line, d.where(b.at).line) })
	first := all[0]
	// Where to ask for a [bgp] key: in [bgp] when the file has one, else
	// at the first session, which is what needs it.
	ask := func(key string) string {
		if _, ok := d.at["bgp"]; ok {
			return "bgp." + key
		}
		return first.at
	}
	if c.BGP.LocalAS == 0 {
		d.errAt(ask("local_as"), "bgp", "local_as is missing; %s (line %d) needs pnapd's AS number: add local_as = ... to [bgp]",
			first.what, d.where(first.at).line)
	}
	if !c.BGP.RouterID.IsValid() {
		d.errAt(ask("router_id"), "bgp", "router_id is missing; %s (line %d) needs a BGP identifier: add router_id = \"...\", one of pnapd's IPv4 addresses, to [bgp]",
			first.what, d.where(first.at).line)
	}
	if !c.BGP.Listen.IsValid() {
		for _, s := range all {
			if s.passive {
				d.errAt(s.table+".passive", "",
					"%s is passive, but [bgp] has no listen address, so the router could never connect; set listen in [bgp] or remove passive", s.what)
				return
			}
		}
	}
	seen := map[netip.Addr]session{}
	for _, s := range all {
		if !s.peer.IsValid() {
			continue
		}
		if o, dup := seen[s.peer]; dup {
			d.errAt(s.at, "", "neighbor %s has a session in %s (line %d) already; give each router one session",
				s.peer.WithZone(""), o.what, d.where(o.at).line)
			return
		}
		seen[s.peer] = s
	}
}
