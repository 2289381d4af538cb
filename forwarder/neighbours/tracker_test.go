package neighbours

import (
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// neighLab is pnap's namespace with a backbone link to "bb" and a customer
// link to "cust".
type neighLab struct {
	pnap, bb, cust *lab.NS
	pb, bl         *lab.Link // pnap's backbone end, bb's end
	pc, cl         *lab.Link // pnap's customer end, the customer's end
	plane          *forwarder.Plane
}

func newNeighLab(t *testing.T) *neighLab {
	lab.RequireRoot(t)
	x := &neighLab{pnap: lab.NewNS(t, "pnap"), bb: lab.NewNS(t, "bb"), cust: lab.NewNS(t, "cust")}
	x.pb, x.bl = lab.Connect(t, x.pnap, "bb0", x.bb, "up", lab.VethOpts{})
	x.pc, x.cl = lab.Connect(t, x.pnap, "c0", x.cust, "up", lab.VethOpts{})
	x.pb.AddAddr(t, "198.18.100.2/24", "2001:2:0:100::2/64")
	x.bl.AddAddr(t, "198.18.100.1/24", "2001:2:0:100::1/64")
	x.pc.AddAddr(t, "198.18.0.1/24", "2001:2:0:1::1/64")
	x.plane = &forwarder.Plane{Ports: []forwarder.PortInfo{{Name: "c0", MAC: forwarder.MAC(x.pc.MAC)}, {Name: "bb0", MAC: forwarder.MAC(x.pb.MAC)}}}
	return x
}

// awaitLinkLocal waits until l's IPv6 link-local address has passed
// duplicate address detection. Until then the kernel sends no neighbour
// solicitation from l (it needs a usable link-local source), so an IPv6
// gateway cannot resolve in the first second or two after the link came
// up: a daemon's links have long been up, a fresh lab's have not.
func (x *neighLab) awaitLinkLocal(t *testing.T, l *lab.Link) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		addrs, err := l.NS.Handle().AddrList(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: l.Index}}, netlink.FAMILY_V6)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range addrs {
			if a.IP.IsLinkLocalUnicast() && a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_OPTIMISTIC) == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no usable link-local address after 5 s: %v", l, addrs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (x *neighLab) spec() HopSpec {
	return HopSpec{
		Backbones: []BackboneHop{{Port: 1, Ifindex: x.pb.Index,
			Gateway4: netip.MustParseAddr("198.18.100.1"), Gateway6: netip.MustParseAddr("2001:2:0:100::1")}},
		Customers: []CustomerHop{{Port: 0, Ifindex: x.pc.Index,
			Subnet4: netip.MustParsePrefix("198.18.0.1/24"), Subnet6: netip.MustParsePrefix("2001:2:0:1::1/64")}},
	}
}

// run starts n.Run (inside pnap's namespace when inNS) and stops it at
// cleanup, checking that it returns nil promptly.
func (x *neighLab) run(t *testing.T, n *Tracker, inNS bool) {
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		if inNS {
			done <- x.pnap.Do(func() error { return n.Run(stop) })
		} else {
			done <- n.Run(stop)
		}
	}()
	t.Cleanup(func() {
		close(stop)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Second): // close() gives up draining only after 2 s
			t.Error("Run did not return within 1 s of stop: subscription not released")
		}
	})
}

