package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/probes"
	"github.com/vishvananda/netlink"
)

// dataPlane is everything `pnapd run` attaches and opens, so that it can all
// be released in one place, in reverse order.
type dataPlane struct {
	steering []*forwarder.Steering
	plane    *forwarder.Plane
	ifindexs []int // by port
	spec     forwarder.HopSpec
	loops    []*forwarder.Loop
	slow     *forwarder.SlowPath
	slowIn   chan forwarder.SlowFrame
	closers  []func() error
	// Sampling and active probes, when [probes] is enabled: one sample
	// ring per worker, and the ring probe frames reach the first worker by.
	rings  []*forwarder.SampleRing
	inject *forwarder.InjectRing
	// backbonePort is the plane's port index of each backbone, by BackboneID.
	backbonePort []uint8
}

func (d *dataPlane) close() error {
	var errs []error
	for i := len(d.closers) - 1; i >= 0; i-- {
		errs = append(errs, d.closers[i]())
	}
	d.closers = nil
	return errors.Join(errs...)
}

// ethVLANHeader is an Ethernet header with one 802.1Q tag.
const ethVLANHeader = 18

// portSpec is one interface pnapd forwards on.
type portSpec struct {
	name  string // the customer's or backbone's
	iface string
	role  forwarder.Role
}

