package daemon

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/configs"
)

func TestImportPolicyAccept(t *testing.T) {
	def := importPolicy{MaxLen4: defaultMaxLen4, MaxLen6: defaultMaxLen6}
	lab := importPolicy{AllowDefault: true, AllowMartians: true, MaxLen4: 32, MaxLen6: 128}
	tests := []struct {
		p      importPolicy
		pfx    string
		ok     bool
		reason string
	}{
		{def, "8.8.8.0/24", true, ""},
		{def, "2a00:1450::/32", true, ""},
		{def, "2a00:1450:4001::/48", true, ""},
		{def, "0.0.0.0/0", false, "default route"},
		{def, "::/0", false, "default route"},
		{def, "8.8.8.0/25", false, "longer than /24"},
		{def, "2a00:1450:4001:800::/56", false, "longer than /48"},
		{def, "10.1.0.0/16", false, "martian, inside 10.0.0.0/8"},
		{def, "10.0.0.0/8", false, "martian, inside 10.0.0.0/8"},
		{def, "198.18.16.0/20", false, "martian, inside 198.18.0.0/15"},
		{def, "224.0.0.0/4", false, "martian, inside 224.0.0.0/4"},
		{def, "2001:db8:a0::/48", false, "martian, inside 2001:db8::/32"},
		{def, "fd00::/8", false, "martian, inside fc00::/7"},
		{def, "::ffff:0:0/96", false, "longer than /48"}, // length first: it is a /96
		// Covering a martian range is not being inside one.
		{def, "8.0.0.0/6", true, ""},
		{def, "0.0.0.0/1", true, ""},
		{def, "172.32.0.0/11", true, ""}, // next to 172.16.0.0/12
		{def, "64:ff9b::/32", true, ""},  // not the local-use NAT64 /48
		{def, "3ffe::/16", true, ""},     // before 3fff::/20
		{def, "10.0.0.1/8", false, "not a canonical prefix"},
		{def, "", false, "not a canonical prefix"},
		// The lab's policy, with allow_* set and the lengths at their most.
		{lab, "0.0.0.0/0", true, ""},
		{lab, "198.18.16.0/20", true, ""},
		{lab, "192.0.2.1/32", true, ""},
		{lab, "2001:2:0:10::/128", true, ""},
		// Allowing the default route allows only it.
		{importPolicy{AllowDefault: true, MaxLen4: 24, MaxLen6: 48}, "0.0.0.0/8", false, "martian, inside 0.0.0.0/8"},
	}
	for _, tt := range tests {
		var pfx netip.Prefix
		if tt.pfx != "" {
			pfx = netip.MustParsePrefix(tt.pfx)
		}
		ok, reason := tt.p.accept(pfx)
		if ok != tt.ok || reason != tt.reason {
			t.Errorf("%+v.accept(%s) = %v, %q; want %v, %q", tt.p, tt.pfx, ok, reason, tt.ok, tt.reason)
		}
	}
}

// Every martian range is canonical, and accepting it is refused by
// itself, not by a neighbour.
func TestMartians(t *testing.T) {
	p := importPolicy{MaxLen4: 32, MaxLen6: 128}
	for _, m := range martians {
		if m != m.Masked() {
			t.Errorf("%s is not canonical", m)
		}
		if ok, reason := p.accept(m); ok || reason != "martian, inside "+m.String() {
			t.Errorf("accept(%s) = %v, %q", m, ok, reason)
		}
	}
}

const bgpSessions = `
[bgp]
local_as = 64496
router_id = "192.0.2.254"
listen = "[::]:179"

[[backbone]]
name = "a"
interface = "eth1"
gateway_v4 = "192.0.2.1"
gateway_v6 = "fe80::1"

[[backbone]]
name = "b"
interface = "eth2"
gateway_v4 = "192.0.2.5"
`

// bgpPlanOf translates the BGP sessions of src.
func bgpPlanOf(t *testing.T, src string) ([]bgpPeerPlan, []announcePlan, error) {
	t.Helper()
	cfg, err := configs.Parse([]byte(src), filepath.Join(t.TempDir(), "x.toml"))
	if err != nil {
		t.Fatalf("configs refused it: %v", err)
	}
	return bgpPlan(cfg)
}

func TestBGPPlanDefaults(t *testing.T) {
	src := bgpSessions + `
  [backbone.bgp]
  neighbors = ["192.0.2.5"]
  peer_as = 64502

[[announce]]
name = "core"
neighbor = "198.51.100.1"
`
	peers, anns, err := bgpPlanOf(t, src)
	if err != nil {
		t.Fatal(err)
	}
	want := []bgpPeerPlan{{
		Backbone: 1, Neighbor: netip.MustParseAddr("192.0.2.5"), PeerAS: 64502,
		HoldTime: 90 * time.Second, GracefulRestart: true,
		Policy: importPolicy{MaxLen4: 24, MaxLen6: 48},
	}}
	if !reflect.DeepEqual(peers, want) {
		t.Errorf("peers %+v\nwant  %+v", peers, want)
	}
	wantAnn := []announcePlan{{Name: "core", Neighbor: netip.MustParseAddr("198.51.100.1"), PeerAS: 64496, HoldTime: 90 * time.Second, LocalPref: 100}}
	if !reflect.DeepEqual(anns, wantAnn) {
		t.Errorf("announces %+v\nwant      %+v", anns, wantAnn)
	}

	peers, anns, err = bgpPlanOf(t, bgpSessions)
	if peers != nil || anns != nil || err != nil {
		t.Errorf("no sessions: %+v, %+v, %v", peers, anns, err)
	}
}

