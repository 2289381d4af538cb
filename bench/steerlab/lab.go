//go:build linux

package steerlab

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/emu"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
)

// Options shape a Lab.
type Options struct {
	Prefixes   int      // destination prefixes served behind every backbone (each family)
	RouteFiles []string // full tables every backbone also holds (none: only the served prefixes)
	Delays     []time.Duration
	Jitter     time.Duration // on every backbone's way out from the start
	Pnapd      string        // the pnapd binary
	Passive    bool          // [probes] active = false: in-band samples only
	// CommitMbps is each backbone's commit_mbps (none where 0); BulkMbps
	// the bulk traffic to every destination that fills it (StartBulk).
	CommitMbps []float64
	BulkMbps   float64
	// Optimizer settings written to pnapd's configuration; MinSamples is
	// 4 if 0.
	Window, ProbeInterval, OptimizerInterval, HoldDown time.Duration
	MinSamples                                         int
	// Dense, if not 0, serves that many IPv4 /30s from 198.19.0.0 instead
	// of Prefixes /24s and /64s: the scale lab. The Internet answers all of
	// 198.19.0.0/16 (a local route, no address each) and every backbone
	// reads them from a route file. DestDelay is each backbone's delay per
	// /24 of them from the start (see emu.DestDelays), ProbeRate pnapd's
	// rate_per_backbone (2000 if 0).
	Dense     int
	DestDelay []*emu.DestDelays
	ProbeRate int
	// TrafficSampleEvery is pnapd's traffic_sample_every (its default if 0).
	TrafficSampleEvery int
	// BGP, if set, has every backbone's router (a BIRD) announce the
	// served prefixes to pnapd over BGP instead of static routes (see
	// bgp.go). Not with Dense.
	BGP bool
}

// Lab is the demo's network with pnapd running.
type Lab struct {
	X        *topo.Topology
	Internet *lab.NS // the servers
	Opt      Options
	api      *http.Client
	pnapd    *topo.Pnapd
	Dests    []netip.Addr // one host per served prefix, IPv4 then IPv6
	Prefix   []netip.Prefix
	Backbone []string // names
	// OracleDests are the destinations the oracle measures, in turn: the
	// IPv4 ones of Dests, or with Dense the first of every /24.
	OracleDests []netip.Addr
	routeFile   string // with Dense: the served prefixes, one a line
}

// servedNet holds every served prefix.
var servedNet = netip.MustParsePrefix("198.19.0.0/16")

// dense is the k-th /30 of servedNet and its first host.
func dense(k int) (netip.Addr, netip.Prefix) {
	b := servedNet.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(k)<<2
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v) | 1})
	return a, netip.PrefixFrom(a, 30).Masked()
}

const echoPort = 5001

// served is host k of the prefixes behind every backbone.
func served(k int, v6 bool) (netip.Addr, netip.Prefix) {
	if v6 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:2:0:f0%02x::1", k))
		return a, netip.PrefixFrom(a, 64).Masked()
	}
	a := netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", k))
	return a, netip.PrefixFrom(a, 24).Masked()
}

