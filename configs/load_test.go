package configs

import (
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/pnap-project/pnap/configs/configtest"
)

func TestExamples(t *testing.T) {
	tests := []struct {
		file       string
		backbones  int
		customers  int
		routeFiles int // over all backbones
		static     int // over all backbones
	}{
		{"minimal.toml", 1, 1, 0, 2},
		{"lab.toml", 3, 2, 3, 1},
		{"full.toml", 2, 1, 0, 2},
		{"bgp.toml", 2, 1, 0, 0},
	}
	files, err := filepath.Glob("examples/*.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("examples/ holds %d .toml files, the test knows %d; add the new ones here", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			c, err := Load(filepath.Join("examples", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Backbones) != tt.backbones || len(c.Customers) != tt.customers {
				t.Errorf("got %d backbones, %d customers; want %d, %d", len(c.Backbones), len(c.Customers), tt.backbones, tt.customers)
			}
			routeFiles, static := 0, 0
			for _, b := range c.Backbones {
				static += len(b.Static)
				for _, rf := range b.RouteFiles {
					routeFiles++
					if !filepath.IsAbs(rf.Path) {
						t.Errorf("backbone %q: route file %q is not absolute", b.Name, rf.Path)
					}
					if _, err := os.Stat(rf.Path); err != nil {
						t.Error(err)
					}
				}
			}
			if routeFiles != tt.routeFiles || static != tt.static {
				t.Errorf("got %d route files, %d static prefixes; want %d, %d", routeFiles, static, tt.routeFiles, tt.static)
			}
		})
	}
}

func TestLab(t *testing.T) {
	c, err := Load("examples/lab.toml")
	if err != nil {
		t.Fatal(err)
	}
	b, ok := c.BackboneByName("bb-b")
	if !ok {
		t.Fatal(`no backbone "bb-b"`)
	}
	if b.Interface != "pnap-bb1" || b.Preference != 110 || b.Cost != 2.5 ||
		b.GatewayV4 != netip.MustParseAddr("198.18.101.1") || b.GatewayV6 != netip.MustParseAddr("2001:2:0:101::1") {
		t.Errorf("bb-b = %+v", *b)
	}
	if want := filepath.Join("examples", "routes", "bb-b.txt"); !strings.HasSuffix(b.RouteFiles[0].Path, want) {
		t.Errorf("bb-b route file %q, want it to end in %q", b.RouteFiles[0].Path, want)
	}
	if _, ok := c.BackboneByName("bb-z"); ok {
		t.Error(`found a backbone "bb-z"`)
	}
	east := c.Customers[0]
	if east.AddressV4 != netip.MustParsePrefix("198.18.0.1/24") {
		t.Errorf("address_v4 = %v; the host bits must be kept", east.AddressV4)
	}
	if c.Forwarder.XDPMode != XDPGeneric || c.Probes.Interval.Duration() != 5*time.Second || c.Optimizer.HoldDown != Duration(20*time.Second) {
		t.Errorf("forwarder %+v, probes %+v, optimizer %+v", c.Forwarder, c.Probes, c.Optimizer)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(configtest.TwoBackbones), "defaults.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path: "defaults.toml",
		Forwarder: Forwarder{
			Queues:  1,
			XDPMode: XDPAuto, MTU: 1500,
		},
		Backbones: []Backbone{
			{Name: "a", Interface: "eth1", GatewayV4: netip.MustParseAddr("192.0.2.1"), Preference: 100},
			{Name: "b", Interface: "eth2", GatewayV6: netip.MustParseAddr("2001:db8::1"), Preference: 110},
		},
		Customers: []Customer{},
		Announces: []Announce{},
		// The other [probes] and [optimizer] settings are the components':
		// unwritten, they stay zero here, and cmd/pnapd's
		// TestCheckDefaultsFromComponents checks their defaults.
		Probes:    Probes{Enabled: true, Active: true},
		Optimizer: Optimizer{Enabled: true},
		API:       API{Listen: "127.0.0.1:9180", Metrics: true, MetricsTopPrefixes: 20},
		Log:       Log{Level: LogInfo, Format: LogText},
		State:     State{Dir: "/var/lib/pnapd"},
	}
	c.at = nil // where keys are written is TestLine's
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// [probes] active turns active probing off alone: probes stay enabled,
// and the sources may be left out.
func TestProbesPassiveOnly(t *testing.T) {
	c, err := Parse([]byte(configtest.TwoBackbones+"\n[probes]\nactive = false\n"), "passive.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Probes.Active || !c.Probes.Enabled || c.Probes.SourceV4.IsValid() {
		t.Errorf("probes %+v; want enabled, not active, no source", c.Probes)
	}
	if line, written := c.Line("probes.active"); !written || line == 0 {
		t.Errorf("probes.active at line %d, written %v", line, written)
	}
}

// TestBroken loads every file in testdata/broken. Each starts with
// "# want: <substring of the error>" and may follow it with "# line: N";
// configtest.Broken says what the error must be.
func TestBroken(t *testing.T) {
	configtest.Broken(t, "testdata/broken", 15, func(file string) error {
		_, err := Load(file)
		return err
	}, func(e *Error) int { return e.Line })
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{"lab.toml", 12, 1, "m"}, "lab.toml:12:1: m"},
		{Error{"lab.toml", 12, 0, "m"}, "lab.toml:12: m"},
		{Error{"lab.toml", 0, 0, "m"}, "lab.toml: m"},
		{Error{"", 3, 0, "m"}, "config:3: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such.toml")
	if err == nil || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "config file") ||
		!strings.Contains(err.Error(), "testdata/no-such.toml") {
		t.Errorf("got %v", err)
	}
}

