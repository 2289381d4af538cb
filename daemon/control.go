package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
)

// control is pnapd's control plane: probes measuring, the optimizer
// deciding. Either may be off ([probes] / [optimizer] enabled = false).
type control struct {
	probes *probes.Probes
	opt    *optimizer.Optimizer
	pins   *optimizer.Pins // the optimizer's, when it runs
}

// startControl starts the probes and the optimizer. It runs before the
// workers stage, whose loops hand probe replies to the probes, and the
// status API's, which reads them.
func (d *Daemon) startControl(context.Context) (func() error, error) {
	cfg, plan := d.cfg.Load(), d.plan
	c := &control{pins: optimizer.NewPins(d.fib)}
	d.ctl = c
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop := func() error { cancel(); wg.Wait(); return nil }
	if !cfg.Probes.Enabled {
		if cfg.Optimizer.Enabled {
			d.log.Warn("optimizer off: it needs [probes] enabled; every prefix keeps its default backbone (or a pin)")
		}
		return stop, nil
	}
	// Passive only there is no inject ring, and without a data plane
	// probes sends nothing.
	var dp probes.DataPlane
	if cfg.Probes.Active && d.dp.inject != nil {
		dp = d.dp
	}
	var err error
	if c.probes, err = probes.New(plan.probes, d.fib, d.dp.rings, dp); err != nil {
		return nil, err
	}
	d.goRun(&wg, "probes", func() error {
		if err := c.probes.Run(ctx); err != nil && ctx.Err() == nil {
			d.log.Error("probes stopped", "error", err)
		}
		return nil
	})
	if po := plan.probes; c.probes.Active() {
		d.log.Info("probes", "top_prefixes", po.TopPrefixes, "interval", po.Interval, "source_v4", po.SourceV4, "source_v6", po.SourceV6)
	} else {
		d.log.Info("probes: passive only ([probes] active = false): no probe is sent, decisions come from in-band samples only")
	}
	if !cfg.Optimizer.Enabled {
		return stop, nil
	}
	oo := plan.optimizer
	oo.Log = d.log.With("component", "optimizer")
	o, err := optimizer.New(oo, d.fib, c.probes, &backboneRates{dp: d.dp})
	if err != nil {
		stop()
		return nil, err
	}
	c.opt, c.pins = o, o.Pins()
	d.goRun(&wg, "optimizer", func() error { o.Run(ctx); return nil })
	d.log.Info("optimizer", "interval", oo.Interval, "statistic", oo.Statistic, "hold_down", oo.HoldDown)
	return stop, nil
}

// backboneRates turns the workers' TX byte counters on the backbone ports
// into bits per second since the previous call: the optimizer's traffic
// source for commit and capacity.
type backboneRates struct {
	dp    *dataPlane
	mu    sync.Mutex
	last  []uint64
	lastT time.Time
}

func (r *backboneRates) BackboneBps() map[fib.BackboneID]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	cur := make([]uint64, len(r.dp.backbonePort))
	for b, port := range r.dp.backbonePort {
		cur[b] = r.dp.portStats(int(port)).TxBytes
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
