package optimizer

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

// Source hands out the measurements: probes.Store in pnapd.
type Source interface {
	Snapshot() probes.Snapshot
}

// TrafficSource reports the rate, in bits per second, each backbone carries
// now (from the forwarder's TX byte counters). Backbones it leaves out
// carry nothing.
type TrafficSource interface {
	BackboneBps() map[fib.BackboneID]float64
}

// RoundSource may also be implemented by a Source whose prober works in
// rounds. A backbone whose whole last round went unanswered is failed at
// once, without waiting for the loss over the store's window to build up.
type RoundSource interface {
	LastRound() map[fib.BackboneID]Round
}

// Round is one backbone's most recent complete round of active probes
// (probes.Probes.LastRound gives them).
type Round = probes.Round

// The prober is both: a whole lost round fails a backbone at once.
var (
	_ Source      = (*probes.Probes)(nil)
	_ RoundSource = (*probes.Probes)(nil)
)

// Options are the optimizer's tunables that are not in the configuration
// file. The zero value is usable.
type Options struct {
	// Now is the clock Run passes to Step. Default time.Now.
	Now func() time.Time
	// RateWindow is how many rate samples (one per Step) the 95th
	// percentile of a backbone's rate is taken over. Default 300: five
	// minutes at the default one-second interval.
	RateWindow int
	// MeanPacketBytes converts a prefix's packets per second
	// (PrefixStats.Traffic) into bits per second for the commit and
	// capacity checks. Default 1000: above the simple-IMIX mean (340
	// bytes) and near the large-packet-dominated mix transit carries
	// toward eyeballs, so a move's load is overestimated rather than
	// under: the checks err on the side of not moving.
	MeanPacketBytes float64
	// CommitWinMs is the win, in ms of score, that justifies moving a
	// prefix onto a backbone that would then run above its commit, and
	// the most a prefix may lose when shed from a backbone above its
	// commit. Default 50: a path that much better (a continent's detour)
	// is worth burst pricing; ordinary differences between transits in
	// one metro are a few ms and are not.
	CommitWinMs float64
	// A backbone fails when, over the store's window, at least
	// FailMinProbes probes were sent and at least FailLoss of them were
	// lost, or when a whole round of at least FailRoundMin probes was
	// lost (RoundSource). Defaults 0.5, 20 and 10: at a 10 % baseline
	// loss, 10 or more lost of 20 has probability 7e-6 and 10 of 10
	// 1e-10, so a noisy but working backbone is not failed.
	FailLoss      float64
	FailMinProbes uint64
	FailRoundMin  uint64
	// StaleAfter is how long an override may go without measurements
	// (its prefix left the snapshot) before it returns to the default,
	// so that overrides nobody measures do not hold MaxOverrides slots
	// forever. Default 10 minutes.
	StaleAfter time.Duration
	// Events is how many events are kept. Default 10000.
	Events int
}

func (o *Options) fill() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.RateWindow <= 0 {
		o.RateWindow = 300
	}
	if o.MeanPacketBytes <= 0 {
		o.MeanPacketBytes = 1000
	}
	if o.CommitWinMs <= 0 {
		o.CommitWinMs = 50
	}
	if o.FailLoss <= 0 {
		o.FailLoss = 0.5
	}
	if o.FailMinProbes == 0 {
		o.FailMinProbes = 20
	}
	if o.FailRoundMin == 0 {
		o.FailRoundMin = 10
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = 10 * time.Minute
	}
	if o.Events <= 0 {
		o.Events = 10000
	}
}

// settings is configs.Optimizer in the units Step works in.
type settings struct {
	interval      time.Duration
	useMin        bool // statistic = min, else p50
	lossPenalty   float64
	minImpMs      float64
	minImpFrac    float64
	minSamples    uint64
	holdDown      time.Duration
	maxOverrides  int
	failureHold   time.Duration
	commitWinMs   float64
	bitsPerPacket float64
}

// backbone is the optimizer's view of one fib backbone.
type backbone struct {
	name        string
	cost        float64 // ms
	commitBps   float64 // 0: none
	capacityBps float64 // 0: unknown
	rate        rateWindow
	last, p95   float64 // bits/s as of this Step
	// delta is the traffic, bits/s, this Step has moved onto the backbone
	// (negative: off it), so that moves within one Step see each other.
	delta       float64
	failing     bool      // failed by this Step's measurements
	failedUntil time.Time // excluded until then
}

func (b *backbone) failed(now time.Time) bool { return b.failing || now.Before(b.failedUntil) }