// parseErr parses src as the file x.toml in dir and returns the error.
func parseErr(t *testing.T, dir, src string) string {
	t.Helper()
	_, err := Parse([]byte(src), filepath.Join(dir, "x.toml"))
	if err == nil {
		t.Fatalf("parsed:\n%s", src)
	}
	return strings.TrimPrefix(err.Error(), filepath.Join(dir, "x.toml"))
}

const backbone = configtest.Backbone

func TestMRT(t *testing.T) {
	dir := t.TempDir()
	// Only existence is checked here; the content is never read.
	if err := os.WriteFile(filepath.Join(dir, "rib.mrt.gz"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	src := backbone + `
  [[backbone.mrt]]
  path = "rib.mrt.gz"
  peer_as = 4200000000

  [[backbone.mrt]]
  path = "` + filepath.Join(dir, "rib.mrt.gz") + `"
  peer_address = "2001:db8::7"
`
	c, err := Parse([]byte(src), filepath.Join(dir, "x.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []MRTSource{
		{Path: filepath.Join(dir, "rib.mrt.gz"), PeerAS: 4200000000},
		{Path: filepath.Join(dir, "rib.mrt.gz"), PeerAddress: netip.MustParseAddr("2001:db8::7")},
	}
	if got := c.Backbones[0].MRT; !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}

	tests := []struct{ mrt, want string }{
		{`path = "missing.mrt"` + "\npeer_as = 1", `:8: backbone "uunet": mrt "missing.mrt" not found (resolved to ` + filepath.Join(dir, "missing.mrt") + `); fix the path or remove the entry`},
		{`path = "."` + "\npeer_as = 1", `:8: backbone "uunet": mrt "." is a directory`},
		{`path = ""` + "\npeer_as = 1", `:8: backbone "uunet": mrt path is empty`},
		{`peer_as = 1`, `:7: backbone "uunet": mrt #1: path is missing`},
		{`path = "rib.mrt.gz"` + "\npeer_as = 4294967296", `:9: backbone "uunet": mrt #1: peer_as = 4294967296 is out of range; use 1 to 4294967295`},
		{`path = "rib.mrt.gz"` + "\npeer_address = \"2001:db8::7%eth0\"", `:9: backbone "uunet": mrt #1: peer_address "2001:db8::7%eth0" has a zone; write "2001:db8::7"`},
	}
	for _, tt := range tests {
		got := parseErr(t, dir, backbone+"\n[[backbone.mrt]]\n"+tt.mrt+"\n")
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s:\ngot  %s\nwant %s", tt.mrt, got, tt.want)
		}
	}
}

// TestMessages checks errors that the broken corpus does not.
func TestMessages(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ src, want string }{
		{"", `: no [[backbone]] is configured`},
		{backbone + "gateway_v4 = 1", `:6:1: invalid TOML: Key 'backbone.gateway_v4' has already been defined`},
		{backbone + `gateway_v6 = "fe80::1%eth1"`, `:6: backbone "uunet": gateway_v6 "fe80::1%eth1" has a zone; write "fe80::1"`},
		{backbone + `gateway_v6 = "ff02::1"`, `:6: backbone "uunet": gateway_v6 "ff02::1" is not a unicast address`},
		{backbone + `static = ["::ffff:198.51.100.0/120"]`, `:6: backbone "uunet": static prefix "::ffff:198.51.100.0/120" is an IPv4-mapped IPv6 prefix; write 198.51.100.0/24`},
		{backbone + `static = ["198.51.100.0/24", "198.51.100.0/24"]`, `:6: backbone "uunet": static lists 198.51.100.0/24 twice (first at line 6); remove one`},
		{backbone + `static = "198.51.100.0/24"`, `:6: backbone "uunet": static must be an array, not the string`},
		{backbone + `static = [1]`, `:6: backbone "uunet": static must hold prefix strings`},
		{backbone + "[backbone.extra]\nx = 1", `:6:1: backbone "uunet": unknown table "extra"; remove it`},
		{backbone + "\"quoted key\" = 1", `:6:1: backbone "uunet": unknown key "quoted key"; remove it`},
		{backbone + "[[forwarder]]\nqueues = 1", `:6: forwarder must be one table; write [forwarder] with single brackets`},
		{backbone + "[[backbones]]", `:6:1: unknown table "backbones" (did you mean "backbone"?)`},
		{backbone + "[bogus]", `:6:1: unknown table "bogus"; the tables are forwarder, backbone, customer, probes, optimizer, api, log, state, bgp, announce`},
		{backbone + "[api]\nread_token = \"0123456789abcdef01\"", `:7: api: read_token opens the API's reads only; set token too (for pins and reload), or drop read_token`},
		{backbone + "[api]\ntoken = \"0123456789abcdef01\"\ntoken_file = \"x\"", `:8: api: token and token_file are both set; keep one`},
		{backbone + "[state]\ndir = \"var/lib\"", `:7: state: dir "var/lib" is not an absolute path; write one like "/var/lib/pnapd", or "" to keep no state`},
		{backbone + "[log]\nlevel = \"verbose\"", `:7: log: level = "verbose" is not allowed; use one of "debug", "info", "warn", "error"`},
		{backbone + "[probes]\n  Interval = \"1s\"", `:7:3: probes: unknown key "Interval" (did you mean "interval"?)`},
		{"[[customer]]\nname = \"a\"\ninterface = \"eth0\"\nrouts = []\n" + backbone, `:4:1: customer "a": unknown key "routs" (did you mean "routes"?)`},
		{backbone + "[[customer]]\ninterface = \"eth2\"", `:6: customer #1: name is missing`},
		{backbone + "[[customer]]\nname = \"a\"\ninterface = \"eth2\"\n[[customer]]\nname = \"a\"\ninterface = \"eth3\"", `:10: customer name "a" is used twice (first at line 7)`},
		{backbone + "[[customer]]\nname = \"a\"\ninterface = \"eth2\"\naddress_v4 = \"198.18.0.1/33\"", `:9: customer "a": address_v4 "198.18.0.1/33" is not a prefix`},
		{backbone + "[[customer]]\nname = \"a\"\ninterface = \"eth2\"\nnext_hop_v6 = \"198.18.0.2\"", `:9: customer "a": next_hop_v6 "198.18.0.2" is an IPv4 address; move it to next_hop_v4`},
		{backbone + "[[customer]]\nname = \"a\"\ninterface = \"eth/2\"", `:8: customer "a": interface "eth/2" is not a valid Linux interface name`},
		{backbone + "[forwarder]\ncpus = [-1]", `:7: forwarder: cpus value -1 is out of range; use 0 or more`},
		{backbone + "[forwarder]\nmtu = 9001", `:7: forwarder: mtu = 9001 is out of range; use 576 to 9000`},
		{backbone + "[probes]\ninterval = 10", `:7: probes: interval must be a duration string like "10s", not an integer`},
		{backbone + "[probes]\nenabled = \"yes\"", `:7: probes: enabled must be true or false, not the string "yes"`},
		{backbone + "[probes]\nactive = 0", `:7: probes: active must be true or false, not an integer`},
		{backbone + "[api]\nlisten = \"bad host:80\"", `:7: api: listen "bad host:80" has host "bad host", which is neither`},
		{backbone + "[api]\nlisten = \"127.0.0.1:0\"", `:7: api: listen "127.0.0.1:0" has port "0"`},
		{backbone + "[api]\nlisten = \"0.0.0.0:9180\"", `:7: api: listen "0.0.0.0:9180" is reachable from other hosts; set token`},
		{backbone + "[api]\nlisten = \"192.0.2.9:9180\"\ntoken = \"short\"", `:8: api: token is 5 characters; use at least 16`},
		{backbone + "[api]\nlisten = \"unix:api.sock\"", `:7: api: listen "unix:api.sock": a unix socket needs an absolute path`},
		// Keys written after a sub-table's header belong to the sub-table.
		{backbone + "[[backbone.route_file]]\npath = \"x\"\nstatic = []", `:8:1: backbone "uunet": route_file #1: unknown key "static"; it is a [[backbone]] key: move it above the [[backbone.route_file]] header`},
		{backbone + "mtu = 1500", `:6:1: backbone "uunet": unknown key "mtu"; it is a [forwarder] key: move it there`},
		{"queues = 2\n" + backbone, `:1:1: unknown key "queues"; it is a [forwarder] key: move it there`},
		// A value error elsewhere does not hide the name in later messages.
		{"[forwarder]\nqueues = 0\n" + backbone + "gatewy_v6 = \"2001:db8::1\"", `:8:1: backbone "uunet": unknown key "gatewy_v6" (did you mean "gateway_v6"?)`},
	}
	for _, tt := range tests {
		got := parseErr(t, dir, tt.src)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s\ngot  %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

func TestAccepted(t *testing.T) {
	tests := []string{
		backbone + `gateway_v6 = "fe80::1"`, // a link-local gateway: the interface is implied
		backbone + `static = []`,
		backbone + "cost = 3\ncommit_mbps = 100\ncapacity_mbps = 100",
		backbone + "[api]\nlisten = \":9180\"\ntoken = \"0123456789abcdef\"",
		backbone + "[api]\nlisten = \"[::1]:9180\"",
		backbone + "[api]\nlisten = \"unix:/run/pnapd/api.sock\"\nmetrics_top_prefixes = 0",
		backbone + "[api]\nlisten = \"localhost:9180\"",
		// Dotted keys and inline tables are the same tables.
		"forwarder.queues = 4\n" + backbone,
		"forwarder = { queues = 4 }\n" + backbone,
		"backbone = [{ name = \"a\", interface = \"eth1\", gateway_v4 = \"192.0.2.1\", static = [\"192.0.2.0/24\"] }]",
	}
	for _, src := range tests {
		if _, err := Parse([]byte(src), "x.toml"); err != nil {
			t.Errorf("%s\n%v", src, err)
		}
	}
}

func TestDuration(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d.Duration() != 90*time.Second {
		t.Errorf("got %v, %v", d, err)
	}
	if b, _ := d.MarshalText(); string(b) != "1m30s" {
		t.Errorf("MarshalText = %q", b)
	}
	for _, s := range []string{"", "10", "-1s", "0s", "1 s"} {
		if err := d.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"name", "interface", "gateway_v4", "gateway_v6", "preference", "cost", "static", "route_file", "mrt"}
	tests := map[string]string{
		"gatway_v4":   "gateway_v4",
		"Interface":   "interface",
		"routefile":   "route_file",
		"route_files": "route_file",
		"mrts":        "mrt",
		"nmae":        "name",
		"colour":      "",
		"x":           "",
	}
	for key, want := range tests {
		if got := suggest(key, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", key, got, want)
		}
	}
}

// addDocuments seeds a fuzz corpus with the example configurations and the
// broken documents.
func addDocuments(f *testing.F) {
	files, _ := filepath.Glob("examples/*.toml")
	more, _ := filepath.Glob("testdata/broken/*.toml")
	for _, file := range append(files, more...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
}

// FuzzParse checks that any document gives a config or an *Error of one
// line, without panicking.
func FuzzParse(f *testing.F) {
	addDocuments(f)
	f.Fuzz(func(t *testing.T, src string) {
		_, err := Parse([]byte(src), "examples/fuzz.toml")
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) || strings.ContainsAny(err.Error(), "\r\n") {
			t.Errorf("%T %q", err, err)
		}
	})
}

// TestFullDocumentsEveryKey keeps examples/full.toml complete: every key
// the decoder asks for appears in it, set or commented out.
func TestFullDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("examples/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		t.Fatal(err)
	}
	d := &decoder{file: "full.toml", dir: "examples", at: scanPositions(string(data))}
	d.config(d.newTable("", "", doc))
	seen := map[string]bool{}
	for _, tbl := range d.tables {
		for _, k := range tbl.known {
			key := header(child(tbl.path, k))
			if seen[key] {
				continue
			}
			seen[key] = true
			written := regexp.MustCompile(`(?m)^[ \t]*(# )?(\[\[?([a-z_]+\.)*)?` + regexp.QuoteMeta(k) + `(\]\]?| =)`)
			if !written.Match(data) {
				t.Errorf("full.toml does not document %s", key)
			}
		}
	}
	if len(seen) < 50 {
		t.Errorf("only %d keys seen", len(seen))
	}
}

// token_file keeps the token out of the configuration: read relative to
// its directory, trimmed, and refused while every user may read it.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "api-token")
	if err := os.WriteFile(secret, []byte("  0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := configtest.TwoBackbones + "\n[api]\nlisten = \"0.0.0.0:9180\"\ntoken_file = \"api-token\"\n"
	if _, err := Parse([]byte(doc), filepath.Join(dir, "x.toml")); err == nil || !strings.Contains(err.Error(), "readable by every user") {
		t.Fatalf("a world-readable token file: %v", err)
	}
	if err := os.Chmod(secret, 0o640); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(doc), filepath.Join(dir, "x.toml"))
	if err != nil || c.API.Token != "0123456789abcdef0123" {
		t.Fatalf("token from the file: %q, %v", c.API.Token, err)
	}
}
