package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/neighbours"
)

// Options are what the command line gives the daemon besides the
// configuration.
type Options struct {
	// Log receives everything pnapd logs. Default: discarded.
	Log *slog.Logger
	// LogLevel, if set, is Log's level (NewLogger): a reload sets it to
	// the new [log] level.
	LogLevel *slog.LevelVar
	// Version is what the status API reports.
	Version string
	// Reloads asks for the configuration file to be read again and applied
	// (SIGHUP). Nil: never.
	Reloads <-chan struct{}
}

// Daemon is one running pnapd. Its fields are set by the stages of Run, in
// order, before the status API (the last stage) can read them.
type Daemon struct {
	log      *slog.Logger
	logLevel *slog.LevelVar // nil: the level is the caller's
	// reloads counts reloads for the metrics; last is when the
	// configuration was last applied (Unix ns).
	reloads struct {
		applied, refused, last atomic.Int64
	}
	// stateMu serialises writes of the state file (saveState).
	stateMu sync.Mutex
	// apiReloads carries POST /v1/reload to serve; nil in tests that run
	// no serve loop.
	apiReloads chan reloadRequest
	version    string
	start      time.Time

	// cfg is replaced whole by a reload, never written in place, so the API
	// reads a consistent configuration without a lock.
	cfg atomic.Pointer[configs.Config]
	// plan is the components' options, made from the configuration Run
	// started with.
	plan plan
	fib  *fib.FIB
	// stamps fingerprint each backbone's route sources as last loaded
	// (sourceStamps); only the main goroutine, which reloads, uses them.
	stamps []string

	dp    *dataPlane
	neigh *neighbours.Tracker
	slow  *slowPath
	ctl   *control
	bgp   []*bgpSession
	// apiLimits are the status API server's timeouts and connection limit.
	apiLimits apiLimits

	// errc carries the failure of any component that runs on its own
	// goroutine; the first one stops pnapd.
	errc chan error
}

// stage is one step of start-up. start returns the function that undoes
// it; stages are undone in reverse order.
type stage struct {
	name  string
	start func(ctx context.Context) (stop func() error, err error)
}

// Run builds pnapd from cfg and forwards until ctx ends or a component
// fails, then stops every component and releases what it attached. It
// returns nil on a requested stop.
func Run(ctx context.Context, cfg *configs.Config, opts Options) error {
	d := &Daemon{log: opts.Log, logLevel: opts.LogLevel, version: opts.Version, start: time.Now(), errc: make(chan error, 16), apiLimits: defaultAPILimits,
		apiReloads: make(chan reloadRequest)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.cfg.Store(cfg)
	var err error
	if d.plan, err = newPlan(cfg); err != nil {
		return err
	}
	var stops []func() error
	stops, err = startStages(ctx, d.stages())
	if err == nil && ctx.Err() == nil {
		d.log.Info("forwarding", "workers", len(d.dp.loops), "ports", len(d.dp.plane.Ports))
		d.notify(sdReady)
		wctx, stopWatchdog := context.WithCancel(ctx)
		go d.watchdog(wctx)
		err = d.serve(ctx, opts.Reloads)
		stopWatchdog()
		d.notify(sdStopping)
	} else if err == nil {
		d.log.Info("stopping before forwarding", "reason", context.Cause(ctx))
	}
	err = errors.Join(err, unwind(stops))
	if d.dp != nil && d.dp.workers != nil {
		d.logCounters()
	}
	return err
}

// stages are pnapd's start-up, in order: each may use what the earlier
// ones made.
func (d *Daemon) stages() []stage {
	return []stage{
		{"FIB", d.startFIB},
		{"data plane", d.startDataPlane},
		{"neighbours", d.startNeighbours},
		{"local addresses", d.startLocalAddrs},
		{"slow path", d.startSlowPath},
		{"probes and optimizer", d.startControl},
		{"BGP", d.startBGP},
		{"state", d.startState},
		{"status API", d.startAPI},
		{"workers", d.startWorkers},
	}
}

// stopTimeout bounds stopping: the workers' 2 s, the API's second, and
// the rest, which are quick. Past it pnapd exits and the kernel releases
// what it attached.
const stopTimeout = 5 * time.Second

// unwind runs the stop functions in reverse order, within stopTimeout.
func unwind(stops []func() error) error {
	done := make(chan error, 1)
	go func() {
		var err error
		for i := len(stops) - 1; i >= 0; i-- {
			err = errors.Join(err, stops[i]())
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(stopTimeout):
		return fmt.Errorf("components did not stop within %v; exiting, the kernel releases what pnapd attached", stopTimeout)
	}
}

// startStages runs the stages in order. On the first failure, or when ctx
// ends between stages, it returns the stop functions of the stages that
// started, for the caller to undo in reverse order.
func startStages(ctx context.Context, stages []stage) ([]func() error, error) {
	var stops []func() error
	for _, st := range stages {
		if ctx.Err() != nil {
			return stops, nil
		}
		stop, err := st.start(ctx)
		if err != nil {
			return stops, err
		}
		stops = append(stops, stop)
	}
	return stops, nil
}

// serve waits for the end: ctx done or a component failing. Reload
// requests are applied meanwhile.
func (d *Daemon) serve(ctx context.Context, reloads <-chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			d.log.Info("stopping", "reason", context.Cause(ctx))
			return nil
		case err := <-d.errc:
			d.log.Error("stopping", "error", err)
			return err
		case <-reloads:
			d.reload()
		case req := <-d.apiReloads:
			req.err <- d.reload()
		}
	}
}

// goRun runs fn on its own goroutine, counted by wg; its error, unless
// nil, stops pnapd.
func (d *Daemon) goRun(wg *sync.WaitGroup, what string, fn func() error) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := fn(); err != nil {
			select {
			case d.errc <- fmt.Errorf("%s: %w", what, err):
			default: // pnapd is stopping already
			}
		}
	}()
}

// startFIB builds the backbones' FIB from the configured route sources.
func (d *Daemon) startFIB(context.Context) (func() error, error) {
	cfg := d.cfg.Load()
	start := time.Now()
	d.stamps = sourceStamps(cfg)
	d.reloads.last.Store(start.UnixNano())
	f, _, err := LoadFIB(cfg, d.log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.Path, err)
	}
	d.fib = f
	st := f.Stats()
	d.log.Info("FIB loaded", "backbones", len(cfg.Backbones), "ipv4", st.IPv4Routes, "ipv6", st.IPv6Routes, "took", time.Since(start).Round(time.Millisecond))
	return func() error { return nil }, nil
}

// logCounters logs every port's counters summed over the workers, and what
// the slow path and the neighbour tracker did: the last lines of a run.
func (d *Daemon) logCounters() {
	for i, p := range d.dp.plane.Ports {
		st := d.dp.portStats(i)
		var drops []any
		for r, n := range st.Drops {
			if n > 0 {
				drops = append(drops, forwarder.Reason(r).String(), n)
			}
		}
		d.log.Info("port counters", append([]any{"interface", p.Name, "rx", st.RxPackets, "tx", st.TxPackets}, drops...)...)
	}
	var attrs []any
	if d.neigh != nil {
		have, want := d.neigh.Resolved()
		attrs = append(attrs, "next hops resolved", fmt.Sprintf("%d/%d", have, want))
	}
	if d.slow != nil {
		attrs = append(attrs, "icmp sent", d.slow.path.Sent.Load(), "icmp rate-limited", d.slow.path.Limited.Load())
	}
	d.log.Info("stopped", attrs...)
}
