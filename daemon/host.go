package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"

	"github.com/cilium/ebpf/link"
	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/forwarder/steering"
	"github.com/vishvananda/netlink"
)

// attachXDP attaches with a bpf_link, so the kernel detaches the program
// when pnapd exits, however it exits.
func attachXDP(st *steering.Program, ifindex int, mode configs.XDPMode) (link.Link, string, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: st.XDP, Interface: ifindex, Flags: flags})
	}
	switch mode {
	case configs.XDPNative:
		l, err := try(link.XDPDriverMode)
		return l, "native", err
	case configs.XDPGeneric:
		l, err := try(link.XDPGenericMode)
		return l, "generic", err
	}
	if l, err := try(link.XDPDriverMode); err == nil {
		return l, "native", nil
	}
	l, err := try(link.XDPGenericMode)
	return l, "generic", err
}

// localAddrs lists every address of the box: packets to them go to the
// kernel, not through pnap.
func localAddrs() ([]netip.Addr, error) {
	as, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing local addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

// ifaceAddrs returns an interface's first global IPv4 and IPv6 addresses,
// the sources of its ICMP errors.
func ifaceAddrs(l netlink.Link) (v4, v6 netip.Addr) {
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pnapd: addresses of %s: %v\n", l.Attrs().Name, err)
		return
	}
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		switch {
		case ip.Is4() && !v4.IsValid():
			v4 = ip
		case ip.Is6() && !ip.IsLinkLocalUnicast() && !v6.IsValid():
			v6 = ip
		}
	}
	return
}

// busyPollUsecs bounds one busy-poll pass; with napi_defer_hard_irqs the
// worker's poll(2) then does the interface's receive work.
const busyPollUsecs = 20

// preferBusyPoll sets the interface's NAPI deferral so that busy-polling
// workers, not interrupts, drive its receive loop, and returns a function
// that restores the previous values.
func preferBusyPoll(iface string) (func() error, error) {
	settings := []struct{ file, value string }{
		{"napi_defer_hard_irqs", "2"},
		{"gro_flush_timeout", "200000"}, // ns: the deferral's watchdog
	}
	var saved []func() error
	restore := func() error {
		var errs []error
		for i := len(saved) - 1; i >= 0; i-- {
			errs = append(errs, saved[i]())
		}
		return errors.Join(errs...)
	}
	for _, st := range settings {
		path := filepath.Join("/sys/class/net", iface, st.file)
		old, err := os.ReadFile(path)
		if err != nil {
			restore()
			return nil, fmt.Errorf("busy_poll: %w (pnapd needs the sysfs of its own network namespace; 'ip netns exec' provides one)", err)
		}
		if err := os.WriteFile(path, []byte(st.value), 0); err != nil {
			restore()
			if errors.Is(err, syscall.EROFS) {
				err = fmt.Errorf("%w (under systemd, busy_poll needs ProtectKernelTunables=no: see pnapd.service)", err)
			}
			return nil, fmt.Errorf("busy_poll: setting %s: %w", path, err)
		}
		saved = append(saved, func() error { return os.WriteFile(path, old, 0) })
	}
	return restore, nil
}

// startLocalAddrs keeps the steering programs' local-address maps current:
// an address added to the box after start must reach the kernel, not be
// steered into pnap as transit.
func (d *Daemon) startLocalAddrs(context.Context) (func() error, error) {
	ch := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	if err := netlink.AddrSubscribe(ch, done); err != nil {
		return nil, fmt.Errorf("following local addresses: %w", err)
	}
	// Addresses added between the start-up listing and the subscription
	// would be missed: list again now that changes are queued.
	if local, err := localAddrs(); err == nil {
		for _, st := range d.dp.steering {
			for _, a := range local {
				st.AddLocal(a)
			}
		}
	}
	var wg sync.WaitGroup
	d.goRun(&wg, "local addresses", func() error { return d.followLocalAddrs(ch, done) })
	return func() error { close(done); wg.Wait(); return nil }, nil
}

func (d *Daemon) followLocalAddrs(ch <-chan netlink.AddrUpdate, done <-chan struct{}) error {
	for {
		select {
		case <-done:
			return nil
		case u, ok := <-ch:
			if !ok {
				return errors.New("local address subscription closed")
			}
			a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok {
				continue
			}
			a = a.Unmap()
			for _, st := range d.dp.steering {
				var err error
				if u.NewAddr {
					err = st.AddLocal(a)
				} else {
					err = st.RemoveLocal(a)
				}
				if err != nil {
					d.log.Warn("local address map", "address", a, "added", u.NewAddr, "error", err)
				}
			}
			d.log.Info("local address", "address", a, "added", u.NewAddr)
		}
	}
}

// CheckHost checks a configuration against the host it will run on: every
// interface exists, each customer port carries its configured addresses
// (pnapd answers ARP/NDP and ICMP through the kernel with them), and every
// backbone gateway lies in a subnet of its interface.
func CheckHost(cfg *configs.Config) error {
	var errs []error
	for _, c := range cfg.Customers {
		errs = append(errs, onInterface("customer", c.Name, c.Interface, func(have []netip.Prefix) []error {
			return missingAddresses(c, have)
		})...)
	}
	for _, b := range cfg.Backbones {
		errs = append(errs, onInterface("backbone", b.Name, b.Interface, func(have []netip.Prefix) []error {
			return strayGateways(b, have)
		})...)
	}
	return errors.Join(errs...)
}

// onInterface checks the interface of a customer or backbone (kind, name):
// that it exists, then its addresses with check.
func onInterface(kind, name, iface string, check func(have []netip.Prefix) []error) []error {
	have, err := interfacePrefixes(kind, name, iface)
	if err != nil {
		return []error{err}
	}
	return check(have)
}

// missingAddresses are customer c's configured addresses that its
// interface, with addresses have, does not carry.
func missingAddresses(c configs.Customer, have []netip.Prefix) []error {
	var errs []error
	for _, want := range []netip.Prefix{c.AddressV4, c.AddressV6} {
		if want.IsValid() && !slices.Contains(have, want) {
			errs = append(errs, fmt.Errorf("customer %q: interface %s does not have address %v; add it ('ip addr add %v dev %s') or change address_v%d", c.Name, c.Interface, want, want, c.Interface, map[bool]int{true: 4, false: 6}[want.Addr().Is4()]))
		}
	}
	return errs
}

// strayGateways are backbone b's gateways in no subnet of its interface's
// addresses have. A link-local gateway needs none.
func strayGateways(b configs.Backbone, have []netip.Prefix) []error {
	var errs []error
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
	return errs
}

// interfacePrefixes lists the addresses, with their prefix lengths, of the
// interface of a customer or backbone (kind, name).
func interfacePrefixes(kind, name, iface string) ([]netip.Prefix, error) {
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("%s %q: interface %q does not exist on this host (see 'ip link')", kind, name, iface)
	}
	as, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
	var out []netip.Prefix
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			ones, _ := a.Mask.Size()
			out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
		}
	}
	return out, nil
}
