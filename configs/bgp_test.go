package configs

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// twoSessions is a backbone learning over BGP and an announce session, all
// of whose keys are written, and a backbone without BGP.
const twoSessions = `
[bgp]
local_as = 4200000001
router_id = "192.0.2.254"
listen = "[::]:1179"

[[backbone]]
name = "a"
interface = "eth1"
gateway_v4 = "192.0.2.1"
gateway_v6 = "2001:db8::1"

  [backbone.bgp]
  neighbors = ["192.0.2.1", "fe80::1"]
  peer_as = 64500
  password_file = "secret"
  hold_time = "30s"
  passive = true
  max_prefixes_v4 = 1000
  max_prefixes_v6 = 0
  max_prefixes_action = "teardown"
  graceful_restart = false
  allow_default = true
  allow_martians = true
  max_length_v4 = 25
  max_length_v6 = 64

[[backbone]]
name = "b"
interface = "eth2"
gateway_v6 = "2001:db8:b::1"

[[announce]]
name = "rr1"
neighbor = "2001:db8:ff::1"
peer_as = 64501
password = "p4ss"
hold_time = "9s"
passive = true
local_pref = 0
communities = ["64500:100", "0:0", "65535:65281"]
all_selected = true
next_hop_self = true
`

func TestBGP(t *testing.T) {
	dir := t.TempDir()
	// One line ending is the file's, as echo writes it.
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(twoSessions), filepath.Join(dir, "x.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (BGP{LocalAS: 4200000001, RouterID: netip.MustParseAddr("192.0.2.254"), Listen: netip.MustParseAddrPort("[::]:1179")}); c.BGP != want {
		t.Errorf("bgp = %+v, want %+v", c.BGP, want)
	}
	wantBB := &BackboneBGP{
		Neighbors:     []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("fe80::1")},
		PeerAS:        64500,
		Password:      "s3cr3t",
		PasswordFile:  filepath.Join(dir, "secret"),
		HoldTime:      Duration(30 * time.Second),
		Passive:       true,
		MaxPrefixesV4: 1000, MaxPrefixesAction: MaxPrefixesTeardown,
		AllowDefault: true, AllowMartians: true, MaxLengthV4: 25, MaxLengthV6: 64,
	}
	if got := c.Backbones[0].BGP; !reflect.DeepEqual(got, wantBB) {
		t.Errorf("backbone a: bgp = %+v\nwant %+v", got, wantBB)
	}
	if c.Backbones[1].BGP != nil {
		t.Errorf("backbone b: bgp = %+v, want nil", c.Backbones[1].BGP)
	}
	wantAnn := []Announce{{
		Name: "rr1", Neighbor: netip.MustParseAddr("2001:db8:ff::1"), PeerAS: 64501,
		Password: "p4ss", HoldTime: Duration(9 * time.Second), Passive: true,
		Communities: []Community{64500<<16 | 100, 0, 0xffffff01},
		AllSelected: true, NextHopSelf: true,
	}}
	if !reflect.DeepEqual(c.Announces, wantAnn) {
		t.Errorf("announces = %+v\nwant %+v", c.Announces, wantAnn)
	}
	if got := c.Announces[0].Communities[2].String(); got != "65535:65281" {
		t.Errorf("community String = %q", got)
	}
	// Written zero and false are choices the daemon must tell from
	// defaults.
	for _, key := range []string{"announce[0].local_pref", "backbone[0].bgp.graceful_restart", "backbone[0].bgp.max_prefixes_v6"} {
		if _, written := c.Line(key); !written {
			t.Errorf("%s is not written", key)
		}
	}
	if !c.UsesBGP() {
		t.Error("UsesBGP is false")
	}
}

