package configs

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Config is a loaded configuration. Values are checked for their type and
// for the rules of the file itself, relative paths are made absolute, and
// the settings configs owns have their defaults; the settings a component
// owns (Probes, Optimizer and the backbones' Cost, CommitMbps and
// CapacityMbps) are as written, zero when not, and that component's
// Options supply the defaults and check them.
type Config struct {
	Path      string // the file it was loaded from, as given to Load or Parse
	Forwarder Forwarder
	Backbones []Backbone // [[backbone]], in file order
	Customers []Customer // [[customer]], in file order
	Probes    Probes
	Optimizer Optimizer
	API       API
	Log       Log
	State     State
	BGP       BGP
	Announces []Announce // [[announce]], in file order

	at positions // where each key is written, for Line
}

// Line returns the line of the file that sets key, a path as the file nests
// it: "probes.timeout", "backbone[1].cost", "probes.tcp_ports[0]". It lets
// whoever checks a value after Load point at the line to change. For a key
// the file does not set, written is false and line is that of the nearest
// enclosing table the file writes (0 when none is): where a message about
// a default belongs.
func (c *Config) Line(key string) (line int, written bool) {
	_, written = c.at[key]
	return c.at.where(key).line, written
}

// BackboneByName returns the backbone called name.
func (c *Config) BackboneByName(name string) (*Backbone, bool) {
	for i := range c.Backbones {
		if c.Backbones[i].Name == name {
			return &c.Backbones[i], true
		}
	}
	return nil, false
}

// Forwarder is [forwarder]: the AF_XDP data plane.
type Forwarder struct {
	Queues int   // queues: RX queues served per interface; default 1, 1..64
	CPUs   []int // cpus: CPU ids to pin workers to; empty means unpinned
	// Batch (batch), FrameSize (frame_size), Frames (frames) and RingSize
	// (ring_size) are settings of forwarder.LoopOptions and xsk.Options,
	// as written: zero when not.
	Batch int
	// SpinMicros (spin_us) is forwarder.LoopOptions.Spin in µs, and
	// Priority (priority) its Priority, as written: zero when not.
	SpinMicros int
	Priority   int
	FrameSize  int
	Frames     int
	RingSize   int
	XDPMode    XDPMode // xdp_mode: default XDPAuto
	MTU        int     // mtu: default 1500, 576..9000
	// BusyPoll (busy_poll, default false) lets each worker run its
	// interfaces' NAPI receive loop itself (SO_PREFER_BUSY_POLL), setting
	// napi_defer_hard_irqs and gro_flush_timeout on them while pnapd runs.
	BusyPoll bool
}

// XDPMode selects how the XDP program is attached.
type XDPMode string

// The xdp_mode values.
const (
	XDPAuto    XDPMode = "auto"    // native if the driver supports it, else generic
	XDPNative  XDPMode = "native"  // in the driver; fails if unsupported
	XDPGeneric XDPMode = "generic" // in the kernel stack; slow, but works everywhere
)

// Backbone is one [[backbone]]: a transit network reached through one
// interface and gateway, with the routes it offers.
type Backbone struct {
	Name      string     // name: unique, [a-z0-9_-]{1,32}
	Interface string     // interface: Linux interface name, unique among backbones and customers
	GatewayV4 netip.Addr // gateway_v4: invalid when unset
	GatewayV6 netip.Addr // gateway_v6: invalid when unset; at least one gateway is set

	// Preference orders backbones before measurements exist: lower is
	// preferred, ties go to the earlier backbone. Default 100 + 10*index.
	Preference int

	// The optimizer's parameters (optimizer.Backbone), as written; their
	// zero values are its defaults.
	Cost         float64 // cost: milliseconds added to this backbone's score
	CommitMbps   float64 // commit_mbps: committed rate
	CapacityMbps float64 // capacity_mbps: link capacity

	Static     []netip.Prefix // static: canonical prefixes
	RouteFiles []RouteFile    // [[backbone.route_file]]
	MRT        []MRTSource    // [[backbone.mrt]]
	BGP        *BackboneBGP   // [backbone.bgp]: nil when not written
}

// RouteFile is a text prefix file, plain or gzip, one prefix per line.
type RouteFile struct {
	Path string // absolute; the file existed at load time
}

// MRTSource takes one peer's routes from an MRT TABLE_DUMP_V2 RIB dump,
// plain or gzip. Exactly one of PeerAS and PeerAddress is set.
type MRTSource struct {
	Path        string     // absolute; the file existed at load time
	PeerAS      uint32     // peer_as: 0 when unset
	PeerAddress netip.Addr // peer_address: invalid when unset
}

// Customer is one [[customer]]: a port facing a customer network.
type Customer struct {
	Name      string       // name: unique among customers and backbones, [a-z0-9_-]{1,32}
	Interface string       // interface: unique among backbones and customers
	AddressV4 netip.Prefix // address_v4: the port's own address and subnet, host bits kept; invalid when unset
	AddressV6 netip.Prefix // address_v6: as AddressV4
	Routes    []netip.Prefix
	NextHopV4 netip.Addr // next_hop_v4: for routes that are not connected; invalid when unset
	NextHopV6 netip.Addr // next_hop_v6: as NextHopV4
}

