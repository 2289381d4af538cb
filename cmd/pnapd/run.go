package main

import (
	"net/http"

	"context"
	"errors"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/pnap-project/pnap/forwarder"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	cfg, opts, path, err := configCommand("run", args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	start := time.Now()
	f, _, err := loadFIB(cfg, log)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	st := f.Stats()
	log.Info("FIB loaded", "backbones", len(cfg.Backbones), "ipv4", st.IPv4Routes, "ipv6", st.IPv6Routes, "took", time.Since(start).Round(time.Millisecond))

	// Signals before attaching anything, so that a SIGTERM during start-up
	// still releases what was attached and restores sysfs.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before anything slow: an early SIGHUP must not kill pnapd
	defer signal.Stop(hup)
	defer signal.Stop(sig)
	d, err := buildDataPlane(cfg, opts.probes, f, log)
	if err != nil {
		return err
	}
	defer d.close()
	select {
	case s := <-sig:
		log.Info("stopping before forwarding", "signal", s.String())
		return nil
	default:
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, len(d.loops)+3)
	neigh := forwarder.NewNeighbours(d.plane, d.spec, nil)
	if d.plane.CurrentHops() == nil {
		// NewNeighbours refused the spec; its Run says why.
		return fmt.Errorf("next hops: %w", neigh.Run(stop))
	}
	d.slow.Resolve = func(port uint8, host netip.Addr) { neigh.Resolve(d.ifindexs[port], host) }
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := neigh.Run(stop); err != nil {
			errc <- fmt.Errorf("neighbours: %w", err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.followLocalAddrs(stop, log); err != nil {
			errc <- err
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctl, err := startControl(ctx, &wg, cfg, opts, f, d, log)
	if err != nil {
		close(stop)
		wg.Wait()
		return err
	}
	dm := &daemon{cfg: cfg, fib: f, d: d, ctl: ctl, start: start}
	if cfg.API.Listen != "" {
		l, err := listenAPI(cfg.API)
		if err != nil {
			close(stop)
			cancel()
			wg.Wait()
			return err
		}
		var metrics http.Handler
		if cfg.API.Metrics {
			reg := prometheus.NewRegistry()
			reg.MustRegister(collector{dm}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveAPI(ctx, l, dm.handler(metrics), log)
		}()
		log.Info("status API", "listen", cfg.API.Listen, "metrics", cfg.API.Metrics, "token", cfg.API.Token != "")
	}
	slowDone := make(chan struct{})
	go func() { d.slow.Run(d.slowIn); close(slowDone) }()
	for i, l := range d.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Run(); err != nil {
				errc <- fmt.Errorf("worker %d: %w", i, err)
			}
		}()
	}
	log.Info("forwarding", "workers", len(d.loops), "ports", len(d.plane.Ports))

wait:
	for {
		select {
		case s := <-sig:
			log.Info("stopping", "signal", s.String())
			break wait
		case err = <-errc:
			log.Error("stopping", "error", err)
			break wait
		case <-hup:
			dm.reload(path, log)
		}
	}
	close(stop)
	cancel()
	for _, l := range d.loops {
		l.Stop()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		// A worker may still be using its sockets: leave them (and the
		// slow path's channel) to the process exit, which also detaches
		// the XDP programs, rather than pulling them from under it.
		d.closers = nil
		return errors.Join(err, errors.New("workers did not stop within 2 s; exiting without cleanup"))
	}
	close(d.slowIn)
	<-slowDone
	if cerr := d.close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	for i, p := range d.plane.Ports {
		var st forwarder.PortStats
		for _, l := range d.loops {
			l.Worker.Stats(i, &st)
		}
		var drops []any
		for r, n := range st.Drops {
			if n > 0 {
				drops = append(drops, forwarder.Reason(r).String(), n)
			}
		}
		log.Info("port counters", append([]any{"interface", p.Name, "rx", st.RxPackets, "tx", st.TxPackets}, drops...)...)
	}
	have, want := neigh.Resolved()
	log.Info("stopped", "next hops resolved", fmt.Sprintf("%d/%d", have, want), "icmp sent", d.slow.Sent.Load(), "icmp rate-limited", d.slow.Limited.Load())
	return err
}