// pstate is what the optimizer remembers about a prefix it moved or found
// overridden. Prefixes at their default and out of hold-down are forgotten.
type pstate struct {
	lastMove int64 // unix ns; 0: never by us
	measured int64 // unix ns of the last Step that could score its current backbone
	seen     uint64
	override bool // selected backbone is not the default
	// evacuated: moved off evacFrom because it failed; returns to the
	// default once evacFrom recovers if nothing measures it meanwhile.
	evacuated bool
	evacFrom  fib.BackboneID
}

// Optimizer chooses a backbone per prefix. Step is driven by Run (or by a
// test); the accessors may be called from any goroutine meanwhile.
type Optimizer struct {
	cfg     settings
	opt     Options
	fib     *fib.FIB
	src     Source
	traffic TrafficSource

	stepMu  sync.Mutex // Step runs alone; what follows up to mu is Step's own
	bb      []backbone
	tracked map[netip.Prefix]pstate
	gen     uint64
	pending Counters
	// Scratch reused by every Step so that a steady Step allocates nothing.
	rateBuf   []float64
	sweep     []netip.Prefix
	snapIdx   map[netip.Prefix]int
	proposals []proposal
	evictable []evictable

	overrides atomic.Int64

	pins *Pins

	mu       sync.Mutex // guards what readers outside Step see
	events   eventRing
	counters Counters
	status   []BackboneStatus
}

// New makes an optimizer for f. backbones are the configured ones (for
// Cost, CommitMbps, CapacityMbps), matched to f's backbones by name; a fib
// backbone not among them has no cost and no limits. traffic may be nil:
// every backbone then carries nothing and the commit and capacity checks
// pass.
func New(cfg configs.Optimizer, backbones []configs.Backbone, f *fib.FIB, src Source, traffic TrafficSource, opt Options) (*Optimizer, error) {
	if f == nil || src == nil {
		return nil, fmt.Errorf("optimizer: need a FIB and a measurement source")
	}
	opt.fill()
	s := settings{
		interval:      cfg.Interval.Duration(),
		lossPenalty:   cfg.LossPenaltyMs,
		minImpMs:      cfg.MinImprovementMs,
		minImpFrac:    cfg.MinImprovementPct / 100,
		holdDown:      cfg.HoldDown.Duration(),
		maxOverrides:  cfg.MaxOverrides,
		failureHold:   cfg.FailureHold.Duration(),
		commitWinMs:   opt.CommitWinMs,
		bitsPerPacket: opt.MeanPacketBytes * 8,
	}
	switch cfg.Statistic {
	case configs.StatisticP50, "":
	case configs.StatisticMin:
		s.useMin = true
	default:
		return nil, fmt.Errorf("optimizer: statistic %q; use %q or %q", cfg.Statistic, configs.StatisticP50, configs.StatisticMin)
	}
	if cfg.MinSamples < 1 {
		return nil, fmt.Errorf("optimizer: min_samples %d; use 1 or more", cfg.MinSamples)
	}
	s.minSamples = uint64(cfg.MinSamples)
	if cfg.MaxOverrides < 0 || cfg.LossPenaltyMs < 0 || cfg.MinImprovementMs < 0 || cfg.MinImprovementPct < 0 || cfg.MinImprovementPct >= 100 {
		return nil, fmt.Errorf("optimizer: max_overrides, loss_penalty_ms, min_improvement_ms must not be negative and min_improvement_pct must be in [0, 100)")
	}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	fbs := f.Backbones()
	bb := make([]backbone, len(fbs))
	for i, b := range fbs {
		bb[i] = backbone{name: b.Name, rate: newRateWindow(opt.RateWindow)}
	}
	for _, c := range backbones {
		id, ok := f.BackboneID(c.Name)
		if !ok {
			return nil, fmt.Errorf("optimizer: backbone %q is not in the FIB", c.Name)
		}
		if c.Cost < 0 || c.CommitMbps < 0 || c.CapacityMbps < 0 {
			return nil, fmt.Errorf("optimizer: backbone %q: cost, commit_mbps and capacity_mbps must not be negative", c.Name)
		}
		bb[id].cost, bb[id].commitBps, bb[id].capacityBps = c.Cost, c.CommitMbps*1e6, c.CapacityMbps*1e6
	}
	o := &Optimizer{
		cfg: s, opt: opt, fib: f, src: src, traffic: traffic,
		bb:      bb,
		tracked: map[netip.Prefix]pstate{},
		rateBuf: make([]float64, opt.RateWindow),
		snapIdx: map[netip.Prefix]int{},
		events:  eventRing{buf: make([]Event, opt.Events)},
		status:  make([]BackboneStatus, len(bb)),
	}
	o.pins = newPins(f, opt.Now, o.record)
	o.publish(time.Time{})
	return o, nil
}

