package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/daemon"
)

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", "pnapd check -c FILE [--host]", stderr)
	cpath := fs.String("c", "", "configuration `file` (TOML)")
	onHost := fs.Bool("host", false, "also check against this host: interfaces exist, their addresses match the configuration, gateways are on a connected subnet")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cpath == "" {
		fmt.Fprintln(stderr, "pnapd check: -c FILE is required")
		fs.Usage()
		return errUsage
	}
	cfg, err := daemon.LoadConfig(*cpath)
	if err != nil {
		return err
	}
	path := *cpath
	if *onHost {
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

// configCommand parses the flags of a command whose only flag is -c FILE and
// loads that configuration.
func configCommand(name string, args []string, stderr io.Writer) (*configs.Config, string, error) {
	fs := newFlags(name, "pnapd "+name+" -c FILE", stderr)
	path := fs.String("c", "", "configuration `file` (TOML)")
	if err := parse(fs, args); err != nil {
		return nil, "", err
	}
	if *path == "" {
		fmt.Fprintf(stderr, "pnapd %s: -c FILE is required\n", name)
		fs.Usage()
		return nil, "", errUsage
	}
	cfg, err := daemon.LoadConfig(*path)
	return cfg, *path, err
}

// humanBytes prints n in KiB below a MiB and in MiB above.
func humanBytes(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