// What the file writes replaces the default, zero and false included; a
// backbone's settings go to each of its neighbors.
func TestBGPPlanWritten(t *testing.T) {
	src := bgpSessions[:strings.Index(bgpSessions, "\n[[backbone]]\nname = \"b\"")] + `
  [backbone.bgp]
  neighbors = ["192.0.2.1", "fe80::1"]
  peer_as = 64501
  password = "s3cret"
  hold_time = "30s"
  passive = true
  max_prefixes_v4 = 1000
  max_prefixes_v6 = 10
  max_prefixes_action = "teardown"
  graceful_restart = false
  allow_default = true
  allow_martians = true
  max_length_v4 = 32
  max_length_v6 = 128

[[announce]]
name = "core"
neighbor = "2001:db8::2"
peer_as = 64497
password = "other"
hold_time = "9s"
passive = true
local_pref = 0
communities = ["64496:100", "65535:65281"]
all_selected = true
next_hop_self = true
`
	peers, anns, err := bgpPlanOf(t, src)
	if err != nil {
		t.Fatal(err)
	}
	peer := bgpPeerPlan{
		PeerAS: 64501, HoldTime: 30 * time.Second, Password: "s3cret", Passive: true,
		MaxPrefixes: [2]int{1000, 10}, Teardown: true,
		Policy:        importPolicy{AllowDefault: true, AllowMartians: true, MaxLen4: 32, MaxLen6: 128},
		OwnFamilyOnly: true, // a session per family
	}
	v4, ll := peer, peer
	v4.Neighbor = netip.MustParseAddr("192.0.2.1")
	ll.Neighbor = netip.MustParseAddr("fe80::1%eth1") // ready to dial over the backbone's interface
	if want := []bgpPeerPlan{v4, ll}; !reflect.DeepEqual(peers, want) {
		t.Errorf("peers %+v\nwant  %+v", peers, want)
	}
	wantAnn := []announcePlan{{
		Name: "core", Neighbor: netip.MustParseAddr("2001:db8::2"), PeerAS: 64497,
		HoldTime: 9 * time.Second, Password: "other", Passive: true, LocalPref: 0,
		Communities: []uint32{64496<<16 | 100, 0xffffff01}, AllSelected: true, NextHopSelf: true,
	}}
	if !reflect.DeepEqual(anns, wantAnn) {
		t.Errorf("announces %+v\nwant      %+v", anns, wantAnn)
	}
}

// The speaker's rules come back at the line that breaks them.
func TestBGPPlanMessages(t *testing.T) {
	bb := bgpSessions + "\n  [backbone.bgp]\n  neighbors = [\"192.0.2.5\"]\n  peer_as = 64502\n"
	ann := bgpSessions + "\n[[announce]]\nname = \"core\"\nneighbor = \"198.51.100.1\"\n"
	tests := []struct{ src, want string }{
		{bb + "  hold_time = \"2s\"", `:21: backbone "b": bgp: hold_time = "2s" is out of range; use 3s to 65535s`},
		{bb + "  hold_time = \"19h\"", `:21: backbone "b": bgp: hold_time = "19h0m0s" is out of range`},
		{bb + "  hold_time = \"4500ms\"", `:21: backbone "b": bgp: hold_time = "4.5s" is not a whole number of seconds, which BGP carries; use "5s"`},
		{bb + "  max_prefixes_v6 = -1", `:21: backbone "b": bgp: max_prefixes_v6 = -1 is out of range; use 0 or more`},
		{bb + "  max_length_v4 = 33", `:21: backbone "b": bgp: max_length_v4 = 33 is out of range; use 1 to 32`},
		{bb + "  max_length_v6 = 0", `:21: backbone "b": bgp: max_length_v6 = 0 is out of range; use 1 to 128`},
		{ann + "hold_time = \"1s\"", `:21: announce "core": hold_time = "1s" is out of range`},
	}
	for _, tt := range tests {
		_, _, err := bgpPlanOf(t, tt.src)
		var e *configs.Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\ngot  %v\nwant %s", tt.src, err, tt.want)
		}
	}
}

// The worked example's sessions, as its comments describe them.
func TestBGPPlanExample(t *testing.T) {
	cfg, err := configs.Load(filepath.Join("..", "configs", "examples", "bgp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	peers, anns, err := bgpPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 4 || peers[0].Backbone != 0 || peers[3].Backbone != 1 || !peers[2].Teardown || peers[0].Teardown ||
		peers[2].HoldTime != 30*time.Second || peers[0].HoldTime != defaultHoldTime || !peers[0].GracefulRestart ||
		peers[0].Policy.AllowMartians || !peers[2].Policy.AllowDefault {
		t.Errorf("peers %+v", peers)
	}
	if len(anns) != 1 || anns[0].PeerAS != cfg.BGP.LocalAS || anns[0].LocalPref != 200 {
		t.Errorf("announces %+v", anns)
	}
}