// Build makes the lab and starts pnapd in it; everything goes with tb.
func Build(tb testing.TB, opt Options) *Lab {
	tb.Helper()
	if opt.BGP {
		if opt.Dense > 0 {
			tb.Fatal("steerlab: the scale lab's routes come from a file, not BGP")
		}
		lab.RequireBIRD(tb)
	}
	x := topo.Build(tb, topo.Options{Backbones: len(opt.Delays), Emulated: true})
	l := &Lab{X: x, Opt: opt}
	l.serve(tb)
	l.Internet.ServeEcho(tb, echoPort)
	for i, bb := range x.Backbones {
		l.Backbone = append(l.Backbone, bb.Name)
		near, far := lab.Connect(tb, bb.NS, "n", l.Internet, fmt.Sprintf("i%d", i), lab.VethOpts{})
		near.AddAddr(tb, fmt.Sprintf("198.18.%d.1/24", 110+i))
		near.AddAddr(tb, fmt.Sprintf("2001:2:0:%d::1/64", 110+i))
		far.AddAddr(tb, fmt.Sprintf("198.18.%d.2/24", 110+i))
		far.AddAddr(tb, fmt.Sprintf("2001:2:0:%d::2/64", 110+i))
		bb.NS.Sysctl(tb, "net/ipv4/ip_forward", "1")
		bb.NS.Sysctl(tb, "net/ipv6/conf/all/forwarding", "1")
		bb.NS.AddRoute(tb, "198.19.0.0/16", fmt.Sprintf("198.18.%d.2", 110+i))
		bb.NS.AddRoute(tb, "2001:2:0:f000::/52", fmt.Sprintf("2001:2:0:%d::2", 110+i))
		if i == 0 {
			l.Internet.AddRoute(tb, "0.0.0.0/0", "198.18.110.1")
			l.Internet.AddRoute(tb, "::/0", "2001:2:0:110::1")
		}
		var dd *emu.DestDelays
		if i < len(opt.DestDelay) {
			dd = opt.DestDelay[i]
		}
		if err := bb.Emu.Set(emu.Params{Delay: opt.Delays[i], Jitter: l.jitter(i), DestDelay: dd}, emu.Params{}); err != nil {
			tb.Fatal(err)
		}
	}
	dir := tb.TempDir()
	os.Chmod(dir, 0o755)
	if opt.Dense > 0 {
		l.routeFile = filepath.Join(dir, "served.txt")
		var b strings.Builder
		for _, p := range l.Prefix {
			b.WriteString(p.String() + "\n")
		}
		if err := os.WriteFile(l.routeFile, []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(conf, []byte(l.config(sock)), 0o644); err != nil {
		tb.Fatal(err)
	}
	l.api = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	if opt.BGP {
		l.startBIRDs(tb)
	}
	l.startPnapd(tb, conf)
	if opt.BGP {
		l.waitRoutes(tb)
	}
	return l
}

// serve makes the served prefixes, their hosts and the "Internet" that
// answers them: one network behind all the backbones, the same servers
// whichever way a flow goes, so a re-steered TCP connection carries on. Its
// answers return through backbone 0 (the emulators delay and drop only on
// the way out, so the way back costs nothing either way).
func (l *Lab) serve(tb testing.TB) {
	l.Internet = lab.NewNS(tb, "inet")
	lo := l.Internet.Loopback(tb)
	if n := l.Opt.Dense; n > 0 {
		if n > 1<<14 {
			tb.Fatalf("steerlab: %d dense prefixes: 198.19.0.0/16 holds %d /30s", n, 1<<14)
		}
		for k := range n {
			a, p := dense(k)
			l.Dests, l.Prefix = append(l.Dests, a), append(l.Prefix, p)
			if k%64 == 0 {
				l.OracleDests = append(l.OracleDests, a)
			}
		}
		l.Internet.AddLocalRoute(tb, servedNet)
		return
	}
	for _, v6 := range []bool{false, true} {
		for k := range l.Opt.Prefixes {
			a, p := served(k, v6)
			l.Dests, l.Prefix = append(l.Dests, a), append(l.Prefix, p)
			lo.AddAddr(tb, netip.PrefixFrom(a, a.BitLen()).String())
			if !v6 {
				l.OracleDests = append(l.OracleDests, a)
			}
		}
	}
}

// jitter is backbone i's jitter at the start: Options.Jitter, less where
// it would exceed the delay (the emulator refuses nothing, but a delay
// cannot go below 0).
func (l *Lab) jitter(i int) time.Duration { return min(l.Opt.Jitter, l.Opt.Delays[i]) }

func (l *Lab) config(sock string) string {
	x, o := l.X, l.Opt
	var b strings.Builder
	b.WriteString("[forwarder]\nqueues = 1\nxdp_mode = \"native\"\n")
	if o.Dense > 0 {
		// 6,000 frames/s come home by bb-0 (echo answers and probe
		// answers): a 256-entry fill ring covers 40 ms of a worker not
		// scheduled, and on this 2-core VM it ran dry 300-1,300 times a
		// run; every probe answer lost there read as path loss, and
		// 2,000-4,000 lower-loss moves followed (480-740 flaps). 2048
		// entries: 10 flaps.
		b.WriteString("frames = 4096\nring_size = 2048\n")
	}
	fmt.Fprintf(&b, "\n[[customer]]\nname = \"customer\"\ninterface = %q\naddress_v4 = %q\naddress_v6 = %q\n",
		x.Customer.Name, x.CustomerAddr4, x.CustomerAddr6)
	var static []string
	if o.BGP {
		b.WriteString(l.bgpConfig())
	}
	if o.Dense == 0 && !o.BGP {
		for _, p := range l.Prefix {
			static = append(static, fmt.Sprintf("%q", p))
		}
	}
	for i, bb := range x.Backbones {
		fmt.Fprintf(&b, "\n[[backbone]]\nname = %q\ninterface = %q\ngateway_v4 = %q\ngateway_v6 = %q\npreference = %d\nstatic = [%s]\n",
			bb.Name, bb.Port.Name, bb.Gateway4, bb.Gateway6, 100+10*i, strings.Join(static, ", "))
		if o.BGP {
			b.WriteString(l.backboneBGPConfig(i))
		}
		if i < len(o.CommitMbps) && o.CommitMbps[i] > 0 {
			fmt.Fprintf(&b, "commit_mbps = %g\n", o.CommitMbps[i])
		}
		files := o.RouteFiles
		if l.routeFile != "" {
			files = append([]string{l.routeFile}, files...)
		}
		for _, f := range files {
			fmt.Fprintf(&b, "\n  [[backbone.route_file]]\n  path = %q\n", f)
		}
	}
	fmt.Fprintf(&b, "\n[probes]\ntop_prefixes = %d\ninterval = %q\ntimeout = \"%dms\"\nrate_per_backbone = %d\nsource_v4 = \"198.18.0.200\"\nsource_v6 = \"2001:2:0:1::200\"\ntcp_ports = [%d]\nwindow = %q\n",
		max(4*o.Prefixes, o.Dense), o.ProbeInterval.String(), min(400, o.ProbeInterval.Milliseconds()*8/10), cmp.Or(o.ProbeRate, 2000), echoPort, o.Window.String())
	if o.Passive {
		b.WriteString("active = false\n")
	}
	if o.TrafficSampleEvery > 0 {
		fmt.Fprintf(&b, "traffic_sample_every = %d\n", o.TrafficSampleEvery)
	}
	fmt.Fprintf(&b, "\n[optimizer]\ninterval = %q\nhold_down = %q\nmin_samples = %d\nmin_improvement_ms = 5\nmin_improvement_pct = 10\nfailure_hold = \"10s\"\n",
		o.OptimizerInterval.String(), o.HoldDown.String(), cmp.Or(o.MinSamples, 4))
	fmt.Fprintf(&b, "\n[api]\nlisten = \"unix:%s\"\n", sock)
	// A lab keeps nothing between runs: restored moves would start the
	// next scenario from the last one's choices.
	b.WriteString("\n[state]\ndir = \"\"\n")
	return b.String()
}

// startPnapd runs pnapd in the DUT namespace until tb ends (or Ctrl-C).
func (l *Lab) startPnapd(tb testing.TB, conf string) {
	p, ready := topo.StartPnapd(tb, exec.Command(l.Opt.Pnapd, "run", "-c", conf), l.X.DUT.Do)
	if !ready {
		tb.Fatalf("pnapd did not start forwarding:\n%s", p)
	}
	l.pnapd = p
}

// Logs is what pnapd logged so far.
func (l *Lab) Logs() string { return l.pnapd.String() }

// get fetches a JSON document from pnapd's status API.
func (l *Lab) get(path string, out any) error {
	return topo.GetJSON(l.api, path, out)
}

// Selection is which backbone carries each served prefix now, from
// pnapd's FIB (fib show for one host per prefix).
func (l *Lab) Selection() (map[netip.Prefix]string, error) {
	if l.Opt.Dense > 0 {
		return l.selectionOfMany()
	}
	out := map[netip.Prefix]string{}
	for i, a := range l.Dests {
		var j struct{ Backbone string }
		if err := l.get("/v1/fib?addr="+a.String(), &j); err != nil {
			return nil, err
		}
		out[l.Prefix[i]] = j.Backbone
	}
	return out, nil
}

// selectionOfMany is Selection from each backbone's route list (GET
// /v1/routes, the prefixes it carries marked selected): a request per
// backbone rather than per prefix.
func (l *Lab) selectionOfMany() (map[netip.Prefix]string, error) {
	out := make(map[netip.Prefix]string, len(l.Prefix))
	for _, b := range l.Backbone {
		var rs []struct {
			Prefix   netip.Prefix `json:"prefix"`
			Selected bool         `json:"selected"`
		}
		if err := l.get(fmt.Sprintf("/v1/routes?backbone=%s&limit=%d", b, 2*len(l.Prefix)), &rs); err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Selected {
				out[r.Prefix] = b
			}
		}
	}
	return out, nil
}

// BackboneRTT is pnapd's measured median RTT per backbone, in ms (0: none).
func (l *Lab) BackboneRTT() (map[string]float64, error) {
	var bbs []struct {
		Name string   `json:"name"`
		RTT  *float64 `json:"median_rtt_ms"`
	}
	if err := l.get("/v1/backbones", &bbs); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, b := range bbs {
		if b.RTT != nil {
			out[b.Name] = *b.RTT
		}
	}
	return out, nil
}

// ReceivedBytes is what backbone i's far end has received so far: the
// traffic pnap sent into it, counted outside pnap.
func (l *Lab) ReceivedBytes(i int) (uint64, error) {
	bb := l.X.Backbones[i]
	link, err := bb.NS.Handle().LinkByName(bb.Far.Name)
	if err != nil {
		return 0, err
	}
	return link.Attrs().Statistics.RxBytes, nil
}

// Metrics is pnapd's /metrics now, as text.
func (l *Lab) Metrics() (string, error) {
	resp, err := l.api.Get("http://pnapd/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// Decisions counts the optimizer's selection changes so far.
func (l *Lab) Decisions() (int, error) {
	var ds []json.RawMessage
	err := l.get("/v1/decisions?limit=10000", &ds)
	return len(ds), err
}
