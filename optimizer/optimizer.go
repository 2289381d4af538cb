package optimizer

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

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
// PreviousRound, the round before, lets a fall in loss be told from
// chance over two rounds' probes.
type RoundSource interface {
	LastRound() map[fib.BackboneID]Round
	PreviousRound() map[fib.BackboneID]Round
}

// Round is one backbone's most recent complete round of active probes
// (probes.Probes.LastRound gives them).
type Round = probes.Round

// The prober is both: a whole lost round fails a backbone at once.
var (
	_ Source      = (*probes.Probes)(nil)
	_ RoundSource = (*probes.Probes)(nil)
)

// settings are Options in the units Step works in.
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
	name string
	params
	rate      rateWindow
	last, p95 float64 // bits/s as of this Step
	recent    float64 // bits/s: the busiest sample of the last recentSpan
	// delta is the traffic, bits/s, this Step has moved onto the backbone
	// (negative: off it), so that moves within one Step see each other.
	delta       float64
	lossShifted bool      // loss is the last rounds' (recentLoss), not the window's
	failing     bool      // failed by this Step's measurements
	reported    bool      // the last failure or recovery logged was a failure
	failedUntil time.Time // excluded until then
	// loss and probes are the backbone's probe loss over all its prefixes
	// in this Step's snapshot: what a pair's few probes are read against.
	loss   float64
	probes uint64
	// lossSent is when the latest-sent probe lost on it was sent.
	lossSent time.Time
	strikes  int // failures in a row, each soon after the last (see strike)
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
	cfg      settings // Step's, and SetOptions' under stepMu
	opt      Options
	now      func() time.Time
	log      *slog.Logger
	interval atomic.Int64  // ns: Run's tick, as SetOptions last set it
	retime   chan struct{} // SetOptions tells Run to read interval again
	fib      *fib.FIB
	src      Source
	traffic  TrafficSource

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
	cands     []Choice // one prefix's, in decide

	overrides atomic.Int64

	pins *Pins

	mu       sync.Mutex // guards what readers outside Step see
	events   eventRing
	counters Counters
	status   []BackboneStatus
}

// New makes an optimizer for f, reading measurements from src. traffic may
// be nil: every backbone then carries nothing and the commit and capacity
// checks pass. It refuses Options that do not Validate and backbones that
// are not in f.
func New(opt Options, f *fib.FIB, src Source, traffic TrafficSource) (*Optimizer, error) {
	if f == nil || src == nil {
		return nil, fmt.Errorf("optimizer: need a FIB and a measurement source")
	}
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("optimizer: %w", err)
	}
	params, err := paramsOf(f, opt.Backbones)
	if err != nil {
		return nil, err
	}
	fbs := f.Backbones()
	bb := make([]backbone, len(fbs))
	for i, b := range fbs {
		bb[i] = backbone{name: b.Name, rate: newRateWindow(opt.RateWindow)}
	}
	for id, p := range params {
		bb[id].params = p
	}
	o := &Optimizer{
		cfg: settingsOf(opt),
		now: opt.Now, log: opt.Log, retime: make(chan struct{}, 1),
		opt: opt, fib: f, src: src, traffic: traffic,
		bb:      bb,
		tracked: map[netip.Prefix]pstate{},
		rateBuf: make([]float64, opt.RateWindow),
		cands:   make([]Choice, 0, fib.MaxBackbones),
		snapIdx: map[netip.Prefix]int{},
		events:  eventRing{buf: make([]Event, opt.Events)},
		status:  make([]BackboneStatus, len(bb)),
	}
	o.interval.Store(int64(opt.Interval))
	o.pins = newPins(f, opt.Now, o.record)
	o.publish(time.Time{})
	return o, nil
}

// settingsOf is opt in the units Step works in.
func settingsOf(opt Options) settings {
	return settings{
		interval:      opt.Interval,
		useMin:        opt.Statistic == StatisticMin,
		lossPenalty:   opt.LossPenaltyMs,
		minImpMs:      opt.MinImprovementMs,
		minImpFrac:    opt.MinImprovementPct / 100,
		minSamples:    uint64(opt.MinSamples),
		holdDown:      opt.HoldDown,
		maxOverrides:  opt.MaxOverrides,
		failureHold:   opt.FailureHold,
		commitWinMs:   opt.CommitWinMs,
		bitsPerPacket: opt.MeanPacketBytes * 8,
	}
}