// TestBGPDefaults: what is not written is zero, for the BGP speaker's
// defaults; a [bgp] without sessions needs nothing.
func TestBGPDefaults(t *testing.T) {
	src := backbone + `
[backbone.bgp]
neighbors = ["192.0.2.1"]
peer_as = 64500

[bgp]
local_as = 64496
router_id = "192.0.2.254"
listen = ""

[[announce]]
name = "rr1"
neighbor = "198.51.100.1"
`
	c, err := Parse([]byte(src), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if want := (&BackboneBGP{Neighbors: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, PeerAS: 64500}); !reflect.DeepEqual(c.Backbones[0].BGP, want) {
		t.Errorf("bgp = %+v, want %+v", c.Backbones[0].BGP, want)
	}
	if c.BGP.Listen.IsValid() {
		t.Errorf("listen = %v, want none", c.BGP.Listen)
	}
	if want := []Announce{{Name: "rr1", Neighbor: netip.MustParseAddr("198.51.100.1")}}; !reflect.DeepEqual(c.Announces, want) {
		t.Errorf("announces = %+v, want %+v", c.Announces, want)
	}

	c, err = Parse([]byte(backbone+"[bgp]\nlisten = \"0.0.0.0:179\""), "x.toml")
	if err != nil || c.UsesBGP() {
		t.Errorf("[bgp] alone: %v, UsesBGP %v", err, c != nil && c.UsesBGP())
	}
}

// TestBGPMessages checks BGP errors that the broken corpus does not.
func TestBGPMessages(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "two-lines"), []byte("a\nb\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "crlf"), []byte("p\r\n"), 0o600)
	bgp := "[bgp]\nlocal_as = 64496\nrouter_id = \"192.0.2.254\"\n" + backbone + "[backbone.bgp]\npeer_as = 64500\n"
	ann := "[bgp]\nlocal_as = 64496\nrouter_id = \"192.0.2.254\"\n" + backbone + "[[announce]]\nname = \"rr\"\n"
	tests := []struct{ src, want string }{
		{backbone + "[bgp]\nlocal_as = 0", `:7: bgp: local_as = 0 is out of range; use 1 to 4294967295`},
		{backbone + "[bgp]\nlocal_as = 4294967296", `:7: bgp: local_as = 4294967296 is out of range`},
		{backbone + "[bgp]\nrouter_id = \"0.0.0.0\"", `:7: bgp: router_id "0.0.0.0" is zero`},
		{backbone + "[bgp]\nlisten = \"0.0.0.0:0\"", `:7: bgp: listen "0.0.0.0:0" has port 0`},
		{backbone + "[bgp]\nlisten = \"[fe80::1%eth0]:179\"", `:7: bgp: listen "[fe80::1%eth0]:179" has a zone`},
		{backbone + "[bgp]\nlisten = \"[::ffff:192.0.2.1]:179\"", `:7: bgp: listen "[::ffff:192.0.2.1]:179" is an IPv4-mapped IPv6 address; write "192.0.2.1:179"`},
		{backbone + "[bgp]\nlisten = 179", `:7: bgp: listen must be a string, not an integer`},
		{backbone + "[[bgp]]\nlocal_as = 1", `:6: bgp must be one table; write [bgp] with single brackets`},
		{backbone + "[[backbone.bgp]]\npeer_as = 1", `:6: backbone "uunet": bgp must be one table; write [backbone.bgp] with single brackets`},
		{bgp + "neighbors = \"192.0.2.1\"", `:11: backbone "uunet": bgp: neighbors must be an array, not the string "192.0.2.1"; write neighbors = ["192.0.2.1"]`},
		{bgp + "neighbors = []", `:11: backbone "uunet": bgp: neighbors is empty`},
		{bgp + "neighbors = [1]", `:11: backbone "uunet": bgp: neighbors must hold address strings`},
		{bgp + "neighbors = [\"192.0.2.1\", \"192.0.2.1\"]", `:11: backbone "uunet": bgp: neighbors lists 192.0.2.1 twice`},
		{bgp + "neighbors = [\"192.0.2.1/32\"]", `:11: backbone "uunet": bgp: neighbor "192.0.2.1/32" is not an IP address`},
		{bgp + "neighbors = [\"::ffff:192.0.2.1\"]", `:11: backbone "uunet": bgp: neighbor "::ffff:192.0.2.1" is an IPv4-mapped IPv6 address; write "192.0.2.1"`},
		{bgp + "neighbors = [\"127.0.0.1\"]", `:11: backbone "uunet": bgp: neighbor "127.0.0.1" is not a router's address`},
		{bgp + "neighbors = [\"192.0.2.1\"]\nmax_prefixes_v4 = \"1000\"", `:12: backbone "uunet": bgp: max_prefixes_v4 must be an integer, not the string "1000"; write max_prefixes_v4 = 1000 without quotes`},
		{bgp + "neighbors = [\"192.0.2.1\"]\nmax_prefixes_action = \"drop\"", `:12: backbone "uunet": bgp: max_prefixes_action = "drop" is not allowed; use one of "stop", "teardown"`},
		{bgp + "neighbors = [\"192.0.2.1\"]\nhold_time = 90", `:12: backbone "uunet": bgp: hold_time must be a duration string like "10s", not an integer`},
		{bgp + "neighbors = [\"192.0.2.1\"]\ngraceful_restart = \"true\"", `:12: backbone "uunet": bgp: graceful_restart must be true or false, not the string "true"`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npassword = \"\"", `:12: backbone "uunet": bgp: password is empty`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npassword = \"" + strings.Repeat("x", 81) + "\"", `:12: backbone "uunet": bgp: password is 81 bytes; a TCP MD5 key has at most 80`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npassword_file = \"\"", `:12: backbone "uunet": bgp: password_file is empty; name the file`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npassword_file = \"empty\"", `:12: backbone "uunet": bgp: password_file "empty" is empty`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npassword_file = \"two-lines\"", `:12: backbone "uunet": bgp: password_file "two-lines" holds more than one line`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npassword_file = \".\"", `:12: backbone "uunet": bgp: password_file "." is a directory`},
		{bgp + "neighbors = [\"192.0.2.1\"]\npasword = \"x\"", `:12:1: backbone "uunet": bgp: unknown key "pasword" (did you mean "password"?)`},
		{ann, `:9: announce "rr": neighbor is missing`},
		{ann + "neighbor = \"fe80::1\"", `:11: announce "rr": neighbor "fe80::1" is link-local, which needs an interface`},
		{ann + "neighbor = \"192.0.2.9\"\npeer_as = 0", `:12: announce "rr": peer_as = 0 is out of range; use 1 to 4294967295`},
		{ann + "neighbor = \"192.0.2.9\"\nlocal_pref = -1", `:12: announce "rr": local_pref = -1 is out of range; use 0 to 4294967295`},
		{ann + "neighbor = \"192.0.2.9\"\ncommunities = \"64500:1\"", `:12: announce "rr": communities must be an array`},
		{ann + "neighbor = \"192.0.2.9\"\ncommunities = [64500]", `:12: announce "rr": communities must hold strings like "64500:100", not an integer`},
		{ann + "neighbor = \"192.0.2.9\"\ncommunities = [\"64500\"]", `:12: announce "rr": community "64500" is not ASN:VALUE`},
		{ann + "neighbor = \"192.0.2.9\"\ncommunities = [\"a:b\"]", `:12: announce "rr": community "a:b" is not ASN:VALUE with two decimal numbers`},
		{ann + "neighbor = \"192.0.2.9\"\ncommunities = [\"64500:65536\"]", `:12: announce "rr": community "64500:65536": value 65536 is out of range; use 0 to 65535`},
		{ann + "neighbor = \"192.0.2.9\"\ncommunities = [\"1:1\", \"1:1\"]", `:12: announce "rr": communities lists 1:1 twice`},
		{ann + "neighbor = \"192.0.2.9\"\nall_selected = 1", `:12: announce "rr": all_selected must be true or false, not an integer`},
		{ann + "neighbor = \"192.0.2.9\"\nlocal_preference = 1", `:12:1: announce "rr": unknown key "local_preference"; remove it`},
		{ann + "neighbor = \"192.0.2.9\"\nname = \"x\"", `:12:1: invalid TOML`},
		// Without [bgp], the missing keys are asked for at the session.
		{backbone + "[[announce]]\nname = \"rr\"\nneighbor = \"192.0.2.9\"", `:8: bgp: local_as is missing; [[announce]] "rr" (line 8) needs pnapd's AS number`},
		{"[bgp]\nlocal_as = 1\n" + backbone + "[[announce]]\nname = \"rr\"\nneighbor = \"192.0.2.9\"", `:1: bgp: router_id is missing; [[announce]] "rr" (line 10) needs a BGP identifier`},
		// A link-local neighbor is one per interface.
		{bgp + "neighbors = [\"fe80::1\"]", `:11: backbone "uunet": bgp: neighbor fe80::1 is IPv6, but the backbone has no gateway_v6`},
	}
	for _, tt := range tests {
		got := parseErr(t, dir, tt.src)
		if !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s\ngot  %s\nwant %s", tt.src, got, tt.want)
		}
	}

	c, err := Parse([]byte(bgp+"neighbors = [\"192.0.2.1\"]\npassword_file = \"crlf\""), filepath.Join(dir, "x.toml"))
	if err != nil || c.Backbones[0].BGP.Password != "p" {
		t.Errorf("a CRLF line ending: %v, %+v", err, c)
	}
}

