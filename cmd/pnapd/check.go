package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/vishvananda/netlink"
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
	cfg, _, err := loadConfig(*cpath)
	if err != nil {
		return err
	}
	path := *cpath
	if *onHost {
		if err := checkHost(cfg); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	start := time.Now()
	f, report, err := loadFIB(cfg, slog.New(slog.DiscardHandler))
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
func configCommand(name string, args []string, stderr io.Writer) (*configs.Config, options, string, error) {
	fs := newFlags(name, "pnapd "+name+" -c FILE", stderr)
	path := fs.String("c", "", "configuration `file` (TOML)")
	if err := parse(fs, args); err != nil {
		return nil, options{}, "", err
	}
	if *path == "" {
		fmt.Fprintf(stderr, "pnapd %s: -c FILE is required\n", name)
		fs.Usage()
		return nil, options{}, "", errUsage
	}
	cfg, opts, err := loadConfig(*path)
	return cfg, opts, *path, err
}

// humanBytes prints n in KiB below a MiB and in MiB above.
func humanBytes(n int) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// checkHost checks a configuration against the host it will run on: every
// interface exists, each customer port carries its configured addresses
// (pnapd answers ARP/NDP and ICMP through the kernel with them), and every
// backbone gateway lies in a subnet of its interface.
func checkHost(cfg *configs.Config) error {
	var errs []error
	addrsOf := func(iface string) ([]netip.Prefix, bool) {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return nil, false
		}
		as, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
		var out []netip.Prefix
		for _, a := range as {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				ones, _ := a.Mask.Size()
				out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
			}
		}
		return out, true
	}
	for _, c := range cfg.Customers {
		have, ok := addrsOf(c.Interface)
		if !ok {
			errs = append(errs, fmt.Errorf("customer %q: interface %q does not exist on this host (see 'ip link')", c.Name, c.Interface))
			continue
		}
		for _, want := range []netip.Prefix{c.AddressV4, c.AddressV6} {
			if want.IsValid() && !contains(have, want) {
				errs = append(errs, fmt.Errorf("customer %q: interface %s does not have address %v; add it ('ip addr add %v dev %s') or change address_v%d", c.Name, c.Interface, want, want, c.Interface, map[bool]int{true: 4, false: 6}[want.Addr().Is4()]))
			}
		}
	}
	for _, b := range cfg.Backbones {
		have, ok := addrsOf(b.Interface)
		if !ok {
			errs = append(errs, fmt.Errorf("backbone %q: interface %q does not exist on this host (see 'ip link')", b.Name, b.Interface))
			continue
		}
		for _, gw := range []netip.Addr{b.GatewayV4, b.GatewayV6} {
			if !gw.IsValid() || gw.IsLinkLocalUnicast() {
				continue
			}
			on := false
			for _, p := range have {
				on = on || p.Masked().Contains(gw)
			}
			if !on {
				errs = append(errs, fmt.Errorf("backbone %q: gateway %v is in no subnet of %s's addresses %v; give the interface an address on the gateway's subnet", b.Name, gw, b.Interface, have))
			}
		}
	}
	return errors.Join(errs...)
}

func contains(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