// SetOptions applies a reloaded configuration from the next Step on: the
// interval (Run's next tick), how prefixes are scored and moved, and the
// backbones' parameters, as SetBackbones does. Prefixes moved under the
// old settings stay until the new ones move them: a lower max_overrides
// stops new overrides until enough return. Events and RateWindow size the
// optimizer and cannot change; Now and Log stay those New was given. It
// refuses Options that do not Validate, and then changes nothing.
func (o *Optimizer) SetOptions(opt Options) error {
	if err := opt.Validate(); err != nil {
		return fmt.Errorf("optimizer: %w", err)
	}
	next, err := paramsOf(o.fib, opt.Backbones)
	if err != nil {
		return err
	}
	o.stepMu.Lock()
	defer o.stepMu.Unlock()
	if opt.Events != o.opt.Events || opt.RateWindow != o.opt.RateWindow {
		return fmt.Errorf("optimizer: Events and RateWindow size the optimizer; they cannot change while it runs")
	}
	opt.Now, opt.Log = o.now, o.log
	o.opt, o.cfg = opt, settingsOf(opt)
	for id, p := range next {
		o.bb[id].params = p
	}
	o.interval.Store(int64(opt.Interval))
	select {
	case o.retime <- struct{}{}:
	default: // Run has one pending already
	}
	return nil
}

// params are a backbone's parameters in the units Step works in.
type params struct {
	cost        float64 // ms
	commitBps   float64 // 0: none
	capacityBps float64 // 0: unknown
}

// paramsOf finds each of bs, already validated, in f.
func paramsOf(f *fib.FIB, bs []Backbone) (map[fib.BackboneID]params, error) {
	out := make(map[fib.BackboneID]params, len(bs))
	for _, b := range bs {
		id, ok := f.BackboneID(b.Name)
		if !ok {
			return nil, fmt.Errorf("optimizer: backbone %q is not in the FIB", b.Name)
		}
		out[id] = params{b.Cost, b.CommitMbps * 1e6, b.CapacityMbps * 1e6}
	}
	return out, nil
}

// Pins are the operator's pins, which the optimizer leaves alone; pinning
// and unpinning through them is logged as events.
func (o *Optimizer) Pins() *Pins { return o.pins }

// Run calls Step every Interval (as last set) until ctx is done.
func (o *Optimizer) Run(ctx context.Context) {
	every := time.Duration(o.interval.Load())
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			o.Step(o.now())
		case <-o.retime:
			if d := time.Duration(o.interval.Load()); d != every {
				every = d
				t.Reset(d)
			}
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
	var last, prev map[fib.BackboneID]Round
	if rs, ok := o.src.(RoundSource); ok {
		last, prev = rs.LastRound(), rs.PreviousRound()
	}
	o.backboneLoss(&snap, last, prev)
	o.sampleRates()
	o.detectFailures(now, &snap, last)
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
		b.recent = b.rate.recentMax(max(1, int((recentSpan+o.cfg.interval-1)/o.cfg.interval)))
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
	if o.log != nil && e.Reason != BackboneFailed {
		o.log.Info("prefix moved", "prefix", e.Prefix, "from", e.From.Name, "to", e.To.Name, "reason", e.Reason.String(),
			"from_score_ms", scoreOf(e.From), "to_score_ms", scoreOf(e.To), "from_samples", e.From.Samples, "to_samples", e.To.Samples)
	}
}

// scoreOf is a choice's score for a log line: -1 when unmeasured.
func scoreOf(c Choice) float64 {
	if !c.Measured {
		return -1
	}
	return math.Round(c.Score*10) / 10
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

// SetBackbones applies new backbone parameters (matched by name) from a
// reloaded configuration, from the next Step on. Backbones left out keep
// theirs. It refuses them all if one is wrong.
func (o *Optimizer) SetBackbones(bs []Backbone) error {
	for _, b := range bs {
		if err := b.Validate(); err != nil {
			return fmt.Errorf("optimizer: backbone %q: %w", b.Name, err)
		}
	}
	next, err := paramsOf(o.fib, bs)
	if err != nil {
		return err
	}
	o.stepMu.Lock()
	defer o.stepMu.Unlock()
	for id, p := range next {
		o.bb[id].params = p
	}
	return nil
}
