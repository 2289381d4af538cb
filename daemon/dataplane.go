package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/cilium/ebpf/rlimit"
	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/neighbours"
	"github.com/pnap-project/pnap/forwarder/slowpath"
	"github.com/pnap-project/pnap/forwarder/steering"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/probes"
	"github.com/vishvananda/netlink"
)

// dataPlane is everything the data-plane stage attaches and opens, so that
// it can all be released in one place, in reverse order.
type dataPlane struct {
	plane    *forwarder.Plane
	ports    []portSpec
	links    []netlink.Link // by port
	spec     neighbours.HopSpec
	steering []*steering.Program
	xdpModes []string // by port: how its XDP program is attached (native, generic)
	// byQueue holds, for each queue, that queue's socket of every port: one
	// worker serves them all, so no ring has two producers; they share
	// that queue's UMEM, umems[q].
	byQueue   [][]*xsk.Port
	umems     []*xsk.Umem
	slowPorts []slowpath.Port
	// Sampling and active probes, when [probes] is enabled: one sample
	// ring per worker, and the ring probe frames reach the first worker by.
	rings  []*forwarder.SampleRing
	inject *forwarder.InjectRing
	// backbonePort is the plane's port index of each backbone, by BackboneID.
	backbonePort []uint8
	// workers and loops, one per queue: the workers exist from the data
	// plane stage on (the optimizer reads their counters), the loops that
	// drive them from the workers stage.
	workers []*forwarder.Worker
	loops   []*forwarder.Loop
	// running publishes loops, once all are made, to the metrics, which
	// may already be collecting.
	running atomic.Pointer[[]*forwarder.Loop]
	closers []func() error
	// stuck is set when a worker did not stop: nothing it may still use is
	// released then.
	stuck bool
}

// portSpec is one interface pnapd forwards on.
type portSpec struct {
	name  string // the customer's or backbone's
	iface string
	role  forwarder.Role
}

// ethVLANHeader is an Ethernet header with one 802.1Q tag.
const ethVLANHeader = 18

// trafficSampleEvery is traffic_sample_every's default: one traffic sample
// per this many forwarded packets (the probes' traffic ranking scales it
// back).
const trafficSampleEvery = 64

// close releases everything in reverse order of acquisition.
func (dp *dataPlane) close() error {
	var errs []error
	for i := len(dp.closers) - 1; i >= 0; i-- {
		errs = append(errs, dp.closers[i]())
	}
	dp.closers = nil
	return errors.Join(errs...)
}

// abandon drops the closers: used when a worker may still be using its
// sockets, which the process exit (which also detaches XDP) then releases
// instead of pulling them from under it.
func (dp *dataPlane) abandon() { dp.closers, dp.stuck = nil, true }

// portStats sums port i's counters over every worker.
func (dp *dataPlane) portStats(i int) forwarder.PortStats {
	var st forwarder.PortStats
	for _, w := range dp.workers {
		w.Stats(i, &st)
	}
	return st
}

// startDataPlane resolves the interfaces, loads and attaches the XDP
// program per interface and opens the AF_XDP sockets. On error whatever
// was made is released again.
func (d *Daemon) startDataPlane(context.Context) (_ func() error, err error) {
	cfg := d.cfg.Load()
	dp := &dataPlane{}
	defer func() {
		if err != nil {
			dp.close()
		}
	}()
	if err := preflight(cfg, d.plan.loop.Priority > 0); err != nil {
		return nil, err
	}
	cust, err := customerFIB(cfg)
	if err != nil {
		return nil, err
	}
	dp.plane = &forwarder.Plane{Backbones: d.fib, Customers: cust}
	if err := dp.resolvePorts(cfg, d); err != nil {
		return nil, err
	}
	if err := dp.makeUmems(cfg.Forwarder.Queues, d.plan.socket); err != nil {
		return nil, err
	}
	local, err := localAddrs()
	if err != nil {
		return nil, err
	}
	for i := range dp.ports {
		if err := dp.attach(cfg, i, local, d); err != nil {
			return nil, err
		}
	}
	dp.makeSlowPorts()
	if cfg.Probes.Enabled {
		dp.makeSampleRings(d.plan.probes.SampleRing)
	}
	if cfg.Probes.Enabled && cfg.Probes.Active {
		if err := dp.setUpProbes(d.plan.probes, local); err != nil {
			return nil, err
		}
	}
	dp.makeWorkers(d.plan.sampler)
	d.dp = dp
	return dp.close, nil
}

// preflight checks what would otherwise fail later with a less helpful
// error: the port count, capabilities, the locked-memory limit.
func preflight(cfg *configs.Config, realtime bool) error {
	if len(cfg.Customers) > fib.MaxBackbones {
		return fmt.Errorf("%d customer ports configured; this version forwards to at most %d", len(cfg.Customers), fib.MaxBackbones)
	}
	if err := checkCapabilities(realtime); err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("raising the locked-memory limit for BPF maps and AF_XDP rings: %w (run as root, or raise 'ulimit -l' / LimitMEMLOCK=infinity in the systemd unit)", err)
	}
	return nil
}