// Pins are the operator's pins, which the optimizer leaves alone; pinning
// and unpinning through them is logged as events.
func (o *Optimizer) Pins() *Pins { return o.pins }

// Run calls Step every Interval until ctx is done.
func (o *Optimizer) Run(ctx context.Context) {
	t := time.NewTicker(o.cfg.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.Step(o.opt.Now())
		}
	}
}

// Step takes one snapshot and one traffic sample and makes every decision
// they call for. It is deterministic given its inputs and now.
func (o *Optimizer) Step(now time.Time) {
	o.stepMu.Lock()
	defer o.stepMu.Unlock()
	o.gen++
	o.pending = Counters{Steps: 1}
	snap := o.src.Snapshot()
	o.sampleRates()
	o.detectFailures(now, &snap)
	o.evacuate(now, &snap)
	o.proposals, o.evictable = o.proposals[:0], o.evictable[:0]
	for i := range snap.Prefixes {
		o.decide(now, &snap.Prefixes[i])
	}
	o.resolveCap(now)
	o.reconcile(now)
	o.publish(now)
}

func (o *Optimizer) sampleRates() {
	var bps map[fib.BackboneID]float64
	if o.traffic != nil {
		bps = o.traffic.BackboneBps()
	}
	for i := range o.bb {
		b := &o.bb[i]
		b.last = bps[fib.BackboneID(i)]
		b.rate.add(b.last)
		b.p95 = b.rate.p95(o.rateBuf)
		b.delta = 0
	}
}

// publish hands this Step's totals and backbone states to the readers.
func (o *Optimizer) publish(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counters.add(&o.pending)
	o.pending = Counters{}
	for i := range o.bb {
		b := &o.bb[i]
		o.status[i] = BackboneStatus{
			ID: fib.BackboneID(i), Name: b.name,
			Failed: b.failed(now), FailedUntil: b.failedUntil,
			RateBps: b.last, P95Bps: b.p95, CommitBps: b.commitBps, CapacityBps: b.capacityBps,
		}
	}
}

// record logs a move. Counting happens in pending, merged by publish.
func (o *Optimizer) record(e Event) {
	o.pending.Moves[e.Reason]++
	o.mu.Lock()
	o.events.push(e)
	o.mu.Unlock()
}

// Events returns up to n of the newest events, oldest first.
func (o *Optimizer) Events(n int) []Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.events.newest(n)
}

// Counters returns the totals as of the last completed Step.
func (o *Optimizer) Counters() Counters {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counters
}

// Overrides is the number of prefixes the optimizer knows to be routed
// away from their default backbone. It may exceed MaxOverrides while a
// failed backbone's prefixes are evacuated: failure moves ignore the cap.
func (o *Optimizer) Overrides() int { return int(o.overrides.Load()) }

// BackboneStatus is one backbone as the optimizer sees it.
type BackboneStatus struct {
	ID          fib.BackboneID
	Name        string
	Failed      bool
	FailedUntil time.Time // excluded until then (while still failing, at least FailureHold from now)
	// RateBps is the last traffic sample, P95Bps the 95th percentile over
	// the rate window; CommitBps and CapacityBps are 0 when not set.
	RateBps, P95Bps, CommitBps, CapacityBps float64
}

// Backbones returns the backbones' states as of the last completed Step.
func (o *Optimizer) Backbones() []BackboneStatus {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]BackboneStatus(nil), o.status...)
}

// SetBackbones applies new backbone parameters (cost, commit, capacity;
// matched by name) from a reloaded configuration. It takes effect from the
// next Step.
func (o *Optimizer) SetBackbones(backbones []configs.Backbone) error {
	type params struct{ cost, commit, capacity float64 }
	next := make(map[fib.BackboneID]params, len(backbones))
	for _, c := range backbones {
		id, ok := o.fib.BackboneID(c.Name)
		if !ok {
			return fmt.Errorf("optimizer: backbone %q is not in the FIB", c.Name)
		}
		if c.Cost < 0 || c.CommitMbps < 0 || c.CapacityMbps < 0 {
			return fmt.Errorf("optimizer: backbone %q: cost, commit_mbps and capacity_mbps must not be negative", c.Name)
		}
		next[id] = params{c.Cost, c.CommitMbps * 1e6, c.CapacityMbps * 1e6}
	}
	o.stepMu.Lock()
	defer o.stepMu.Unlock()
	for id, p := range next {
		o.bb[id].cost, o.bb[id].commitBps, o.bb[id].capacityBps = p.cost, p.commit, p.capacity
	}
	return nil
}