// buildDataPlane resolves the interfaces, loads and attaches the XDP
// program, opens the AF_XDP sockets and makes the loops. On error whatever
// was made is released again.
func buildDataPlane(cfg *configs.Config, po probes.Options, bb *fib.FIB, log *slog.Logger) (_ *dataPlane, err error) {
	d := &dataPlane{}
	defer func() {
		if err != nil {
			d.close()
		}
	}()
	if len(cfg.Customers) > fib.MaxBackbones {
		return nil, fmt.Errorf("%d customer ports configured; this version forwards to at most %d", len(cfg.Customers), fib.MaxBackbones)
	}
	if err := checkCapabilities(); err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("raising the locked-memory limit for BPF maps and AF_XDP rings: %w (run as root, or raise 'ulimit -l' / LimitMEMLOCK=infinity in the systemd unit)", err)
	}
	cust, err := customerFIB(cfg)
	if err != nil {
		return nil, err
	}
	var ports []portSpec
	for _, c := range cfg.Customers {
		ports = append(ports, portSpec{c.Name, c.Interface, forwarder.RoleCustomer})
	}
	for _, b := range cfg.Backbones {
		ports = append(ports, portSpec{b.Name, b.Interface, forwarder.RoleBackbone})
	}
	links := make([]netlink.Link, len(ports))
	d.plane = &forwarder.Plane{Backbones: bb, Customers: cust}
	for i, p := range ports {
		l, err := netlink.LinkByName(p.iface)
		if err != nil {
			return nil, fmt.Errorf("%s: interface %q: %w (check the name with 'ip link')", p.name, p.iface, err)
		}
		attrs := l.Attrs()
		if attrs.NumRxQueues > 0 && cfg.Forwarder.Queues > attrs.NumRxQueues {
			return nil, fmt.Errorf("%s: interface %s has %d RX queues, the config asks for %d: lower [forwarder] queues", p.name, p.iface, attrs.NumRxQueues, cfg.Forwarder.Queues)
		}
		if attrs.NumRxQueues > cfg.Forwarder.Queues {
			// Traffic the NIC hashes to a queue without a socket falls back
			// to the kernel, past the backbone FIB.
			log.Warn("interface has more RX queues than pnapd serves; traffic on the others is forwarded by the kernel", "interface", p.iface, "rx_queues", attrs.NumRxQueues, "served", cfg.Forwarder.Queues)
		}
		links[i] = l
		d.ifindexs = append(d.ifindexs, attrs.Index)
		mtu := cfg.Forwarder.MTU
		if attrs.MTU > 0 && attrs.MTU < mtu {
			mtu = attrs.MTU
		}
		// A packet must fit in one UMEM frame with its Ethernet and VLAN
		// headers; bigger ones would be dropped at the redirect, silently,
		// so they get "fragmentation needed" / "packet too big" instead.
		if fit := cfg.Forwarder.FrameSize - ethVLANHeader; mtu > fit {
			log.Warn("MTU lowered to what fits in a frame", "interface", p.iface, "mtu", fit, "configured", mtu, "frame_size", cfg.Forwarder.FrameSize)
			mtu = fit
		}
		var mac forwarder.MAC
		copy(mac[:], attrs.HardwareAddr)
		d.plane.Ports = append(d.plane.Ports, forwarder.PortInfo{Name: p.iface, MAC: mac, MTU: mtu, Role: p.role})
	}
	local, err := localAddrs()
	if err != nil {
		return nil, err
	}

	// The hop spec, for the neighbour tracker.
	nc := len(cfg.Customers)
	for i, c := range cfg.Customers {
		d.spec.Customers = append(d.spec.Customers, forwarder.CustomerHop{
			Port: uint8(i), Ifindex: links[i].Attrs().Index,
			NextHop4: c.NextHopV4, NextHop6: c.NextHopV6,
			Subnet4: c.AddressV4.Masked(), Subnet6: c.AddressV6.Masked(),
		})
	}
	for i, b := range cfg.Backbones {
		d.spec.Backbones = append(d.spec.Backbones, forwarder.BackboneHop{
			Port: uint8(nc + i), Ifindex: links[nc+i].Attrs().Index,
			Gateway4: b.GatewayV4, Gateway6: b.GatewayV6,
		})
	}

	// XDP program and AF_XDP sockets, per interface; one loop per queue
	// serving that queue of every interface.
	queues := cfg.Forwarder.Queues
	portsByQueue := make([][]*forwarder.Port, queues)
	for i, p := range ports {
		l := links[i]
		st, err := forwarder.NewSteering(forwarder.SteeringOptions{Queues: queues})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.iface, err)
		}
		d.closers = append(d.closers, st.Close)
		d.steering = append(d.steering, st)
		for _, a := range local {
			if err := st.AddLocal(a); err != nil {
				return nil, fmt.Errorf("%s: local address %v: %w", p.iface, a, err)
			}
		}
		lk, mode, err := attachXDP(st, l.Attrs().Index, cfg.Forwarder.XDPMode)
		if err != nil {
			return nil, fmt.Errorf("%s: attaching XDP: %w", p.iface, err)
		}
		// The attachment goes on the closer list after the interface's
		// sockets, so that it is released before them: traffic then falls
		// back to the kernel instead of into sockets nobody reads.
		detach := lk.Close
		var ifacePorts []*forwarder.Port
		for q := 0; q < queues; q++ {
			port, err := forwarder.OpenPort(p.iface, l.Attrs().Index, q, forwarder.PortOptions{
				Frames: cfg.Forwarder.Frames, FrameSize: cfg.Forwarder.FrameSize, RingSize: cfg.Forwarder.RingSize,
			})
			if err != nil {
				detach()
				return nil, err
			}
			d.closers = append(d.closers, port.Close)
			if err := st.SetSocket(q, port.FD()); err != nil {
				detach()
				return nil, fmt.Errorf("%s queue %d: XSK map: %w", p.iface, q, err)
			}
			portsByQueue[q] = append(portsByQueue[q], port)
			ifacePorts = append(ifacePorts, port)
		}
		d.closers = append(d.closers, detach)
		if cfg.Forwarder.BusyPoll {
			restore, err := preferBusyPoll(p.iface)
			if err != nil {
				return nil, err
			}
			d.closers = append(d.closers, restore)
			for _, port := range ifacePorts {
				if err := port.PreferBusyPoll(busyPollUsecs, cfg.Forwarder.Batch); err != nil {
					return nil, err
				}
			}
		}
		log.Info("port attached", "role", roleName(p.role), "name", p.name, "interface", p.iface, "xdp", mode, "queues", queues, "busy_poll", cfg.Forwarder.BusyPoll)
	}

	d.slow = &forwarder.SlowPath{}
	for i, p := range ports {
		sp := forwarder.SlowPort{MAC: d.plane.Ports[i].MAC, MTU: d.plane.Ports[i].MTU}
		sp.Addr4, sp.Addr6 = ifaceAddrs(links[i])
		if err := sp.OpenSender(links[i].Attrs().Index); err != nil {
			return nil, fmt.Errorf("%s: %w", p.iface, err)
		}
		d.closers = append(d.closers, sp.Close)
		d.slow.Ports = append(d.slow.Ports, sp)
	}
	d.slowIn = make(chan forwarder.SlowFrame, 1024)
	for i := range cfg.Backbones {
		d.backbonePort = append(d.backbonePort, uint8(nc+i))
	}
	if cfg.Probes.Enabled {
		d.plane.SetProbeSources(po.SourceV4, po.SourceV6)
		for _, a := range []netip.Addr{po.SourceV4, po.SourceV6} {
			for _, l := range local {
				if a.IsValid() && a == l {
					return nil, fmt.Errorf("[probes] source %v is an address of this box: its replies would go to the kernel, not to pnapd; use an address routed to pnapd but not configured on any interface", a)
				}
			}
		}
		if d.inject, err = forwarder.NewInjectRing(1024); err != nil {
			return nil, err
		}
		d.closers = append(d.closers, d.inject.Close)
	}
	for q := 0; q < queues; q++ {
		cpu := -1
		if q < len(cfg.Forwarder.CPUs) {
			cpu = cfg.Forwarder.CPUs[q]
		}
		l := &forwarder.Loop{
			Worker: forwarder.NewWorker(d.plane), Ports: portsByQueue[q], CPU: cpu,
			Batch: cfg.Forwarder.Batch, Slow: d.slowIn,
		}
		if cfg.Probes.Enabled {
			r := forwarder.NewSampleRing(po.SampleRing)
			l.Worker.EnableSampling(forwarder.SamplerOptions{Ring: r, TrafficEvery: trafficSampleEvery, TSRateLimit: cfg.Probes.TCPTSRateLimit.Duration()})
			d.rings = append(d.rings, r)
			if q == 0 {
				l.Inject = d.inject
			}
		}
		d.loops = append(d.loops, l)
	}
	return d, nil
}

