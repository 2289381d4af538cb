package daemon

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/internal/setting"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
)

// plan is what the components are started with: each one's defaults,
// overridden by what the configuration file sets. configs says what the
// file holds and where; the components own their defaults and rules; this
// is the one place that puts the two together.
type plan struct {
	// socket sizes every UMEM and AF_XDP socket; loop is how the loops
	// take batches and wait (without their channels and callbacks).
	socket xsk.Options
	loop   forwarder.LoopOptions
	// sampler is the workers' in-band sampling, less the ring each gets.
	sampler   forwarder.SamplerOptions
	probes    probes.Options
	optimizer optimizer.Options
	// peers are the backbones' BGP sessions, one per neighbor; announces
	// the sessions to the network's own routers.
	peers     []bgpPeerPlan
	announces []announcePlan
}

// LoadConfig loads the configuration file at path and checks that every
// component accepts its settings. Any wrong value, whether configs or a
// component refuses it, comes back as one *configs.Error at its file:line.
func LoadConfig(path string) (*configs.Config, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return nil, err
	}
	if _, err := newPlan(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// newPlan makes the components' options from cfg and validates them, in
// the order the file is read: backbones, [probes], [optimizer].
func newPlan(cfg *configs.Config) (plan, error) {
	var o plan
	if err := fitsFIB(cfg); err != nil {
		return plan{}, err
	}
	if err := forwarderOptions(cfg, &o); err != nil {
		return plan{}, err
	}
	bbs, err := backboneOptions(cfg)
	if err != nil {
		return plan{}, err
	}
	if o.probes, err = probesOptions(cfg); err != nil {
		return plan{}, err
	}
	every := trafficSampleEvery
	take(cfg, "probes.traffic_sample_every", &every, cfg.Probes.TrafficSampleEvery)
	if err := located(cfg, "probes", "probes", setting.Int("traffic_sample_every", every, 1, 65536)); err != nil {
		return plan{}, err
	}
	o.sampler = forwarder.SamplerOptions{TrafficEvery: uint32(every), TSRateLimit: cfg.Probes.TCPTSRateLimit.Duration()}
	o.probes.Traffic.SampleEvery = every // what the workers are told
	if o.optimizer, err = optimizerOptions(cfg, bbs); err != nil {
		return plan{}, err
	}
	if err := samplesReachable(cfg, o.probes, o.optimizer); err != nil {
		return plan{}, err
	}
	// A prefix taking its turn at being probed stays in turn until it has
	// the samples the optimizer scores by: two a round (echo and SYN).
	o.probes.TurnRounds = min((o.optimizer.MinSamples+1)/2, 1000)
	if err := bgpWithFiles(cfg); err != nil {
		return plan{}, err
	}
	if o.peers, o.announces, err = bgpPlan(cfg); err != nil {
		return plan{}, err
	}
	return o, nil
}

// samplesReachable refuses an optimizer that could never score a backbone
// it is not using: active probing gives each backbone two samples of a
// prefix a round (echo and SYN), and the window keeps the last half of it
// at least, so min_samples must be within what those rounds give, or no
// prefix would ever move for latency.
func samplesReachable(cfg *configs.Config, p probes.Options, o optimizer.Options) error {
	if !cfg.Probes.Enabled || !cfg.Probes.Active || !cfg.Optimizer.Enabled {
		return nil
	}
	rounds := int((p.Window / 2) / p.Interval)
	if reach := 2 * rounds; o.MinSamples > reach {
		return located(cfg, "optimizer", "optimizer", &setting.Error{Keys: []string{"min_samples"}, Msg: fmt.Sprintf(
			"min_samples = %d is more than active probing gives a backbone: 2 probes a round, every interval = %q, and window = %q keeps the last %v at least (%d rounds, %d samples); lower min_samples, shorten [probes] interval or lengthen [probes] window",
			o.MinSamples, p.Interval, p.Window, p.Window/2, rounds, reach)})
	}
	return nil
}

// fitsFIB checks that the backbones, and the customer ports, fit in a FIB:
// the forwarder keeps customer routes in one too, a "backbone" per port.
func fitsFIB(cfg *configs.Config) error {
	for _, t := range []struct {
		table string
		n     int
	}{{"backbone", len(cfg.Backbones)}, {"customer", len(cfg.Customers)}} {
		if t.n > fib.MaxBackbones {
			line, _ := cfg.Line(fmt.Sprintf("%s[%d]", t.table, fib.MaxBackbones)) // the first too many
			return &configs.Error{File: cfg.Path, Line: line,
				Msg: fmt.Sprintf("%d %ss are configured; at most %d are supported", t.n, t.table, fib.MaxBackbones)}
		}
	}
	return nil
}

// bgpWithFiles refuses a backbone that would take routes both from BGP and
// from route files or MRT dumps: the FIB keeps one route per backbone and
// prefix, so a withdrawal from either would remove the other's. Static
// routes may accompany BGP: they are what a withdrawal falls back to.
func bgpWithFiles(cfg *configs.Config) error {
	for i, b := range cfg.Backbones {
		if b.BGP != nil && (len(b.RouteFiles) > 0 || len(b.MRT) > 0) {
			line, _ := cfg.Line(fmt.Sprintf("backbone[%d].bgp", i))
			return &configs.Error{File: cfg.Path, Line: line, Msg: fmt.Sprintf("backbone %q: bgp: the backbone also has route_file or mrt sources; take its routes from BGP or from files, not both (static routes may stay)", b.Name)}
		}
	}
	return nil
}

// forwarderOptions is [forwarder]'s socket sizes over xsk's defaults and
// its batch and spin over the loops'.
func forwarderOptions(cfg *configs.Config, o *plan) error {
	f := &cfg.Forwarder
	o.socket = xsk.DefaultOptions()
	take(cfg, "forwarder.frames", &o.socket.Frames, f.Frames)
	take(cfg, "forwarder.frame_size", &o.socket.FrameSize, f.FrameSize)
	take(cfg, "forwarder.ring_size", &o.socket.RingSize, f.RingSize)
	o.loop = forwarder.LoopOptions{Batch: forwarder.DefaultBatch, Spin: forwarder.DefaultSpin, BusyPoll: f.BusyPoll, Priority: forwarder.DefaultPriority}
	take(cfg, "forwarder.batch", &o.loop.Batch, f.Batch)
	take(cfg, "forwarder.spin_us", &o.loop.Spin, time.Duration(f.SpinMicros)*time.Microsecond)
	take(cfg, "forwarder.priority", &o.loop.Priority, f.Priority)
	return located(cfg, "forwarder", "forwarder", setting.First(o.socket.Validate(), forwarder.ValidateBatch(o.loop.Batch),
		forwarder.ValidateSpin(o.loop.Spin), forwarder.ValidatePriority(o.loop.Priority)))
}

// backboneOptions are the optimizer's parameters of every [[backbone]].
// Their zero values are the defaults, so they are taken as they are.
func backboneOptions(cfg *configs.Config) ([]optimizer.Backbone, error) {
	var out []optimizer.Backbone
	for i, c := range cfg.Backbones {
		b := optimizer.Backbone{Name: c.Name, Cost: c.Cost, CommitMbps: c.CommitMbps, CapacityMbps: c.CapacityMbps}
		if err := located(cfg, fmt.Sprintf("backbone[%d]", i), fmt.Sprintf("backbone %q", c.Name), b.Validate()); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// probesOptions is [probes] over probes.DefaultOptions.
func probesOptions(cfg *configs.Config) (probes.Options, error) {
	o := probes.DefaultOptions()
	c := &cfg.Probes
	take(cfg, "probes.top_prefixes", &o.TopPrefixes, c.TopPrefixes)
	take(cfg, "probes.interval", &o.Interval, c.Interval.Duration())
	take(cfg, "probes.timeout", &o.Timeout, c.Timeout.Duration())
	take(cfg, "probes.rate_per_backbone", &o.RatePerBackbone, c.RatePerBackbone)
	if c.Active {
		// Passive only, no reply comes back to a source: none is steered
		// to probes, and changing one needs no restart.
		take(cfg, "probes.source_v4", &o.SourceV4, c.SourceV4)
		take(cfg, "probes.source_v6", &o.SourceV6, c.SourceV6)
	}
	take(cfg, "probes.tcp_ports", &o.TCPPorts, c.TCPPorts)
	take(cfg, "probes.sample_ring", &o.SampleRing, c.SampleRing)
	take(cfg, "probes.flow_table", &o.FlowTable, c.FlowTable)
	take(cfg, "probes.window", &o.Window, c.Window.Duration())
	return o, located(cfg, "probes", "probes", o.Validate())
}

// optimizerOptions is [optimizer] over optimizer.DefaultOptions, with the
// backbones' parameters.
func optimizerOptions(cfg *configs.Config, bbs []optimizer.Backbone) (optimizer.Options, error) {
	o := optimizer.DefaultOptions()
	c := &cfg.Optimizer
	take(cfg, "optimizer.interval", &o.Interval, c.Interval.Duration())
	take(cfg, "optimizer.statistic", &o.Statistic, optimizer.Statistic(c.Statistic))
	take(cfg, "optimizer.loss_penalty_ms", &o.LossPenaltyMs, c.LossPenaltyMs)
	take(cfg, "optimizer.min_improvement_ms", &o.MinImprovementMs, c.MinImprovementMs)
	take(cfg, "optimizer.min_improvement_pct", &o.MinImprovementPct, c.MinImprovementPct)
	take(cfg, "optimizer.min_samples", &o.MinSamples, c.MinSamples)
	take(cfg, "optimizer.hold_down", &o.HoldDown, c.HoldDown.Duration())
	take(cfg, "optimizer.max_overrides", &o.MaxOverrides, c.MaxOverrides)
	take(cfg, "optimizer.failure_hold", &o.FailureHold, c.FailureHold.Duration())
	o.Backbones = bbs
	return o, located(cfg, "optimizer", "optimizer", o.Validate())
}

// planRestarts says what, in the components' settings as the daemon runs
// them (defaults applied: writing a default out is no change), differs
// between old and cur and needs a restart: [forwarder] sizes, the probes'
// settings that probes.RestartNeeded names, BGP sessions, and turning
// probes, active probing or the optimizer on or off. The optimizer's
// settings, the backbones' parameters and the other [probes] settings
// reload.
func planRestarts(old, cur *configs.Config) []string {
	o, oerr := newPlan(old)
	c, cerr := newPlan(cur)
	if oerr != nil || cerr != nil {
		return []string{"the configuration does not load"}
	}
	var out []string
	if !reflect.DeepEqual(o.socket, c.socket) || !reflect.DeepEqual(o.loop, c.loop) || !reflect.DeepEqual(o.sampler, c.sampler) {
		out = append(out, "[forwarder] sizes or sampling changed")
	}
	for _, k := range probes.RestartNeeded(o.probes, c.probes) {
		out = append(out, "[probes] "+k+" changed")
	}
	if !reflect.DeepEqual(o.peers, c.peers) || !reflect.DeepEqual(o.announces, c.announces) {
		out = append(out, "a BGP session changed")
	}
	if old.Probes.Enabled != cur.Probes.Enabled {
		out = append(out, "[probes] enabled changed")
	}
	if old.Probes.Active != cur.Probes.Active {
		// The inject ring and the reply steering are made at start.
		out = append(out, "[probes] active changed")
	}
	if old.Optimizer.Enabled != cur.Optimizer.Enabled {
		out = append(out, "[optimizer] enabled changed")
	}
	return out
}

// liveChanges names the [optimizer] and [probes] settings that differ
// between old and cur and that a reload applies, for its log line.
func liveChanges(old, cur plan) []string {
	var out []string
	for _, c := range []struct {
		key  string
		a, b any
	}{
		{"optimizer.interval", old.optimizer.Interval, cur.optimizer.Interval},
		{"optimizer.statistic", old.optimizer.Statistic, cur.optimizer.Statistic},
		{"optimizer.loss_penalty_ms", old.optimizer.LossPenaltyMs, cur.optimizer.LossPenaltyMs},
		{"optimizer.min_improvement_ms", old.optimizer.MinImprovementMs, cur.optimizer.MinImprovementMs},
		{"optimizer.min_improvement_pct", old.optimizer.MinImprovementPct, cur.optimizer.MinImprovementPct},
		{"optimizer.min_samples", old.optimizer.MinSamples, cur.optimizer.MinSamples},
		{"optimizer.hold_down", old.optimizer.HoldDown, cur.optimizer.HoldDown},
		{"optimizer.max_overrides", old.optimizer.MaxOverrides, cur.optimizer.MaxOverrides},
		{"optimizer.failure_hold", old.optimizer.FailureHold, cur.optimizer.FailureHold},
		{"probes.top_prefixes", old.probes.TopPrefixes, cur.probes.TopPrefixes},
		{"probes.interval", old.probes.Interval, cur.probes.Interval},
		{"probes.rate_per_backbone", old.probes.RatePerBackbone, cur.probes.RatePerBackbone},
		{"probes.tcp_ports", old.probes.TCPPorts, cur.probes.TCPPorts},
	} {
		if !reflect.DeepEqual(c.a, c.b) {
			out = append(out, c.key)
		}
	}
	return out
}

// take sets *dst to v, the value the file gives key, when the file sets
// key; otherwise *dst keeps the component's default.
func take[T any](cfg *configs.Config, key string, dst *T, v T) {
	if _, written := cfg.Line(key); written {
		*dst = v
	}
}

// located turns a component's refusal of a setting in the file's table
// (a path such as "probes" or "backbone[1]") into a *configs.Error at the
// line that sets it. For a rule about several settings that is the first
// one the file sets; for a default, the table's line. name is how the
// message calls the table, as configs' messages do.
func located(cfg *configs.Config, table, name string, err error) error {
	if err == nil {
		return nil
	}
	e := &configs.Error{File: cfg.Path, Msg: name + ": " + err.Error()}
	var se *setting.Error
	if !errors.As(err, &se) || len(se.Keys) == 0 {
		return e
	}
	e.Line, _ = cfg.Line(table + "." + se.Keys[0])
	for _, k := range se.Keys {
		if line, written := cfg.Line(table + "." + k); written {
			e.Line = line
			break
		}
	}
	return e
}
