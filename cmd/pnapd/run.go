package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/daemon"
)

func defineRun(fs *flag.FlagSet) action {
	path := configFlag(fs)
	return func(args []string, _ io.Reader, _, stderr io.Writer) error {
		cfg, err := needConfig(fs, *path, args)
		if err != nil {
			return err
		}
		return runDaemon(cfg, stderr)
	}
}

// runDaemon runs pnapd until SIGINT or SIGTERM, with SIGHUP as a reload.
func runDaemon(cfg *configs.Config, stderr io.Writer) error {
	// Signals before anything is attached, so that a SIGTERM during start-up
	// still releases what was attached, and an early SIGHUP does not kill
	// pnapd.
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	// One channel per purpose: a reload request waiting must never crowd
	// out a stop (signal.Notify drops what a full channel cannot take).
	stops := make(chan os.Signal, 2)
	signal.Notify(stops, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(stops)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	reloads := make(chan struct{}, 1)
	go forwardSignals(stops, hups, cancel, reloads, stderr)
	level := new(slog.LevelVar)
	return daemon.Run(ctx, cfg, daemon.Options{
		Log:      daemon.NewLogger(stderr, cfg.Log, level),
		LogLevel: level,
		Version:  version,
		Reloads:  reloads,
	})
}

// forwardSignals turns the first SIGINT or SIGTERM into a stop and SIGHUP
// into reload requests (at most one pending). A second stop signal exits
// at once: the kernel releases what pnapd attached (bpf_link XDP
// attachments, sockets), so forwarding falls back to the kernel.
func forwardSignals(stops, hups <-chan os.Signal, cancel context.CancelCauseFunc, reloads chan<- struct{}, stderr io.Writer) {
	stopping := false
	for {
		select {
		case s := <-stops:
			if stopping {
				fmt.Fprintf(stderr, "pnapd: %v again while stopping: exiting now\n", s)
				os.Exit(1)
			}
			stopping = true
			cancel(fmt.Errorf("signal %v", s))
		case <-hups:
			select {
			case reloads <- struct{}{}:
			default: // one is pending already
			}
		}
	}
}
