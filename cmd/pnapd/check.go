package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/daemon"
)

func defineCheck(fs *flag.FlagSet) action {
	cpath := configFlag(fs)
	onHost := fs.Bool("host", false, "also check against this host: interfaces exist, their addresses match the configuration, gateways are on a connected subnet")
	return func(args []string, _ io.Reader, stdout, _ io.Writer) error {
		cfg, err := needConfig(fs, *cpath, args)
		if err != nil {
			return err
		}
		return check(cfg, *cpath, *onHost, stdout)
	}
}

// check loads the configuration's routes, as run would, and reports them.
func check(cfg *configs.Config, path string, onHost bool, stdout io.Writer) error {
	if onHost {
		if err := daemon.CheckHost(cfg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	start := time.Now()
	f, report, err := daemon.LoadFIB(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	took := time.Since(start)
	st := f.Stats()
	fmt.Fprintf(stdout, "%s: ok: %d backbones, %d customers\n", path, len(cfg.Backbones), len(cfg.Customers))
	for _, r := range report {
		fmt.Fprintf(stdout, "  backbone %-16s %9d routes from %s\n", r.Backbone, r.Routes, r.Source)
	}
	for i, b := range cfg.Backbones {
		fmt.Fprintf(stdout, "  backbone %-16s %9d routes held (interface %s)\n", b.Name, st.Held[i], b.Interface)
	}
	fmt.Fprintf(stdout, "  FIB: %d IPv4 + %d IPv6 prefixes, lookup structure %s, loaded in %v\n",
		st.IPv4Routes, st.IPv6Routes, humanBytes(st.TrieBytes+st.SelectionBytes), took.Round(time.Millisecond))
	return nil
}

// configFlag adds -c FILE, the configuration of an offline command.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("c", "", "configuration `file` (TOML)")
}

// needConfig refuses arguments and a missing -c FILE, and loads the
// configuration.
func needConfig(fs *flag.FlagSet, path string, args []string) (*configs.Config, error) {
	if err := noArgs(fs, args); err != nil {
		return nil, err
	}
	if path == "" {
		fmt.Fprintf(fs.Output(), "pnapd %s: -c FILE is required\n", fs.Name())
		fs.Usage()
		return nil, errUsage
	}
	return daemon.LoadConfig(path)
}

// humanBytes prints n in KiB below a MiB and in MiB above.
func humanBytes(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