// resolvePorts finds every configured interface and derives its port
// information (MAC, MTU that fits a frame) and the neighbour tracker's hop
// spec. Customers come first, then backbones, in configuration order.
func (dp *dataPlane) resolvePorts(cfg *configs.Config, d *Daemon) error {
	for _, c := range cfg.Customers {
		dp.ports = append(dp.ports, portSpec{c.Name, c.Interface, forwarder.RoleCustomer})
	}
	for _, b := range cfg.Backbones {
		dp.ports = append(dp.ports, portSpec{b.Name, b.Interface, forwarder.RoleBackbone})
	}
	fw := cfg.Forwarder
	for _, p := range dp.ports {
		l, err := netlink.LinkByName(p.iface)
		if err != nil {
			return fmt.Errorf("%s: interface %q: %w (check the name with 'ip link')", p.name, p.iface, err)
		}
		attrs := l.Attrs()
		if attrs.NumRxQueues > 0 && fw.Queues > attrs.NumRxQueues {
			return fmt.Errorf("%s: interface %s has %d RX queues, the config asks for %d: lower [forwarder] queues", p.name, p.iface, attrs.NumRxQueues, fw.Queues)
		}
		if attrs.NumRxQueues > fw.Queues {
			// Traffic the NIC hashes to a queue without a socket falls back
			// to the kernel, past the backbone FIB.
			d.log.Warn("interface has more RX queues than pnapd serves; traffic on the others is forwarded by the kernel", "interface", p.iface, "rx_queues", attrs.NumRxQueues, "served", fw.Queues)
		}
		dp.links = append(dp.links, l)
		var mac forwarder.MAC
		copy(mac[:], attrs.HardwareAddr)
		dp.plane.Ports = append(dp.plane.Ports, forwarder.PortInfo{Name: p.iface, MAC: mac, MTU: portMTU(fw, attrs, d), Role: p.role})
	}
	nc := len(cfg.Customers)
	for i, c := range cfg.Customers {
		dp.spec.Customers = append(dp.spec.Customers, neighbours.CustomerHop{
			Port: uint8(i), Ifindex: dp.links[i].Attrs().Index,
			NextHop4: c.NextHopV4, NextHop6: c.NextHopV6,
			Subnet4: c.AddressV4.Masked(), Subnet6: c.AddressV6.Masked(),
		})
	}
	for i, b := range cfg.Backbones {
		dp.spec.Backbones = append(dp.spec.Backbones, neighbours.BackboneHop{
			Port: uint8(nc + i), Ifindex: dp.links[nc+i].Attrs().Index,
			Gateway4: b.GatewayV4, Gateway6: b.GatewayV6,
		})
		dp.backbonePort = append(dp.backbonePort, uint8(nc+i))
	}
	return nil
}

// portMTU is the configured MTU, lowered to the interface's and to what
// fits in one UMEM frame with Ethernet and VLAN headers: bigger packets
// would be dropped at the redirect, silently, so they get "fragmentation
// needed" / "packet too big" instead.
func portMTU(fw configs.Forwarder, attrs *netlink.LinkAttrs, d *Daemon) int {
	mtu := fw.MTU
	if attrs.MTU > 0 && attrs.MTU < mtu {
		mtu = attrs.MTU
	}
	if fit := d.plan.socket.FrameSize - ethVLANHeader; mtu > fit {
		d.log.Warn("MTU lowered to what fits in a frame", "interface", attrs.Name, "mtu", fit, "configured", mtu, "frame_size", d.plan.socket.FrameSize)
		mtu = fit
	}
	return mtu
}

// attach loads port i's steering program, opens one AF_XDP socket per
// queue and attaches the program with a bpf_link. The attachment is
// released before the sockets, so that traffic falls back to the kernel
// instead of into sockets nobody reads.
func (dp *dataPlane) attach(cfg *configs.Config, i int, local []netip.Addr, d *Daemon) error {
	p, fw := dp.ports[i], cfg.Forwarder
	ifindex := dp.links[i].Attrs().Index
	st, err := steering.New(steering.Options{Queues: fw.Queues})
	if err != nil {
		return fmt.Errorf("%s: %w", p.iface, err)
	}
	dp.closers = append(dp.closers, st.Close)
	dp.steering = append(dp.steering, st)
	for _, a := range local {
		if err := st.AddLocal(a); err != nil {
			return fmt.Errorf("%s: local address %v: %w", p.iface, a, err)
		}
	}
	lk, mode, err := attachXDP(st, ifindex, fw.XDPMode)
	if err != nil {
		return fmt.Errorf("%s: attaching XDP: %w", p.iface, err)
	}
	var sockets []*xsk.Port
	for q := 0; q < fw.Queues; q++ {
		port, err := dp.umems[q].Open(p.iface, ifindex, q)
		if err != nil {
			lk.Close()
			return err
		}
		dp.closers = append(dp.closers, port.Close)
		if err := st.SetSocket(q, port.FD()); err != nil {
			lk.Close()
			return fmt.Errorf("%s queue %d: XSK map: %w", p.iface, q, err)
		}
		dp.byQueue[q] = append(dp.byQueue[q], port)
		sockets = append(sockets, port)
	}
	dp.closers = append(dp.closers, lk.Close)
	if fw.BusyPoll {
		if err := dp.preferBusyPoll(p.iface, sockets, d.plan.loop.Batch); err != nil {
			return err
		}
	}
	dp.xdpModes = append(dp.xdpModes, mode)
	d.log.Info("port attached", "role", roleName(p.role), "name", p.name, "interface", p.iface, "xdp", mode, "af_xdp", dp.umems[0].Mode(), "queues", fw.Queues, "busy_poll", fw.BusyPoll)
	return nil
}

