package daemon

import (
	"log/slog"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/configs/configtest"
	"github.com/pnap-project/pnap/optimizer"
)

// parseOptions translates the configuration src, named x.toml in dir.
func parseOptions(t *testing.T, dir, src string) (plan, error) {
	t.Helper()
	cfg, err := configs.Parse([]byte(src), filepath.Join(dir, "x.toml"))
	if err != nil {
		t.Fatalf("configs refused it: %v", err)
	}
	return newPlan(cfg)
}

// The defaults of [probes] and [optimizer] are the components'; the
// document is the one configs' TestDefaults parses.
func TestCheckDefaultsFromComponents(t *testing.T) {
	o, err := parseOptions(t, t.TempDir(), configtest.TwoBackbones)
	if err != nil {
		t.Fatal(err)
	}
	p := o.probes
	if p.TopPrefixes != 1000 || p.Interval != 5*time.Second || p.TurnRounds != 3 || p.Timeout != 2*time.Second ||
		p.RatePerBackbone != 100 || !reflect.DeepEqual(p.TCPPorts, []int{443, 80}) || p.SampleRing != 4096 ||
		p.FlowTable != 65536 || p.Window != 30*time.Second || p.SourceV4.IsValid() || p.SourceV6.IsValid() {
		t.Errorf("probes %+v", p)
	}
	q := o.optimizer
	if q.Interval != time.Second || q.Statistic != optimizer.StatisticP50 || q.LossPenaltyMs != 100 ||
		q.MinImprovementMs != 5 || q.MinImprovementPct != 10 || q.MinSamples != 6 || q.HoldDown != 60*time.Second ||
		q.MaxOverrides != 10000 || q.FailureHold != 30*time.Second {
		t.Errorf("optimizer %+v", q)
	}
	if want := []optimizer.Backbone{{Name: "a"}, {Name: "b"}}; !reflect.DeepEqual(q.Backbones, want) {
		t.Errorf("backbones %+v, want %+v", q.Backbones, want)
	}
}

// What the file writes replaces the default, zero included.
func TestCheckWrittenValuesWin(t *testing.T) {
	src := backboneTOML + "cost = 2.5\ncommit_mbps = 100\n" +
		"[probes]\ntop_prefixes = 7\ntcp_ports = [8443]\nwindow = \"1m\"\ntraffic_sample_every = 1\n" +
		"[optimizer]\nloss_penalty_ms = 0\nmin_improvement_ms = 0\nstatistic = \"min\"\nmin_samples = 4\n"
	o, err := parseOptions(t, t.TempDir(), src)
	if err != nil {
		t.Fatal(err)
	}
	if p := o.probes; p.TopPrefixes != 7 || !reflect.DeepEqual(p.TCPPorts, []int{8443}) || p.Window != time.Minute || p.Interval != 5*time.Second {
		t.Errorf("probes %+v", p)
	}
	if o.sampler.TrafficEvery != 1 || o.probes.Traffic.SampleEvery != 1 {
		t.Errorf("traffic_sample_every = 1: the sampler takes 1 in %d, the ranking scales by %d", o.sampler.TrafficEvery, o.probes.Traffic.SampleEvery)
	}
	if o.probes.TurnRounds != 2 {
		t.Errorf("a prefix's turn at probing lasts %d rounds; want 2, for min_samples = 4", o.probes.TurnRounds)
	}
	q := o.optimizer
	if q.LossPenaltyMs != 0 || q.MinImprovementMs != 0 || q.MinImprovementPct != 10 || q.Statistic != optimizer.StatisticMin {
		t.Errorf("optimizer %+v", q)
	}
	if want := []optimizer.Backbone{{Name: "uunet", Cost: 2.5, CommitMbps: 100}}; !reflect.DeepEqual(q.Backbones, want) {
		t.Errorf("backbones %+v, want %+v", q.Backbones, want)
	}
}

const backboneTOML = configtest.Backbone

// Moved from configs' TestMessages with the rules they check.
func TestCheckComponentMessages(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ src, want string }{
		{backboneTOML + "[probes]\ntcp_ports = []", `:7: probes: tcp_ports is empty`},
		{backboneTOML + "[probes]\nsample_ring = 1000", `:7: probes: sample_ring = 1000 is not a power of two; use 512 or 1024`},
		{backboneTOML + "[optimizer]\nloss_penalty_ms = nan", `:7: optimizer: loss_penalty_ms = NaN is out of range`},
		// A rule about two settings points at the one written.
		{backboneTOML + "[probes]\ninterval = \"1s\"", `:7: probes: timeout = "2s" is not shorter than interval = "1s"`},
	}
	for _, tt := range tests {
		_, err := parseOptions(t, dir, tt.src)
		if err == nil {
			t.Errorf("%s: accepted", tt.src)
			continue
		}
		if got := strings.TrimPrefix(err.Error(), filepath.Join(dir, "x.toml")); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s\ngot  %s\nwant %s", tt.src, got, tt.want)
		}
	}
}

