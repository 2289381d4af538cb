package configs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/BurntSushi/toml"
)

// Load reads and validates the configuration file at path. Relative paths
// inside it resolve against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	return Parse(data, path)
}

// Parse validates a configuration held in data. path names it in errors,
// and relative paths inside it resolve against path's directory; route and
// MRT files must exist there.
func Parse(data []byte, path string) (*Config, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		return nil, syntaxError(path, string(data), err)
	}
	d := &decoder{file: path, dir: filepath.Dir(path), at: scanPositions(string(data))}
	c := d.config(d.newTable("", "", doc))
	if err := d.result(); err != nil {
		return nil, err
	}
	c.Path, c.at = path, d.at
	return c, nil
}

func (d *decoder) config(root *table) *Config {
	c := &Config{}
	c.Forwarder = d.forwarder(root.table("forwarder", "forwarder"))
	ifaces := map[string]owner{} // shared: an interface serves one role
	c.Backbones = d.backbones(root, ifaces)
	c.Customers = d.customers(root, c.Backbones, ifaces)
	c.Probes = d.probes(root.table("probes", "probes"))
	c.Optimizer = d.optimizer(root.table("optimizer", "optimizer"))
	c.API = d.api(root.table("api", "api"))
	c.Log = d.log(root.table("log", "log"))
	c.State = d.state(root.table("state", "state"))
	c.BGP = d.bgp(root.table("bgp", "bgp"))
	c.Announces = d.announces(root)
	d.sessions(c)
	return c
}

func (d *decoder) forwarder(t *table) Forwarder {
	// batch, spin_us, priority, frame_size, frames and ring_size are the forwarder's and its
	// sockets' settings: only their types are checked here, and unwritten
	// ones stay zero for the components' defaults.
	f := Forwarder{Queues: 1, XDPMode: XDPAuto, MTU: 1500}
	t.int("queues", &f.Queues, 1, 64)
	// Whether the CPUs exist is checked when workers start: the config may
	// be validated on another machine.
	f.CPUs, _ = t.ints("cpus", 0, math.MaxInt)
	t.int("batch", &f.Batch, math.MinInt, math.MaxInt)
	t.int("spin_us", &f.SpinMicros, math.MinInt, math.MaxInt)
	t.int("priority", &f.Priority, math.MinInt, math.MaxInt)
	t.int("frame_size", &f.FrameSize, math.MinInt, math.MaxInt)
	t.int("frames", &f.Frames, math.MinInt, math.MaxInt)
	t.int("ring_size", &f.RingSize, math.MinInt, math.MaxInt)
	oneOf(t, "xdp_mode", &f.XDPMode, XDPAuto, XDPNative, XDPGeneric)
	t.int("mtu", &f.MTU, 576, 9000)
	t.bool("busy_poll", &f.BusyPoll)
	return f
}

// owner is what already uses a name or an interface, for messages.
type owner struct {
	what string // `backbone "bb-a"`
	line int
}

// validName is the syntax of backbone and customer names: short and safe
// in metric labels, file names and log lines.
var validName = regexp.MustCompile(`^[a-z0-9_-]{1,32}$`)

// readName reads the required name of a backbone or customer into dst and
// renames t after it. The name is used for messages even after a value
// error, so that unknown keys are reported under the right name.
func readName(t *table, kind string, dst *string) {
	v, set := t.lookup("name")
	s, isString := v.(string)
	switch {
	case !set:
		t.errf("name", "name is missing; add name = \"...\" (1 to 32 of a-z, 0-9, '-' and '_')")
	case !isString:
		t.typeErr("name", "a string", v)
	case !validName.MatchString(s):
		t.errf("name", "name %q is not allowed; use 1 to 32 of a-z, 0-9, '-' and '_'", s)
	default:
		*dst = s
		t.name = fmt.Sprintf("%s %q", kind, s)
	}
}

// unique checks that the name just read by t is not in seen, and adds it.
func (d *decoder) unique(t *table, kind, name string, seen map[string]owner) {
	if name == "" {
		return
	}
	path := child(t.path, "name")
	if o, dup := seen[name]; dup {
		d.errAt(path, "", "%s name %q is used twice (first at line %d); give each %s a unique name", kind, name, o.line, kind)
		return
	}
	seen[name] = owner{t.name, d.where(path).line}
}

// maxIfname is IFNAMSIZ less the terminating NUL.
const maxIfname = 15