// await polls the plane until ok holds for its current Hops.
func await(t *testing.T, p *forwarder.Plane, what string, ok func(*forwarder.Hops) bool) *forwarder.Hops {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		h := p.CurrentHops()
		if h != nil && ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			if h == nil {
				t.Fatalf("within 3 s: %s; no hops published", what)
			}
			t.Fatalf("within 3 s: %s; now backbone 0 %+v, customer 0 %+v, Neigh4 %v, Neigh6 %v", what, h.Backbone[0], h.Customer[0], h.Neigh4, h.Neigh6)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cloneHops is a deep copy, to compare against later.
func cloneHops(h *forwarder.Hops) forwarder.Hops {
	c := *h
	c.Neigh4, c.Neigh6 = maps.Clone(h.Neigh4), maps.Clone(h.Neigh6)
	return c
}

func sameHops(a, b *forwarder.Hops) bool {
	return a.Backbone == b.Backbone && a.Customer == b.Customer && a.Subnet4 == b.Subnet4 && a.Subnet6 == b.Subnet6 &&
		maps.Equal(a.Neigh4, b.Neigh4) && maps.Equal(a.Neigh6, b.Neigh6)
}

func TestNeighboursResolveAndFollow(t *testing.T) {
	x := newNeighLab(t)
	var n *Tracker
	err := x.pnap.Do(func() (err error) {
		n, err = New(x.plane, x.spec(), Options{Handle: x.pnap.Handle(), OnError: func(err error) { t.Logf("OnError: %v", err) }})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	first := x.plane.CurrentHops()
	if first == nil || first.Backbone[0][forwarder.Fam4].Resolved || first.Backbone[0][forwarder.Fam4].Port != 1 {
		t.Fatalf("New published %+v, want port 1 unresolved", first)
	}
	if have, want := n.Resolved(); have != 0 || want != 2 {
		t.Fatalf("Resolved() = %d, %d before Run; want 0, 2", have, want)
	}
	firstCopy := cloneHops(first)
	x.awaitLinkLocal(t, x.pb)
	x.run(t, n, true)

	// 1. No traffic: only the resolve trigger can make the kernel ARP/ND.
	bbMAC := forwarder.MAC(x.bl.MAC)
	h := await(t, x.plane, "both gateways resolved to bb's MAC", func(h *forwarder.Hops) bool {
		b := h.Backbone[0]
		return b[forwarder.Fam4].Resolved && b[forwarder.Fam6].Resolved && b[forwarder.Fam4].MAC == bbMAC && b[forwarder.Fam6].MAC == bbMAC
	})
	if h.Backbone[0][forwarder.Fam4].Port != 1 || h.Backbone[0][forwarder.Fam6].Port != 1 {
		t.Errorf("backbone ports %d/%d, want 1", h.Backbone[0][forwarder.Fam4].Port, h.Backbone[0][forwarder.Fam6].Port)
	}
	if have, want := n.Resolved(); have != 2 || want != 2 {
		t.Errorf("Resolved() = %d, %d; want 2, 2", have, want)
	}
	if !sameHops(first, &firstCopy) {
		t.Error("the first published Hops was modified")
	}

	// 2. bb's MAC changes and bb tells its neighbours (gratuitous ARP,
	// unsolicited NA; off by default): pnap's kernel updates its entries
	// and Hops follow.
	x.bb.Sysctl(t, "net/ipv4/conf/up/arp_notify", "1")
	x.bb.Sysctl(t, "net/ipv6/conf/up/ndisc_notify", "1")
	before := x.plane.CurrentHops()
	beforeCopy := cloneHops(before)
	newMAC := net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}
	if err := x.bb.Handle().LinkSetHardwareAddr(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: x.bl.Index}}, newMAC); err != nil {
		t.Fatal(err)
	}
	await(t, x.plane, "both gateways at bb's new MAC", func(h *forwarder.Hops) bool {
		b := h.Backbone[0]
		return b[forwarder.Fam4].Resolved && b[forwarder.Fam6].Resolved && b[forwarder.Fam4].MAC == forwarder.MAC(newMAC) && b[forwarder.Fam6].MAC == forwarder.MAC(newMAC)
	})

	// 4. What was published before is untouched.
	if !sameHops(before, &beforeCopy) {
		t.Error("a published Hops was modified after publishing")
	}
	if x.plane.CurrentHops() == before {
		t.Error("a change was published by mutating the current Hops in place")
	}

	// A gateway that is gone (its address removed, its entry deleted) is
	// unresolved; when it is back it is resolved again without traffic.
	gw := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.18.100.1"), Mask: net.CIDRMask(24, 32)}}
	bl := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: x.bl.Index}}
	if err := x.bb.Handle().AddrDel(bl, gw); err != nil {
		t.Fatal(err)
	}
	if err := x.pnap.Handle().NeighDel(&netlink.Neigh{LinkIndex: x.pb.Index, IP: net.ParseIP("198.18.100.1")}); err != nil {
		t.Fatal(err)
	}
	h = await(t, x.plane, "IPv4 gateway unresolved once gone", func(h *forwarder.Hops) bool {
		b := h.Backbone[0]
		return !b[forwarder.Fam4].Resolved && b[forwarder.Fam4].Port == 1 && b[forwarder.Fam6].Resolved
	})
	// Probes still go to the MAC it had, to see it come back.
	if mac, ok := h.ProbeMAC(0, forwarder.Fam4); !ok || mac != forwarder.MAC(newMAC) {
		t.Errorf("ProbeMAC of the gone gateway = %v, %v; want its last MAC %v", mac, ok, forwarder.MAC(newMAC))
	}
	if have, want := n.Resolved(); have != 1 || want != 2 {
		t.Errorf("Resolved() = %d, %d; want 1, 2", have, want)
	}
	if err := x.bb.Handle().AddrAdd(bl, gw); err != nil {
		t.Fatal(err)
	}
	await(t, x.plane, "IPv4 gateway resolved again once back", func(h *forwarder.Hops) bool {
		b := h.Backbone[0][forwarder.Fam4]
		return b.Resolved && b.MAC == forwarder.MAC(newMAC)
	})
}