// TestBGPLinkLocal: fe80::1 on two interfaces is two routers.
func TestBGPLinkLocal(t *testing.T) {
	src := `
[bgp]
local_as = 64496
router_id = "192.0.2.254"
[[backbone]]
name = "a"
interface = "eth1"
gateway_v6 = "fe80::1"
bgp = { neighbors = ["fe80::1"], peer_as = 64500 }
[[backbone]]
name = "b"
interface = "eth2"
gateway_v6 = "fe80::1"
bgp = { neighbors = ["fe80::1"], peer_as = 64501 }
`
	if _, err := Parse([]byte(src), "x.toml"); err != nil {
		t.Error(err)
	}
}

// TestBGPExample: the worked example reads as its comments say.
func TestBGPExample(t *testing.T) {
	c, err := Load("examples/bgp.toml")
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Backbones[0].BGP, c.Backbones[1].BGP
	if len(a.Neighbors) != 2 || a.PeerAS != 64501 || a.Passive || a.MaxPrefixesAction != "" ||
		len(b.Neighbors) != 2 || b.PeerAS != 64502 || !b.Passive || b.MaxPrefixesAction != MaxPrefixesTeardown || !b.AllowDefault {
		t.Errorf("transit-a %+v\ntransit-b %+v", a, b)
	}
	ann := c.Announces
	if len(ann) != 1 || ann[0].PeerAS != 0 || ann[0].LocalPref != 200 || ann[0].Neighbor != c.Customers[0].NextHopV4 ||
		!reflect.DeepEqual(ann[0].Communities, []Community{64496<<16 | 100, 0xffffff01}) {
		t.Errorf("announce %+v", ann)
	}
}