// TestCheckBroken loads every file in testdata/broken, the configurations that
// configs accepts and a component refuses (moved from configs' corpus with
// their rules), as configs' TestBroken loads its own.
func TestCheckBroken(t *testing.T) {
	configtest.Broken(t, "testdata/broken", 7, func(file string) error {
		_, err := LoadConfig(file)
		return err
	}, func(e *configs.Error) int { return e.Line })
}

// A reload that writes a default out, changes a backbone's cost, or
// changes [optimizer] or the live [probes] settings needs no restart; one
// that changes what probes were built with, or turns a component off, does.
func TestCheckReloadableControl(t *testing.T) {
	parse := func(src string) *configs.Config {
		cfg, err := configs.Parse([]byte(src), "x.toml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	old := parse(backboneTOML)
	if r := planRestarts(old, parse(backboneTOML+"cost = 3\n[probes]\ntop_prefixes = 1000\n[optimizer]\nstatistic = \"p50\"\n")); len(r) > 0 {
		t.Errorf("defaults written out, or a cost, need a restart: %v", r)
	}
	liveTOML := backboneTOML + "[probes]\ntop_prefixes = 10\ninterval = \"3s\"\n[optimizer]\nstatistic = \"min\"\nhold_down = \"2m\"\n"
	if r := planRestarts(old, parse(liveTOML)); len(r) > 0 {
		t.Errorf("live settings need a restart: %v", r)
	}
	o, _ := newPlan(old)
	c, _ := newPlan(parse(liveTOML))
	if got, want := liveChanges(o, c), []string{"optimizer.statistic", "optimizer.hold_down", "probes.top_prefixes", "probes.interval"}; !slices.Equal(got, want) {
		t.Errorf("live changes %v, want %v", got, want)
	}
	for src, want := range map[string]string{
		"[probes]\ntimeout = \"1s\"\n":   "[probes] timeout changed",
		"[probes]\nflow_table = 1000\n":  "[probes] flow_table changed",
		"[optimizer]\nenabled = false\n": "[optimizer] enabled changed",
		"[probes]\nactive = false\n":     "[probes] active changed",
		"[forwarder]\nframes = 1024\n":   "[forwarder] sizes or sampling changed",
	} {
		if r := planRestarts(old, parse(backboneTOML+src)); !slices.Equal(r, []string{want}) {
			t.Errorf("%q: restarts %v, want [%s]", src, r, want)
		}
	}
}

// Passive only, the probes get no source: nothing is steered to them, and
// a source may change on reload.
func TestPassiveOnlyPlan(t *testing.T) {
	passive := func(src string) *configs.Config {
		cfg, err := configs.Parse([]byte(backboneTOML+"[probes]\nactive = false\nsource_v4 = \""+src+"\"\n"), "x.toml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	o, err := newPlan(passive("198.18.200.1"))
	if err != nil {
		t.Fatal(err)
	}
	if o.probes.SourceV4.IsValid() || o.probes.SourceV6.IsValid() {
		t.Errorf("passive probes have sources %v, %v", o.probes.SourceV4, o.probes.SourceV6)
	}
	if r := planRestarts(passive("198.18.200.1"), passive("198.18.200.2")); len(r) > 0 {
		t.Errorf("a passive source change needs a restart: %v", r)
	}
}

// The FIB does not reuse a withdrawn route's ID while probes may still
// credit an RTT to it: its grace follows probes.timeout.
func TestFIBGraceCoversProbeHold(t *testing.T) {
	for _, timeout := range []string{"2s", "9s"} {
		src := configtest.TwoBackbones + "\n[probes]\ninterval = \"10s\"\nwindow = \"60s\"\ntimeout = \"" + timeout + "\"\n"
		cfg, err := configs.Parse([]byte(src), filepath.Join(t.TempDir(), "x.toml"))
		if err != nil {
			t.Fatal(err)
		}
		f, _, err := LoadFIB(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		po, err := probesOptions(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if f.Grace() < po.RouteHold() || po.RouteHold() < 2*po.Timeout {
			t.Errorf("timeout %s: FIB grace %v, probes hold route IDs %v", timeout, f.Grace(), po.RouteHold())
		}
	}
}
