package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pnap-project/pnap/daemon"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	cfg, _, err := configCommand("run", args, stderr)
	if err != nil {
		return err
	}
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