// Probes is [probes]: latency measurement of the busiest prefixes. Enabled
// and Active have their defaults; the rest are settings of probes.Options
// and of the forwarder's sampler, as written: zero (nil TCPPorts) when not.
type Probes struct {
	Enabled bool // enabled: default true
	// Active (active, default true) sends probes; false measures from the
	// forwarded traffic's in-band samples alone, for networks that forbid
	// probing.
	Active bool
	// TCPTSRateLimit (tcp_ts_rate_limit) is the forwarder sampler's
	// minimum gap between TCP timestamp samples of a flow.
	TCPTSRateLimit Duration
	// TrafficSampleEvery (traffic_sample_every) is the forwarder sampler's
	// one traffic sample per this many forwarded packets, which rank the
	// prefixes to probe.
	TrafficSampleEvery int

	TopPrefixes     int        // top_prefixes
	Interval        Duration   // interval
	Timeout         Duration   // timeout
	RatePerBackbone int        // rate_per_backbone
	SourceV4        netip.Addr // source_v4
	SourceV6        netip.Addr // source_v6
	TCPPorts        []int      // tcp_ports; empty but not nil when written empty
	SampleRing      int        // sample_ring
	FlowTable       int        // flow_table
	Window          Duration   // window
}

// Optimizer is [optimizer]: choosing a backbone per prefix from
// measurements. Enabled has its default; the rest are optimizer.Options
// settings, as written: zero when not.
type Optimizer struct {
	Enabled bool // enabled: default true

	Interval          Duration // interval
	Statistic         string   // statistic
	LossPenaltyMs     float64  // loss_penalty_ms
	MinImprovementMs  float64  // min_improvement_ms
	MinImprovementPct float64  // min_improvement_pct
	MinSamples        int      // min_samples
	HoldDown          Duration // hold_down
	MaxOverrides      int      // max_overrides
	FailureHold       Duration // failure_hold
}

// API is [api]: the HTTP control and metrics endpoint.
type API struct {
	// Listen is host:port or "unix:/absolute/path"; default "127.0.0.1:9180".
	Listen string
	// Token is the bearer token clients must send (Authorization: Bearer
	// TOKEN), for everything. Required when Listen is reachable from other
	// hosts. From token, or read from token_file (the file kept out of a
	// world-readable configuration, or a systemd credential).
	Token string
	// ReadToken (read_token or read_token_file), when set, also opens the
	// GETs and /metrics, not pins or reload: for dashboards and scrapers.
	ReadToken string
	Metrics   bool // metrics: serve Prometheus metrics at /metrics; default true
	// MetricsTopPrefixes bounds the per-prefix series (RTT by backbone) to
	// the busiest N prefixes; default 20, 0 for none.
	MetricsTopPrefixes int
}

// State is [state]: where pnapd keeps what must survive a restart or an
// upgrade (the operator's pins).
type State struct {
	// Dir is an absolute directory; default "/var/lib/pnapd" (the unit's
	// StateDirectory). Written as "", nothing is kept.
	Dir string
}

// Log is [log]: how pnapd writes its log (to stderr, which systemd's
// journal takes).
type Log struct {
	Level  LogLevel  // "debug", "info" (default), "warn" or "error"
	Format LogFormat // "text" (default: key=value) or "json"
}

// LogLevel is [log] level.
type LogLevel string

// The log levels.
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogFormat is [log] format.
type LogFormat string

// The log formats.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// BGP is [bgp]: pnapd's own side of every BGP session, those that learn a
// backbone's routes ([backbone.bgp]) and those that announce its choices
// ([[announce]]).
type BGP struct {
	// LocalAS (local_as) is pnapd's AS number, 1..4294967295; 0 when unset,
	// which is allowed only when no session is configured.
	LocalAS uint32
	// RouterID (router_id) is the BGP identifier, a non-zero IPv4
	// address; invalid when unset, which is allowed only when no session is
	// configured.
	RouterID netip.Addr
	// Listen (listen) is the address and port to accept sessions on, such
	// as 0.0.0.0:179 or [::]:179; invalid when unset or written "": pnapd
	// then only connects out (active only).
	Listen netip.AddrPort
}

// UsesBGP reports whether the file configures any BGP session: a
// [backbone.bgp] or an [[announce]].
func (c *Config) UsesBGP() bool {
	if len(c.Announces) > 0 {
		return true
	}
	for _, b := range c.Backbones {
		if b.BGP != nil {
			return true
		}
	}
	return false
}