// iface reads the required interface of t into dst and claims it in used.
func (d *decoder) iface(t *table, dst *string, used map[string]owner) {
	v, set := t.lookup("interface")
	s, isString := v.(string)
	switch {
	case !set:
		t.errf("interface", "interface is missing; add interface = \"...\" naming a Linux network interface")
		return
	case !isString:
		t.typeErr("interface", "a string", v)
		return
	}
	// The kernel's dev_valid_name rules.
	if len(s) == 0 || len(s) > maxIfname || s == "." || s == ".." ||
		strings.ContainsFunc(s, func(r rune) bool { return r == '/' || r == ':' || r == 0 || unicode.IsSpace(r) }) {
		t.errf("interface", "interface %q is not a valid Linux interface name; use 1 to %d characters without '/', ':' or spaces", s, maxIfname)
		return
	}
	path := child(t.path, "interface")
	if o, dup := used[s]; dup {
		t.errf("interface", "interface %q is already used by %s (line %d); give each backbone and customer its own interface", s, o.what, o.line)
		return
	}
	used[s] = owner{t.name, d.where(path).line}
	*dst = s
}

func (d *decoder) backbones(root *table, ifaces map[string]owner) []Backbone {
	ts := root.tables("backbone", "backbone")
	// How many a FIB holds is fib's rule, checked where the file meets the
	// components (cmd/pnapd).
	if len(ts) == 0 {
		d.errAt("", "", "no [[backbone]] is configured; add at least one, with a name, an interface and a gateway")
	}
	names := map[string]owner{}
	bs := make([]Backbone, len(ts))
	for i, t := range ts {
		b := &bs[i]
		b.Preference = 100 + 10*i
		readName(t, "backbone", &b.Name)
		d.unique(t, "backbone", b.Name, names)
		d.iface(t, &b.Interface, ifaces)
		t.addr("gateway_v4", &b.GatewayV4, ipv4)
		t.addr("gateway_v6", &b.GatewayV6, ipv6)
		if d.ok() && !b.GatewayV4.IsValid() && !b.GatewayV6.IsValid() {
			t.errf("gateway_v4", "no gateway; set gateway_v4, gateway_v6 or both")
		}
		t.int("preference", &b.Preference, 0, math.MaxInt)
		// The optimizer's (optimizer.Backbone.Validate checks them).
		t.float("cost", &b.Cost)
		t.float("commit_mbps", &b.CommitMbps)
		t.float("capacity_mbps", &b.CapacityMbps)
		b.Static, _ = t.prefixes("static", "static prefix")
		for _, rt := range t.tables("route_file", t.name+": route_file") {
			if p, ok := d.routeSource(t, rt, "route_file"); ok {
				b.RouteFiles = append(b.RouteFiles, RouteFile{Path: p})
			}
		}
		for _, mt := range t.tables("mrt", t.name+": mrt") {
			if m, ok := d.mrt(t, mt); ok {
				b.MRT = append(b.MRT, m)
			}
		}
		bt := t.table("bgp", t.name+": bgp")
		if _, ok := t.m["bgp"]; ok {
			b.BGP = d.backboneBGP(bt, b)
		}
	}
	return bs
}

// mrt reads one [[backbone.mrt]] of backbone b.
func (d *decoder) mrt(b, t *table) (MRTSource, bool) {
	var m MRTSource
	if n, ok := t.integer("peer_as", 1, math.MaxUint32); ok {
		m.PeerAS = uint32(n)
	}
	t.addr("peer_address", &m.PeerAddress, anyFamily)
	_, hasAS := t.m["peer_as"]
	_, hasAddr := t.m["peer_address"]
	switch {
	case hasAS && hasAddr:
		t.errf("peer_address", "both peer_as and peer_address are set; keep one: either selects the MRT peer whose routes this backbone gets")
	case !hasAS && !hasAddr:
		t.errf("peer_as", "no peer is selected; set peer_as or peer_address to choose the MRT peer whose routes this backbone gets")
	}
	p, ok := d.routeSource(b, t, "mrt")
	m.Path = p
	return m, ok && d.ok()
}

// routeSource reads the path of route source t of backbone b and checks the
// file exists. It returns the absolute path.
func (d *decoder) routeSource(b, t *table, kind string) (string, bool) {
	v, set := t.lookup("path")
	p, isString := v.(string)
	switch {
	case !set:
		t.errf("path", "path is missing; add path = \"...\" naming the %s file", kind)
		return "", false
	case !isString:
		t.typeErr("path", "a string", v)
		return "", false
	}
	if !d.ok() {
		return "", false // no need to touch the file system
	}
	at := child(t.path, "path")
	if p == "" {
		d.errAt(at, b.name, "%s path is empty; name the file or remove the entry", kind)
		return "", false
	}
	abs := p
	if !filepath.IsAbs(abs) {
		abs = filepath.Join(d.dir, abs)
	}
	if a, err := filepath.Abs(abs); err == nil {
		abs = a
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.errAt(at, b.name, "%s %q not found (resolved to %s); fix the path or remove the entry", kind, p, abs)
	case err != nil:
		d.errAt(at, b.name, "%s %q cannot be read: %s", kind, p, oneLine(err.Error()))
	case st.IsDir():
		d.errAt(at, b.name, "%s %q is a directory (%s); name a file", kind, p, abs)
	default:
		return abs, true
	}
	return "", false
}

