//go:build linux

package topo

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/pnap-project/pnap/bench/emu"
	"github.com/pnap-project/pnap/bench/lab"
)

// Options shape a Topology.
type Options struct {
	// Backbones is the number of backbone ports and namespaces; default 4.
	Backbones int
	// Emulated puts a backbone emulator (bench/emu) on each backbone's
	// path: DUT port → emulator namespace → backbone namespace. It starts
	// with no delay and no loss; Backbone.Emu.Set changes that.
	Emulated bool
}

// Backbone is one backbone: the DUT's port, the link at the far end and
// the addresses on both.
type Backbone struct {
	Name string // "bb-0", ...
	NS   *lab.NS
	// Port is the DUT's interface toward the backbone ("pnap-bbN");
	// Far is the backbone namespace's end, which holds the gateway addresses.
	Port, Far *lab.Link
	// Emu is the emulator on the path, with Options.Emulated; "ab" is the
	// DUT-to-backbone direction.
	Emu                *emu.Emulator
	Addr4, Addr6       netip.Prefix // the DUT's addresses on Port
	Gateway4, Gateway6 netip.Addr   // on Far
}

// Topology is source → DUT → backbones. Addresses are from the benchmark
// ranges 198.18.0.0/15 and 2001:2::/48 (RFC 2544, RFC 5180), as in
// configs/examples/lab.toml: the customer subnet is 198.18.0.0/24 and
// 2001:2:0:1::/64, backbone i's is 198.18.(100+i).0/24 and 2001:2:0:(100+i)::/64
// with the gateway at .1 and the DUT at .2.
type Topology struct {
	Source     *lab.NS
	SourceLink *lab.Link // the source's end toward the DUT
	// Host4 and Host6 are the source's addresses.
	Host4, Host6 netip.Prefix

	DUT      *lab.NS
	Customer *lab.Link // the DUT's customer port ("pnap-c0")
	// CustomerAddr4 and CustomerAddr6 are the DUT's addresses on Customer.
	CustomerAddr4, CustomerAddr6 netip.Prefix

	Backbones []Backbone
}