func TestNeighboursConnectedSubnet(t *testing.T) {
	x := newNeighLab(t)
	spec := x.spec()
	spec.Customers[0].NextHop4 = netip.MustParseAddr("198.18.0.99") // never answers
	// Subscribe through the Namespace option rather than from inside Do.
	ns := netns.NsHandle(x.pnap.FD())
	n, err := New(x.plane, spec, Options{Handle: x.pnap.Handle(), Namespace: &ns, ResolveEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	x.run(t, n, false)

	hostMAC := net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x07}
	before := x.plane.CurrentHops()
	beforeCopy := cloneHops(before)
	x.pnap.AddNeigh(t, x.pc, "198.18.0.7", hostMAC)
	x.pnap.AddNeigh(t, x.pc, "198.18.1.7", hostMAC)    // outside the subnet
	x.pnap.AddNeigh(t, x.pb, "198.18.0.8", hostMAC)    // in the subnet, wrong port
	x.pnap.AddNeigh(t, x.pc, "2001:2:0:1::7", hostMAC) // IPv6 subnet
	x.pnap.AddNeigh(t, x.pc, "2001:2:0:2::7", hostMAC) // outside it
	h := await(t, x.plane, "198.18.0.7 and 2001:2:0:1::7 in Neigh4/Neigh6", func(h *forwarder.Hops) bool {
		return h.Neigh4[[4]byte{198, 18, 0, 7}] == forwarder.MAC(hostMAC) && h.Neigh6[netip.MustParseAddr("2001:2:0:1::7").As16()] == forwarder.MAC(hostMAC)
	})
	if len(h.Neigh4) != 1 || len(h.Neigh6) != 1 {
		t.Errorf("Neigh4 %v, Neigh6 %v; want only the two subnet hosts", h.Neigh4, h.Neigh6)
	}
	for f := range 2 {
		if c := h.Customer[0][f]; c.Port != 0 || c.Resolved {
			t.Errorf("customer family %d: %+v, want port 0 unresolved", f, c)
		}
	}
	want := forwarder.Hops{}
	want.SetSubnet(0, netip.MustParsePrefix("198.18.0.0/24"))
	want.SetSubnet(0, netip.MustParsePrefix("2001:2:0:1::/64"))
	if h.Subnet4[0] != want.Subnet4[0] || h.Subnet6[0] != want.Subnet6[0] {
		t.Errorf("subnets %+v %+v, want %+v %+v", h.Subnet4[0], h.Subnet6[0], want.Subnet4[0], want.Subnet6[0])
	}
	if _, want := n.Resolved(); want != 3 {
		t.Errorf("Resolved() wants %d next hops, want 3 (two gateways, one customer next hop)", want)
	}

	// Removing the host takes it out again.
	if err := x.pnap.Handle().NeighDel(&netlink.Neigh{LinkIndex: x.pc.Index, IP: net.ParseIP("198.18.0.7")}); err != nil {
		t.Fatal(err)
	}
	await(t, x.plane, "198.18.0.7 gone from Neigh4", func(h *forwarder.Hops) bool {
		_, ok := h.Neigh4[[4]byte{198, 18, 0, 7}]
		return !ok
	})
	if !sameHops(before, &beforeCopy) {
		t.Error("a published Hops was modified after publishing")
	}
}

func TestNeighboursBadSpec(t *testing.T) {
	p := &forwarder.Plane{Ports: make([]forwarder.PortInfo, 2)}
	for _, s := range []HopSpec{
		{Backbones: []BackboneHop{{Port: 1, Ifindex: 1, Gateway4: netip.MustParseAddr("2001:2::1")}}},
		{Backbones: []BackboneHop{{Port: 2, Ifindex: 1, Gateway4: netip.MustParseAddr("198.18.0.1")}}},
		{Backbones: []BackboneHop{{Port: 1, Gateway6: netip.MustParseAddr("2001:2::1")}}},
		{Customers: []CustomerHop{{Ifindex: 1, Subnet6: netip.MustParsePrefix("198.18.0.0/24")}}},
		{Backbones: make([]BackboneHop, fib.MaxBackbones+1)},
	} {
		if _, err := New(p, s, Options{}); err == nil {
			t.Errorf("spec %+v accepted", s)
		}
		if p.CurrentHops() != nil {
			t.Errorf("spec %+v: Hops published", s)
		}
	}
}

func TestNeighboursCoalesce(t *testing.T) {
	x := newNeighLab(t)
	n, err := New(x.plane, x.spec(), Options{Handle: x.pnap.Handle()})
	if err != nil {
		t.Fatal(err)
	}
	x.run(t, n, true)
	await(t, x.plane, "first dump published", func(*forwarder.Hops) bool { return n.rebuilds.Load() >= 2 })

	// A burst of 250 neighbours: all of them arrive, in far fewer rebuilds.
	mac := net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x00}
	before := n.rebuilds.Load()
	start := time.Now()
	for i := 1; i <= 250; i++ {
		x.pnap.AddNeigh(t, x.pc, netip.AddrFrom4([4]byte{198, 18, 0, byte(i)}).String(), mac)
	}
	await(t, x.plane, "250 subnet neighbours", func(h *forwarder.Hops) bool { return len(h.Neigh4) == 250 })
	took := time.Since(start)
	// Gateway resolution may add a few rebuilds of its own.
	rebuilds := n.rebuilds.Load() - before
	if limit := uint64(took/coalesceWindow) + 4; rebuilds > limit {
		t.Errorf("%d rebuilds in %v, want at most %d (one per %v)", rebuilds, took, limit, coalesceWindow)
	}
	t.Logf("250 neighbours in %v: %d rebuilds", took.Round(time.Millisecond), rebuilds)
}
