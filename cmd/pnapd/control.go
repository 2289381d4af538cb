package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
)

// control is pnapd's control plane: probes measuring, the optimizer
// deciding, the operator's pins. Probes and the optimizer may be off
// ([probes] / [optimizer] enabled = false); pins never are.
type control struct {
	probes *probes.Probes
	opt    *optimizer.Optimizer
	rates  *backboneRates
	pins   *optimizer.Pins // the optimizer's, when it runs
}

// startControl starts probes and the optimizer on d. They stop when ctx is
// cancelled; wg waits for them. Call it before the workers run: it sets the
// loops' probe-reply hand-off.
func startControl(ctx context.Context, wg *sync.WaitGroup, cfg *configs.Config, opts options, f *fib.FIB, d *dataPlane, log *slog.Logger) (*control, error) {
	c := &control{rates: &backboneRates{d: d}, pins: optimizer.NewPins(f)}
	if !cfg.Probes.Enabled {
		if cfg.Optimizer.Enabled {
			log.Warn("optimizer off: it needs [probes] enabled; every prefix keeps its default backbone (or a pin)")
		}
		return c, nil
	}
	var dp probes.DataPlane
	if d.inject != nil {
		dp = d
	}
	var err error
	if c.probes, err = probes.New(opts.probes, f, d.rings, dp); err != nil {
		return nil, err
	}
	for _, l := range d.loops {
		l.ProbeReply = func(frame []byte, at int64) { c.probes.OfferReply(frame, at) }
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.probes.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("probes stopped", "error", err)
		}
	}()
	po := opts.probes
	log.Info("probes", "top_prefixes", po.TopPrefixes, "interval", po.Interval, "source_v4", po.SourceV4, "source_v6", po.SourceV6)
	if !cfg.Optimizer.Enabled {
		return c, nil
	}
	o, err := optimizer.New(opts.optimizer, f, c.probes, c.rates)
	if err != nil {
		return nil, err
	}
	c.opt, c.pins = o, o.Pins()
	wg.Add(1)
	go func() {
		defer wg.Done()
		o.Run(ctx)
	}()
	oo := opts.optimizer
	log.Info("optimizer", "interval", oo.Interval, "statistic", oo.Statistic, "hold_down", oo.HoldDown)
	return c, nil
}

// backboneRates turns the workers' TX byte counters on the backbone ports
// into bits per second since the previous call: the optimizer's traffic
// source for commit and capacity.
type backboneRates struct {
	d     *dataPlane
	mu    sync.Mutex
	last  []uint64
	lastT time.Time
}

func (r *backboneRates) BackboneBps() map[fib.BackboneID]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	cur := make([]uint64, len(r.d.backbonePort))
	for b, port := range r.d.backbonePort {
		var st forwarder.PortStats
		for _, l := range r.d.loops {
			l.Worker.Stats(int(port), &st)
		}
		cur[b] = st.TxBytes
	}
	out := map[fib.BackboneID]float64{}
	if r.last != nil {
		dt := now.Sub(r.lastT).Seconds()
		for b := range cur {
			if dt > 0 {
				out[fib.BackboneID(b)] = float64(cur[b]-r.last[b]) * 8 / dt
			}
		}
	}
	r.last, r.lastT = cur, now
	return out
}
