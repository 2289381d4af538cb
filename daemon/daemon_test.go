package daemon

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/pnap-project/pnap/configs"
)

// A stage that fails leaves the stops of the stages before it, and only
// those; Run undoes them in reverse.
func TestStartStagesUnwindsOnFailure(t *testing.T) {
	var log []string
	ok := func(name string) stage {
		return stage{name, func(context.Context) (func() error, error) {
			log = append(log, "start "+name)
			return func() error { log = append(log, "stop "+name); return nil }, nil
		}}
	}
	boom := errors.New("boom")
	failing := stage{"c", func(context.Context) (func() error, error) { return nil, boom }}
	stops, err := startStages(context.Background(), []stage{ok("a"), ok("b"), failing, ok("d")})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	want := []string{"start a", "start b", "stop b", "stop a"}
	if !slices.Equal(log, want) {
		t.Fatalf("got %q, want %q", log, want)
	}
}

// A stop asked for during start-up ends it at the next stage boundary,
// without an error.
func TestStartStagesStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := 0
	st := stage{"x", func(context.Context) (func() error, error) {
		started++
		if started == 2 {
			cancel()
		}
		return func() error { return nil }, nil
	}}
	stops, err := startStages(ctx, []stage{st, st, st, st})
	if err != nil || len(stops) != 2 || started != 2 {
		t.Fatalf("err %v, %d stops, %d started; want nil, 2, 2", err, len(stops), started)
	}
}

func TestReloadable(t *testing.T) {
	parse := func(extra string) *configs.Config {
		cfg, err := configs.Parse([]byte(reloadBase+extra), "/etc/pnapd/pnapd.toml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cases := []struct {
		name   string
		extra  string // appended to the file
		edit   func(c *configs.Config)
		refuse string // "" when the change reloads
	}{
		{"nothing", "", func(*configs.Config) {}, ""},
		{"a default written out", "[probes]\ntcp_ports = [443, 80]\n[forwarder]\nframes = 512\n", func(*configs.Config) {}, ""},
		{"socket size", "[forwarder]\nframes = 1024\n", func(*configs.Config) {}, "[forwarder] sizes"},
		{"routes and cost", "", func(c *configs.Config) {
			c.Backbones[0].Static = append(c.Backbones[0].Static, netip.MustParsePrefix("198.51.100.0/24"))
			c.Backbones[0].Cost = 3
		}, ""},
		{"same customer routes, new slice", "", func(c *configs.Config) {
			c.Customers[0].Routes = slices.Clone(c.Customers[0].Routes)
		}, ""},
		{"customer route", "", func(c *configs.Config) {
			c.Customers[0].Routes = append(c.Customers[0].Routes, netip.MustParsePrefix("192.0.2.128/25"))
		}, `customer "cust" changed`},
		{"worker CPUs", "", func(c *configs.Config) { c.Forwarder.CPUs = []int{1} }, "[forwarder] changed"},
		{"probe ports and rate", "[probes]\ntcp_ports = [22]\nrate_per_backbone = 50\n[optimizer]\nhold_down = \"5m\"\n", func(*configs.Config) {}, ""},
		{"probe flow table", "[probes]\nflow_table = 1000\n", func(*configs.Config) {}, "[probes] flow_table changed"},
		{"optimizer off", "[optimizer]\nenabled = false\n", func(*configs.Config) {}, "[optimizer] enabled changed"},
		{"gateway", "", func(c *configs.Config) {
			c.Backbones[0].GatewayV4 = netip.MustParseAddr("203.0.113.9")
		}, "interface or gateway changed"},
		{"a backbone less", "", func(c *configs.Config) { c.Backbones = c.Backbones[:1] }, "number of backbones"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cur := parse(tc.extra)
			tc.edit(cur)
			err := reloadable(parse(""), cur)
			switch {
			case tc.refuse == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refuse != "" && (err == nil || !strings.Contains(err.Error(), tc.refuse)):
				t.Fatalf("err = %v, want one saying %q", err, tc.refuse)
			}
		})
	}
}

const reloadBase = `
[[backbone]]
name = "a"
interface = "eth1"
gateway_v4 = "203.0.113.1"
static = ["198.18.0.0/15"]

[[backbone]]
name = "b"
interface = "eth2"
gateway_v4 = "203.0.113.65"
static = ["198.18.0.0/15"]

[[customer]]
name = "cust"
interface = "eth0"
address_v4 = "192.0.2.1/26"
next_hop_v4 = "192.0.2.2"
routes = ["192.0.2.64/26"]
`