// makeUmems maps one UMEM per queue, shared by that queue's socket of
// every port. They are released last, after every socket closed.
func (dp *dataPlane) makeUmems(queues int, opt xsk.Options) error {
	dp.byQueue = make([][]*xsk.Port, queues)
	for range queues {
		u, err := xsk.NewUmem(len(dp.ports), opt)
		if err != nil {
			return err
		}
		dp.closers = append(dp.closers, u.Close)
		dp.umems = append(dp.umems, u)
	}
	return nil
}

// preferBusyPoll makes the workers drive the interface's receive loop.
func (dp *dataPlane) preferBusyPoll(iface string, sockets []*xsk.Port, batch int) error {
	restore, err := preferBusyPoll(iface)
	if err != nil {
		return err
	}
	dp.closers = append(dp.closers, restore)
	for _, s := range sockets {
		if err := s.PreferBusyPoll(busyPollUsecs, batch); err != nil {
			return err
		}
	}
	return nil
}

// slowPorts describes each port to the slow path, which sends ICMP errors
// from the interface's own addresses.
func (dp *dataPlane) makeSlowPorts() {
	for i, p := range dp.ports {
		sp := slowpath.Port{Name: p.iface, Ifindex: dp.links[i].Attrs().Index, MAC: dp.plane.Ports[i].MAC, MTU: dp.plane.Ports[i].MTU}
		sp.Addr4, sp.Addr6 = ifaceAddrs(dp.links[i])
		dp.slowPorts = append(dp.slowPorts, sp)
	}
}

// makeSampleRings makes the rings the workers hand in-band samples to
// probes through, one per queue.
func (dp *dataPlane) makeSampleRings(size int) {
	for range dp.byQueue {
		dp.rings = append(dp.rings, forwarder.NewSampleRing(size))
	}
}

// setUpProbes makes the probe inject ring and tells the plane which
// sources probe replies come back to: active probing's part of the data
// plane, which passive measurement does without.
func (dp *dataPlane) setUpProbes(po probes.Options, local []netip.Addr) error {
	for _, a := range []netip.Addr{po.SourceV4, po.SourceV6} {
		for _, l := range local {
			if a.IsValid() && a == l {
				return fmt.Errorf("[probes] source %v is an address of this box: its replies would go to the kernel, not to pnapd; use an address routed to pnapd but not configured on any interface", a)
			}
		}
	}
	dp.plane.SetProbeSources(po.SourceV4, po.SourceV6)
	inject, err := forwarder.NewInjectRing(1024)
	if err != nil {
		return err
	}
	dp.inject = inject
	dp.closers = append(dp.closers, inject.Close)
	return nil
}

// makeWorkers makes one worker per queue, sampling into that queue's ring
// when probes are on.
func (dp *dataPlane) makeWorkers(sampler forwarder.SamplerOptions) {
	for q := range dp.byQueue {
		w := forwarder.NewWorker(dp.plane)
		if dp.rings != nil {
			so := sampler
			so.Ring = dp.rings[q]
			w.EnableSampling(so)
		}
		dp.workers = append(dp.workers, w)
	}
}

// Path and Transmit make the data plane the probes' way out: a backbone's
// gateway MAC from the neighbour tracker (the last it had while the
// gateway is unresolved: Hops.ProbeMAC), frames by the first worker's
// inject ring.
func (dp *dataPlane) Path(b fib.BackboneID, family int) probes.Path {
	h := dp.plane.CurrentHops()
	if h == nil || int(b) >= len(dp.backbonePort) {
		return probes.Path{}
	}
	fam := 0
	if family == 6 {
		fam = 1
	}
	mac, ok := h.ProbeMAC(b, fam)
	if !ok {
		return probes.Path{}
	}
	src := dp.plane.Ports[h.Backbone[b][fam].Port].MAC
	return probes.Path{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(mac[:]), OK: true}
}

func (dp *dataPlane) Transmit(b fib.BackboneID, frame []byte) bool {
	if int(b) >= len(dp.backbonePort) {
		return false
	}
	return dp.inject.Send(dp.backbonePort[b], frame)
}

func roleName(r forwarder.Role) string {
	if r == forwarder.RoleCustomer {
		return "customer"
	}
	return "backbone"
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
