package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// errNoDataPlane is what `pnapd run` reports until the AF_XDP forwarder is
// part of this build: it refuses to pretend to forward.
var errNoDataPlane = errors.New("this build has no data plane yet (the AF_XDP forwarder is not implemented); configuration and FIB are valid — use 'pnapd check' and 'pnapd fib lookup' meanwhile")

func cmdRun(args []string, stdout, stderr io.Writer) error {
	cfg, path, err := configCommand("run", args, stderr)
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
	return errNoDataPlane
}