func (d *decoder) customers(root *table, bs []Backbone, ifaces map[string]owner) []Customer {
	ts := root.tables("customer", "customer")
	names := map[string]owner{}
	routes := map[netip.Prefix]owner{} // a prefix can lead to one customer only
	cs := make([]Customer, len(ts))
	for i, t := range ts {
		c := &cs[i]
		readName(t, "customer", &c.Name)
		if b := backboneNamed(bs, c.Name); b != "" {
			d.errAt(child(t.path, "name"), "", "customer name %q is also a backbone name (line %d); give the customer a different name",
				c.Name, d.where(child(b, "name")).line)
		}
		d.unique(t, "customer", c.Name, names)
		d.iface(t, &c.Interface, ifaces)
		t.prefix("address_v4", &c.AddressV4, ipv4, false)
		t.prefix("address_v6", &c.AddressV6, ipv6, false)
		var lines []int
		c.Routes, lines = t.prefixes("routes", "route")
		for j, p := range c.Routes {
			if o, dup := routes[p]; dup {
				d.errAt(elem(child(t.path, "routes"), j), t.name, "route %s is already routed to %s (line %d); list it under one customer only", p, o.what, o.line)
				break
			}
			routes[p] = owner{t.name, lines[j]}
			// The forwarder treats every address of the port's own subnet
			// as directly attached, so a route inside it could never be used.
			for _, a := range []netip.Prefix{c.AddressV4, c.AddressV6} {
				if a.IsValid() && a.Masked().Overlaps(p) && p.Bits() >= a.Bits() {
					d.errAt(elem(child(t.path, "routes"), j), t.name, "route %s lies inside the port's own subnet %s, which is reached directly; remove the route", p, a.Masked())
				}
			}
		}
		t.addr("next_hop_v4", &c.NextHopV4, ipv4)
		t.addr("next_hop_v6", &c.NextHopV6, ipv6)
	}
	return cs
}

// backboneNamed returns the position path of the backbone called name, or "".
func backboneNamed(bs []Backbone, name string) string {
	for i, b := range bs {
		if name != "" && b.Name == name {
			return elem("backbone", i)
		}
	}
	return ""
}

// probes reads [probes]. Besides enabled and active its settings are
// probes.Options' and the forwarder sampler's: only their types are
// checked here, and unwritten ones stay zero for the component's defaults.
func (d *decoder) probes(t *table) Probes {
	p := Probes{Enabled: true, Active: true}
	t.bool("enabled", &p.Enabled)
	t.bool("active", &p.Active)
	t.int("top_prefixes", &p.TopPrefixes, math.MinInt, math.MaxInt)
	t.duration("interval", &p.Interval)
	t.duration("timeout", &p.Timeout)
	t.int("rate_per_backbone", &p.RatePerBackbone, math.MinInt, math.MaxInt)
	t.addr("source_v4", &p.SourceV4, ipv4)
	t.addr("source_v6", &p.SourceV6, ipv6)
	p.TCPPorts, _ = t.intList("tcp_ports")
	t.int("sample_ring", &p.SampleRing, math.MinInt, math.MaxInt)
	t.int("flow_table", &p.FlowTable, math.MinInt, math.MaxInt)
	t.duration("tcp_ts_rate_limit", &p.TCPTSRateLimit)
	t.int("traffic_sample_every", &p.TrafficSampleEvery, math.MinInt, math.MaxInt)
	t.duration("window", &p.Window)
	return p
}

// optimizer reads [optimizer]. Besides enabled its settings are
// optimizer.Options': only their types are checked here, and unwritten
// ones stay zero for the component's defaults.
func (d *decoder) optimizer(t *table) Optimizer {
	o := Optimizer{Enabled: true}
	t.bool("enabled", &o.Enabled)
	t.duration("interval", &o.Interval)
	t.string("statistic", &o.Statistic)
	t.float("loss_penalty_ms", &o.LossPenaltyMs)
	t.float("min_improvement_ms", &o.MinImprovementMs)
	t.float("min_improvement_pct", &o.MinImprovementPct)
	t.int("min_samples", &o.MinSamples, math.MinInt, math.MaxInt)
	t.duration("hold_down", &o.HoldDown)
	t.int("max_overrides", &o.MaxOverrides, math.MinInt, math.MaxInt)
	t.duration("failure_hold", &o.FailureHold)
	return o
}