// trafficSampleEvery: one traffic sample per this many forwarded packets
// (the probes' traffic ranking scales it back).
const trafficSampleEvery = 64

// Path and Transmit make the data plane the probes' way out: a backbone's
// gateway MAC from the neighbour tracker, frames by the first worker's
// inject ring.
func (d *dataPlane) Path(b fib.BackboneID, family int) probes.Path {
	h := d.plane.CurrentHops()
	if h == nil || int(b) >= len(d.backbonePort) {
		return probes.Path{}
	}
	fam := 0
	if family == 6 {
		fam = 1
	}
	hop := h.Backbone[b][fam]
	if !hop.Resolved {
		return probes.Path{}
	}
	src := d.plane.Ports[hop.Port].MAC
	return probes.Path{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(hop.MAC[:]), OK: true}
}

func (d *dataPlane) Transmit(b fib.BackboneID, frame []byte) bool {
	if int(b) >= len(d.backbonePort) {
		return false
	}
	return d.inject.Send(d.backbonePort[b], frame)
}

func roleName(r forwarder.Role) string {
	if r == forwarder.RoleCustomer {
		return "customer"
	}
	return "backbone"
}

// attachXDP attaches with a bpf_link, so the kernel detaches the program
// when pnapd exits, however it exits.
func attachXDP(st *forwarder.Steering, ifindex int, mode configs.XDPMode) (link.Link, string, error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: st.Program, Interface: ifindex, Flags: flags})
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

// customerFIB holds the customer routes: each customer port's connected
// subnets and its configured routes, with the customer as the "backbone".
func customerFIB(cfg *configs.Config) (*fib.FIB, error) {
	names := make([]fib.Backbone, max(1, len(cfg.Customers)))
	for i := range names {
		names[i] = fib.Backbone{Name: fmt.Sprintf("customer-%d", i)}
	}
	for i, c := range cfg.Customers {
		names[i].Name = c.Name
	}
	f, err := fib.New(names, fib.Options{MaxRoutes: 1 << 16})
	if err != nil {
		return nil, err
	}
	err = f.Update(func(tx *fib.Txn) error {
		for i, c := range cfg.Customers {
			ps := append([]netip.Prefix(nil), c.Routes...)
			for _, a := range []netip.Prefix{c.AddressV4, c.AddressV6} {
				if a.IsValid() {
					ps = append(ps, a.Masked())
				}
			}
			for _, p := range ps {
				if err := tx.Add(fib.BackboneID(i), p, -1); err != nil {
					return fmt.Errorf("customer %q: %w", c.Name, err)
				}
			}
		}
		return nil
	})
	return f, err
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
			return nil, fmt.Errorf("busy_poll: setting %s: %w", path, err)
		}
		saved = append(saved, func() error { return os.WriteFile(path, old, 0) })
	}
	return restore, nil
}

// followLocalAddrs keeps the steering programs' local-address maps current:
// an address added to the box after start must reach the kernel, not be
// steered into pnap as transit. It returns when stop is closed.
func (d *dataPlane) followLocalAddrs(stop <-chan struct{}, log *slog.Logger) error {
	ch := make(chan netlink.AddrUpdate, 64)
	if err := netlink.AddrSubscribe(ch, stop); err != nil {
		return fmt.Errorf("following local addresses: %w", err)
	}
	// Addresses added between the start-up listing and the subscription
	// would be missed: list again now that changes are queued.
	if local, err := localAddrs(); err == nil {
		for _, st := range d.steering {
			for _, a := range local {
				st.AddLocal(a)
			}
		}
	}
	for {
		select {
		case <-stop:
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
			for _, st := range d.steering {
				var err error
				if u.NewAddr {
					err = st.AddLocal(a)
				} else {
					err = st.RemoveLocal(a)
				}
				if err != nil {
					log.Warn("local address map", "address", a, "added", u.NewAddr, "error", err)
				}
			}
			log.Info("local address", "address", a, "added", u.NewAddr)
		}
	}
}
