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
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	reloads := make(chan struct{}, 1)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGHUP {
					cancel(fmt.Errorf("signal %v", s))
					continue
				}
				select {
				case reloads <- struct{}{}:
				default: // one is pending already
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return daemon.Run(ctx, cfg, daemon.Options{
		Log:     slog.New(slog.NewTextHandler(stderr, nil)),
		Version: version,
		Reloads: reloads,
	})
}