// BackboneBGP is [backbone.bgp]: the backbone's routes come from BGP
// sessions with its router, one per neighbor. PeerAS and the neighbors
// are the file's; the rest are settings of the BGP speaker and its import
// policy, as written: zero (false, "") when not, the defaults named here
// being the component's. Whoever applies them asks Config.Line whether a
// key is written ("backbone[0].bgp.graceful_restart") rather than reading
// a zero as a choice.
type BackboneBGP struct {
	// Neighbors (neighbors) are the router's addresses, at least one,
	// each reached over the backbone's interface: its family is one the
	// backbone has a gateway for, and an IPv6 link-local one takes the
	// interface as its zone. Unique among every session of the file.
	Neighbors []netip.Addr
	PeerAS    uint32 // peer_as: the router's AS, 1..4294967295; required
	// Password is the TCP MD5 key (RFC 2385): password, or the content of
	// password_file less its line ending; "" for none. 1 to 80 bytes.
	Password string
	// PasswordFile (password_file) is the absolute path the password was
	// read from at load; "" when it is written inline or not at all.
	PasswordFile string

	HoldTime Duration // hold_time: default 90s
	Passive  bool     // passive: wait for the router to connect; default false
	// MaxPrefixesV4 and MaxPrefixesV6 (max_prefixes_v4, max_prefixes_v6)
	// bound the prefixes accepted per family; 0, the default, is no limit.
	MaxPrefixesV4, MaxPrefixesV6 int
	// MaxPrefixesAction (max_prefixes_action) is what exceeding them
	// does; "" when unwritten, which is MaxPrefixesStop.
	MaxPrefixesAction MaxPrefixesAction
	// GracefulRestart (graceful_restart) is the RFC 4724 helper: keep the
	// routes of a gracefully restarting router as stale until it is back.
	// Default true; false here when unwritten.
	GracefulRestart bool

	// The import policy. By default a route is refused when it is a
	// default route, a martian (a special-purpose range that must not be
	// routed), or longer than /24 (IPv4) or /48 (IPv6).
	AllowDefault  bool // allow_default: default false
	AllowMartians bool // allow_martians: default false
	MaxLengthV4   int  // max_length_v4: default 24
	MaxLengthV6   int  // max_length_v6: default 48
}

// MaxPrefixesAction is what a session does when its router sends more
// prefixes of a family than max_prefixes_v4 or max_prefixes_v6 allow.
type MaxPrefixesAction string

// The max_prefixes_action values.
const (
	MaxPrefixesStop     MaxPrefixesAction = "stop"     // refuse further prefixes, keep the session
	MaxPrefixesTeardown MaxPrefixesAction = "teardown" // close the session (NOTIFICATION Cease)
)

// Announce is one [[announce]]: a BGP session to one of the network's own
// routers, typically iBGP, over which pnapd announces its choices: a
// prefix with the chosen backbone's gateway as next hop. Name, Neighbor,
// PeerAS and the communities are the file's; LocalPref, HoldTime and the
// booleans are the speaker's settings, as written: zero when not.
type Announce struct {
	Name     string     // name: unique among [[announce]], [a-z0-9_-]{1,32}
	Neighbor netip.Addr // neighbor: the router's address; required, not link-local
	// PeerAS (peer_as) is the router's AS, 1..4294967295; 0 when
	// unwritten, which means local_as (iBGP).
	PeerAS       uint32
	Password     string   // as BackboneBGP.Password
	PasswordFile string   // as BackboneBGP.PasswordFile
	HoldTime     Duration // hold_time: default 90s
	Passive      bool     // passive: wait for the router to connect; default false
	// LocalPref (local_pref) is the LOCAL_PREF of the announcements,
	// 0..4294967295; default 100.
	LocalPref uint32
	// Communities (communities) are added to every announcement, written
	// "ASN:VALUE" (RFC 1997); empty when unwritten.
	Communities []Community
	// AllSelected (all_selected, default false) announces every selected
	// prefix, not only those whose selection differs from the default.
	AllSelected bool
	// NextHopSelf (next_hop_self, default false) announces pnapd's own
	// address as the next hop instead of the chosen backbone's gateway,
	// for routers that should send the traffic through pnapd.
	NextHopSelf bool
}

// Community is a standard BGP community (RFC 1997): the AS number in the
// high 16 bits, a value of its choosing in the low 16.
type Community uint32

// String formats c as the file writes it, "ASN:VALUE".
func (c Community) String() string { return fmt.Sprintf("%d:%d", c>>16, c&0xffff) }

// LocalOnly reports whether Listen is reachable only from this host: a
// loopback address or a unix socket.
func (a API) LocalOnly() bool {
	if strings.HasPrefix(a.Listen, "unix:") {
		return true
	}
	host, _, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Duration is a time.Duration written in TOML as a string such as "10s" or
// "250ms". Convert with time.Duration(d).
type Duration time.Duration

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a duration in time.ParseDuration syntax. Zero and
// negative durations are rejected: no setting here means "never".
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%q is not a duration; write a number with a unit, like \"10s\" or \"500ms\"", text)
	}
	if v <= 0 {
		return fmt.Errorf("%q is not positive; write a duration greater than zero", text)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d so that UnmarshalText reads it back.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