func (d *decoder) state(t *table) State {
	s := State{Dir: "/var/lib/pnapd"}
	t.string("dir", &s.Dir)
	if d.ok() && s.Dir != "" && !strings.HasPrefix(s.Dir, "/") {
		t.errf("dir", "dir %q is not an absolute path; write one like \"/var/lib/pnapd\", or \"\" to keep no state", s.Dir)
	}
	return s
}

func (d *decoder) log(t *table) Log {
	l := Log{Level: LogInfo, Format: LogText}
	oneOf(t, "level", &l.Level, LogDebug, LogInfo, LogWarn, LogError)
	oneOf(t, "format", &l.Format, LogText, LogJSON)
	return l
}

func (d *decoder) api(t *table) API {
	a := API{Listen: "127.0.0.1:9180", Metrics: true, MetricsTopPrefixes: 20}
	t.string("listen", &a.Listen)
	if d.ok() {
		if path, ok := strings.CutPrefix(a.Listen, "unix:"); ok {
			if !strings.HasPrefix(path, "/") {
				t.errf("listen", "listen %q: a unix socket needs an absolute path, like \"unix:/run/pnapd/api.sock\"", a.Listen)
			}
		} else if msg := checkListen(a.Listen); msg != "" {
			t.errf("listen", "listen %q %s", a.Listen, msg)
		}
	}
	a.Token = d.secret(t, "token")
	a.ReadToken = d.secret(t, "read_token")
	if d.ok() && a.ReadToken != "" && a.Token == "" {
		t.errf("read_token", "read_token opens the API's reads only; set token too (for pins and reload), or drop read_token")
	}
	if d.ok() && a.ReadToken != "" && a.ReadToken == a.Token {
		t.errf("read_token", "read_token is the same as token; give readers a token of their own")
	}
	t.bool("metrics", &a.Metrics)
	t.int("metrics_top_prefixes", &a.MetricsTopPrefixes, 0, 1000)
	if d.ok() && a.Token == "" && !a.LocalOnly() {
		t.errf("listen", "listen %q is reachable from other hosts; set token = \"...\" (clients send it as a bearer token) or listen on 127.0.0.1, [::1] or a unix socket", a.Listen)
	}
	return a
}

// secret is key's value, written inline or read from key_file (a path
// relative to the configuration's directory, whitespace trimmed): at
// least 16 characters, and a file no other user may read.
func (d *decoder) secret(t *table, key string) string {
	var s, file string
	t.string(key, &s)
	t.string(key+"_file", &file)
	if !d.ok() {
		return ""
	}
	if s != "" && file != "" {
		t.errf(key+"_file", "%s and %s_file are both set; keep one", key, key)
		return ""
	}
	if file != "" {
		path := file
		if !filepath.IsAbs(path) {
			path = filepath.Join(d.dir, path)
		}
		st, err := os.Stat(path)
		if err == nil && st.Mode().Perm()&0o004 != 0 {
			t.errf(key+"_file", "%s_file %q is readable by every user (mode %v); chmod o-r it", key, file, st.Mode().Perm())
			return ""
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.errf(key+"_file", "%s_file %q: %v", key, file, err)
			return ""
		}
		s = strings.TrimSpace(string(b))
		if s == "" {
			t.errf(key+"_file", "%s_file %q is empty", key, file)
			return ""
		}
	}
	if s != "" && len(s) < 16 {
		t.errf(key, "%s is %d characters; use at least 16 (e.g. from `openssl rand -hex 16`)", key, len(s))
		return ""
	}
	return s
}

// checkListen explains what is wrong with a listen address, or returns "".
func checkListen(s string) string {
	const example = `; write host:port, like "127.0.0.1:9180" or "[::1]:9180"`
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return "is not a listen address (" + ae.Err + ")" + example
		}
		return "is not a listen address" + example
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("has port %q; use a number from 1 to 65535", port)
	}
	if host == "" {
		return "" // all addresses
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if len(host) > 253 || strings.ContainsFunc(host, func(r rune) bool {
		return !(r == '.' || r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		return fmt.Sprintf("has host %q, which is neither an IP address nor a host name", host)
	}
	return ""
}