// Build creates the namespaces and veths (one queue each, TX checksum
// offload off; see lab.Connect) and their addresses. The DUT's kernel does
// not forward (ip_forward 0) until a baseline turns it on.
func Build(tb testing.TB, opt Options) *Topology {
	tb.Helper()
	if opt.Backbones == 0 {
		opt.Backbones = 4
	}
	if opt.Backbones < 1 || opt.Backbones > 100 {
		tb.Fatalf("topo: %d backbones: use 1 to 100", opt.Backbones)
	}
	t := &Topology{Source: lab.NewNS(tb, "src"), DUT: lab.NewNS(tb, "dut")}
	t.SourceLink, t.Customer = lab.Connect(tb, t.Source, "g", t.DUT, "pnap-c0", lab.VethOpts{})
	t.Host4, t.Host6 = netip.MustParsePrefix("198.18.0.7/24"), netip.MustParsePrefix("2001:2:0:1::7/64")
	t.CustomerAddr4, t.CustomerAddr6 = netip.MustParsePrefix("198.18.0.1/24"), netip.MustParsePrefix("2001:2:0:1::1/64")
	t.SourceLink.AddAddr(tb, t.Host4.String())
	t.SourceLink.AddAddr(tb, t.Host6.String())
	t.Customer.AddAddr(tb, t.CustomerAddr4.String())
	t.Customer.AddAddr(tb, t.CustomerAddr6.String())
	t.Source.AddRoute(tb, "0.0.0.0/0", t.CustomerAddr4.Addr().String())
	t.Source.AddRoute(tb, "::/0", t.CustomerAddr6.Addr().String())
	for i := range opt.Backbones {
		ns := lab.NewNS(tb, fmt.Sprintf("bb%d", i))
		var port, far *lab.Link
		var em *emu.Emulator
		if opt.Emulated {
			ens := lab.NewNS(tb, fmt.Sprintf("em%d", i))
			var in, out *lab.Link
			port, in = lab.Connect(tb, t.DUT, fmt.Sprintf("pnap-bb%d", i), ens, "i", lab.VethOpts{})
			out, far = lab.Connect(tb, ens, "o", ns, "b", lab.VethOpts{})
			em = emu.New(tb, ens, in, out, emu.Params{}, emu.Params{})
		} else {
			port, far = lab.Connect(tb, t.DUT, fmt.Sprintf("pnap-bb%d", i), ns, "b", lab.VethOpts{})
		}
		b := Backbone{
			Name: fmt.Sprintf("bb-%d", i), NS: ns, Port: port, Far: far, Emu: em,
			Addr4:    netip.MustParsePrefix(fmt.Sprintf("198.18.%d.2/24", 100+i)),
			Addr6:    netip.MustParsePrefix(fmt.Sprintf("2001:2:0:%d::2/64", 100+i)),
			Gateway4: netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", 100+i)),
			Gateway6: netip.MustParseAddr(fmt.Sprintf("2001:2:0:%d::1", 100+i)),
		}
		port.AddAddr(tb, b.Addr4.String())
		port.AddAddr(tb, b.Addr6.String())
		far.AddAddr(tb, netip.PrefixFrom(b.Gateway4, 24).String())
		far.AddAddr(tb, netip.PrefixFrom(b.Gateway6, 64).String())
		// Replies to the source go back through the DUT.
		ns.AddRoute(tb, "198.18.0.0/24", b.Addr4.Addr().String())
		ns.AddRoute(tb, "2001:2:0:1::/64", b.Addr6.Addr().String())
		t.Backbones = append(t.Backbones, b)
	}
	t.DUT.Sysctl(tb, "net/ipv4/ip_forward", "0")
	t.DUT.Sysctl(tb, "net/ipv6/conf/all/forwarding", "0")
	return t
}

// PnapdConfig is a pnapd configuration for this topology: one customer,
// every backbone holding the routes of the given files (preference in
// backbone order), workers pinned to cpus.
func (t *Topology) PnapdConfig(routeFiles []string, cpus []int) string {
	same := make([][]string, len(t.Backbones))
	for i := range same {
		same[i] = routeFiles
	}
	return t.PnapdConfigPerBackbone(same, cpus)
}

// PnapdConfigPerBackbone is PnapdConfig with backbone i holding the routes
// of routeFiles[i] (none past its end): backbones with different route sets,
// so that pnapd's selection spreads destinations over them.
func (t *Topology) PnapdConfigPerBackbone(routeFiles [][]string, cpus []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[forwarder]\nqueues = 1\nxdp_mode = \"native\" # veth runs XDP natively; AF_XDP is copy mode either way\n")
	if len(cpus) > 0 {
		fmt.Fprintf(&b, "cpus = %s\n", strings.Join(strings.Fields(fmt.Sprint(cpus)), ", "))
	}
	fmt.Fprintf(&b, "\n[[customer]]\nname = \"source\"\ninterface = %q\naddress_v4 = %q\naddress_v6 = %q\n",
		t.Customer.Name, t.CustomerAddr4, t.CustomerAddr6)
	for i, bb := range t.Backbones {
		fmt.Fprintf(&b, "\n[[backbone]]\nname = %q\ninterface = %q\ngateway_v4 = %q\ngateway_v6 = %q\npreference = %d\n",
			bb.Name, bb.Port.Name, bb.Gateway4, bb.Gateway6, i)
		if i >= len(routeFiles) {
			continue
		}
		for _, f := range routeFiles[i] {
			fmt.Fprintf(&b, "\n  [[backbone.route_file]]\n  path = %q\n", f)
		}
	}
	// A benchmark keeps no pins between runs.
	b.WriteString("\n[state]\ndir = \"\"\n")
	return b.String()
}
