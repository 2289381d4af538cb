//go:build linux

package rfc2544

import (
	"cmp"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/bench/traffic"
	"github.com/pnap-project/pnap/routes"
)

// Options choose what a run measures.
type Options struct {
	Forwarders []string // default all four
	Families   []int    // 4, 6; default both
	// Sizes are Ethernet frame sizes with FCS; 0 means IMIX. IPv6 sizes
	// below traffic.MinFrameBytes(6) are raised to it.
	Sizes     []int
	Trial     time.Duration // per trial; default 1 s
	Steps     int           // halvings after the doubling phase; default 5
	Tolerance float64       // loss share a passing trial may have
	// RouteFiles are the tables the Backbones share out (see
	// backboneRoutes), one file per family or both in one.
	RouteFiles []string
	Backbones  int // default 4
	Dests      int // distinct destinations per family; default 4096
	Pnapd      string
	Progress   io.Writer
}

// AllSizes are RFC 2544's Ethernet frame sizes (section 9.1), and IMIX.
var AllSizes = []int{64, 128, 256, 512, 1024, 1280, 1518, 0}

// Row is one line of the report; the JSON names are the report's format.
type Row struct {
	Forwarder   string     `json:"forwarder"`
	Family      string     `json:"family"`
	FrameBytes  int        `json:"frame_bytes"` // 0 with IMIX
	IMIX        bool       `json:"imix,omitempty"`
	ZeroLossPPS float64    `json:"zero_loss_pps"`
	Mbps        float64    `json:"mbps"` // frame bits at that rate, FCS included
	P50us       float64    `json:"latency_p50_us"`
	P99us       float64    `json:"latency_p99_us"`
	MaxUs       float64    `json:"latency_max_us"`
	Trials      []Trial    `json:"-"`
	CDF         []CDFPoint `json:"-"` // latency at the zero-loss rate
	// FloodPPS is what arrived per second with the generator unpaced: the
	// forwarder's rate when flooded, and the search's upper bound.
	FloodPPS float64 `json:"flood_pps"`
	// PeakPPS is the most that arrived per second in any trial of the row,
	// the flood included, whatever its loss: FloodPPS well below it means
	// the forwarder carries less when flooded than it can (livelock).
	PeakPPS float64 `json:"peak_pps"`
	// WrongPath counts the frames that arrived on another backbone than
	// their destination's (and so counted as lost), summed over every
	// trial of the row: the flood, the search's trials and their reruns,
	// not the warm-up. Over all trials rather than the best one, since a
	// misroute is a bug at any rate, and the best trial, which passes
	// within the loss tolerance, could hide a few.
	WrongPath uint64 `json:"wrong_path"`
	// Retried counts trials run a second time after a small loss.
	Retried int `json:"retried_trials"`
	// HalfKernelPPS is half the kernel's zero-loss rate at this family and
	// size, and HalfP50us, HalfP99us the latency at that rate: every
	// forwarder's latency under one and the same load (0 when the run has
	// no kernel row).
	HalfKernelPPS float64 `json:"half_kernel_pps"`
	HalfP50us     float64 `json:"half_kernel_latency_p50_us"`
	HalfP99us     float64 `json:"half_kernel_latency_p99_us"`
}

func (o *Options) fill() {
	if len(o.Forwarders) == 0 {
		o.Forwarders = []string{Pnap, Kernel, AFXDPBounce, XDPRedirect}
	}
	if len(o.Families) == 0 {
		o.Families = []int{4, 6}
	}
	if len(o.Sizes) == 0 {
		o.Sizes = AllSizes
	}
	o.Trial = cmp.Or(o.Trial, time.Second)
	o.Steps = cmp.Or(o.Steps, 5)
	o.Backbones = cmp.Or(o.Backbones, 4)
	o.Dests = cmp.Or(o.Dests, 4096)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Run measures every forwarder, family and size of opt, each forwarder in
// a topology of its own, and returns the rows in that order.
func Run(tb testing.TB, opt Options) []Row {
	tb.Helper()
	opt.fill()
	prefixes := loadPrefixes(tb, opt.RouteFiles)
	split, err := splitRoutes(prefixes, opt.Backbones, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	dests, paths := map[int][]netip.Addr{}, map[int][]int{}
	for _, fam := range opt.Families {
		dests[fam] = pickDestinations(prefixes, fam, opt.Dests, rand.New(rand.NewPCG(uint64(fam), 2544)))
		if len(dests[fam]) == 0 {
			tb.Fatalf("no IPv%d destinations in %v", fam, opt.RouteFiles)
		}
		if paths[fam], err = split.expect(dests[fam]); err != nil {
			tb.Fatal(err)
		}
		fmt.Fprintf(opt.Progress, "IPv%d: %d destinations, per backbone %v\n", fam, len(dests[fam]), perBackbone(paths[fam], opt.Backbones))
	}
	var rows []Row
	// The kernel goes first: its zero-loss rates set the load at which
	// every forwarder's latency is compared.
	half := map[[2]int]float64{}
	for _, fwd := range kernelFirst(opt.Forwarders) {
		x := topo.Build(tb, topo.Options{Backbones: opt.Backbones})
		s := &setup{x: x, pnapd: opt.Pnapd, routes: split}
		start := time.Now()
		startDUT(tb, fwd, s)
		fmt.Fprintf(opt.Progress, "%s: started in %v (%d routes over %d backbones)\n", fwd, time.Since(start).Round(time.Millisecond), len(prefixes), opt.Backbones)
		rx := traffic.NewReceiver(tb)
		for i, bb := range x.Backbones {
			rx.AttachPath(tb, bb.NS, bb.Far, i)
		}
		for _, fam := range opt.Families {
			want := paths[fam]
			if !looksUp(fwd) {
				want = make([]int, len(dests[fam])) // all on backbone 0
			}
			for _, size := range opt.Sizes {
				row := measure(tb, &opt, x, rx, fwd, fam, size, dests[fam], want, half[[2]int{fam, size}])
				if fwd == Kernel {
					half[[2]int{fam, size}] = row.HalfKernelPPS
				}
				fmt.Fprintf(opt.Progress, "%-12s %s %-5s %9.0f pps zero-loss (%7.1f Mb/s), p50 %6.1f µs, p99 %7.1f µs; %9.0f pps flooded, %9.0f at peak; %d on the wrong backbone\n",
					fwd, row.Family, sizeName(row), row.ZeroLossPPS, row.Mbps, row.P50us, row.P99us, row.FloodPPS, row.PeakPPS, row.WrongPath)
				var trials []string
				for _, t := range row.Trials {
					trials = append(trials, fmt.Sprintf("%.0f:%.2g%%", t.Offered, 100*t.LossRatio()))
				}
				fmt.Fprintf(opt.Progress, "    trials (pps:loss) %s\n", strings.Join(trials, " "))
				rows = append(rows, row)
			}
		}
	}
	return rows
}

// kernelFirst is fwds with the kernel, if there, moved to the front.
func kernelFirst(fwds []string) []string {
	out := []string{}
	for _, f := range fwds {
		if f == Kernel {
			out = append(out, f)
		}
	}
	for _, f := range fwds {
		if f != Kernel {
			out = append(out, f)
		}
	}
	return out
}

// looksUp tells whether forwarder fwd looks destinations up; the others
// send everything to backbone 0 by design.
func looksUp(fwd string) bool { return fwd == Pnap || fwd == Kernel }

// perBackbone counts the destinations each of n backbones expects.
func perBackbone(paths []int, n int) []int {
	c := make([]int, n)
	for _, p := range paths {
		c[p]++
	}
	return c
}

// loadPrefixes reads the prefixes of route files.
func loadPrefixes(tb testing.TB, files []string) []netip.Prefix {
	tb.Helper()
	var prefixes []netip.Prefix
	for _, f := range files {
		rs, err := routes.ReadPrefixFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range rs {
			prefixes = append(prefixes, r.Prefix)
		}
	}
	return prefixes
}

func sizeName(r Row) string {
	if r.IMIX {
		return "IMIX"
	}
	return fmt.Sprint(r.FrameBytes)
}

// searchStart is the search's first rate; it doubles from there.
const searchStart = 25_000

// retryBelow: a failed trial that lost less than this share runs again.
const retryBelow = 0.02

// measure runs the search for one forwarder, family and size; paths[i] is
// the backbone where frames to dests[i] must arrive.
func measure(tb testing.TB, opt *Options, x *topo.Topology, rx *traffic.Receiver, fwd string, fam, size int, dests []netip.Addr, paths []int, halfKernel float64) Row {
	tb.Helper()
	row := Row{Forwarder: fwd, Family: fmt.Sprintf("ipv%d", fam), FrameBytes: size, IMIX: size == 0}
	if size != 0 {
		row.FrameBytes = max(size, traffic.MinFrameBytes(fam))
	}
	r := &rig{rx: rx, gen: newGenerator(tb, x, fam, row, dests, paths)}
	r.warmUp(tb, fwd, row.Family)
	flood, err := r.trial(0, opt.Trial)
	if err != nil {
		tb.Fatal(err)
	}
	row.FloodPPS = flood.Delivered()
	if row.FloodPPS <= 0 {
		tb.Fatalf("%s %s %d B: nothing got through when flooded (%d sent, %d on the wrong backbone)", fwd, row.Family, row.FrameBytes, flood.Sent, flood.WrongPath)
	}
	best, all, err := Search(searchStart, flood.Offered, opt.Steps, opt.Tolerance, r.retrying(opt, &row.Retried))
	if err != nil {
		tb.Fatal(err)
	}
	row.Trials = all
	row.ZeroLossPPS = best.Offered
	row.P50us, row.P99us, row.MaxUs = us(best.P50), us(best.P99), us(best.Max)
	row.CDF = best.CDF
	bits := float64(row.FrameBytes) * 8
	if row.IMIX {
		bits = imixMeanBytes(fam) * 8
	}
	row.Mbps = best.Offered * bits / 1e6
	if fwd == Kernel {
		halfKernel = row.ZeroLossPPS / 2
	}
	if halfKernel > 0 {
		t, err := r.trial(halfKernel, opt.Trial)
		if err != nil {
			tb.Fatal(err)
		}
		row.HalfKernelPPS, row.HalfP50us, row.HalfP99us = halfKernel, us(t.P50), us(t.P99)
	}
	row.PeakPPS, row.WrongPath = r.peak, r.wrongPath
	return row
}

// newGenerator sends row's frames from the lab's source host to dests,
// through the customer side of the forwarder, each tagged with the backbone
// in paths where it must arrive.
func newGenerator(tb testing.TB, x *topo.Topology, fam int, row Row, dests []netip.Addr, paths []int) *traffic.Generator {
	tb.Helper()
	src := x.Host4.Addr()
	if fam == 6 {
		src = x.Host6.Addr()
	}
	return traffic.NewGenerator(tb, x.Source, x.SourceLink, traffic.Spec{
		SrcMAC: x.SourceLink.MAC, DstMAC: x.Customer.MAC, Src: src, Dsts: dests, Paths: paths,
		FrameBytes: row.FrameBytes, IMIX: row.IMIX, SrcPort: 40000, DstPort: 9,
	})
}

// rig is the generator and receiver of one forwarder, family and size:
// every trial of a search runs on the same pair. It keeps, over every
// trial after the warm-up (reruns included), the most delivered per second
// and the frames that arrived on the wrong backbone.
type rig struct {
	rx        *traffic.Receiver
	gen       *traffic.Generator
	peak      float64
	wrongPath uint64
}

// trial offers rate (0: unpaced) for d and counts what arrived.
func (r *rig) trial(rate float64, d time.Duration) (Trial, error) {
	if err := r.rx.Reset(); err != nil {
		return Trial{}, err
	}
	sent, err := r.gen.Run(genCPU, rate, d)
	if err != nil {
		return Trial{}, err
	}
	time.Sleep(100 * time.Millisecond) // let queues drain before counting
	st, err := r.rx.Stats()
	if err != nil {
		return Trial{}, err
	}
	t := Trial{Sent: sent.Packets, Dups: st.Duplicates, WrongPath: st.WrongPath, P50: st.LatencyP50, P99: st.LatencyP99, Max: st.LatencyMax}
	for _, c := range st.LatencyCDF {
		t.CDF = append(t.CDF, CDFPoint{c.Latency, c.Fraction})
	}
	t.Received = st.Packets - st.Duplicates
	if t.Received < t.Sent {
		t.Lost = t.Sent - t.Received
	}
	if sent.Took > 0 {
		t.Offered = float64(sent.Packets) / sent.Took.Seconds()
	}
	r.peak = max(r.peak, t.Delivered())
	r.wrongPath += t.WrongPath
	return t, nil
}

// warmUp offers a low rate until frames get through: the forwarder
// resolves its next hop (pnapd asks the kernel on the first packet),
// caches fill.
func (r *rig) warmUp(tb testing.TB, fwd, family string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		w, err := r.trial(10_000, 200*time.Millisecond)
		if err != nil {
			tb.Fatal(err)
		}
		if w.Received > 0 && w.Lost == 0 {
			r.peak, r.wrongPath = 0, 0 // the row's tallies start after it
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s %s: frames do not get through after 10 s of warm-up (last: %d sent, %d received, %d on the wrong backbone)", fwd, family, w.Sent, w.Received, w.WrongPath)
		}
	}
}

// retrying is the search's trial, counting reruns in retried.
//
// A failed trial with little loss runs once more: this VM stalls its
// vCPUs for 1-5 ms several times a second (bench/emu measured it with
// a SCHED_FIFO canary), and one stall overflows the 256-frame veth
// rings at any rate, whoever forwards. Heavy loss is not retried.
func (r *rig) retrying(opt *Options, retried *int) func(rate float64) (Trial, error) {
	return func(rate float64) (Trial, error) {
		t, err := r.trial(rate, opt.Trial)
		if err != nil || t.LossRatio() <= opt.Tolerance || t.LossRatio() > retryBelow {
			return t, err
		}
		*retried++
		again, err := r.trial(rate, opt.Trial)
		if err == nil && again.LossRatio() < t.LossRatio() {
			t = again
		}
		return t, err
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// pickDestinations draws n distinct addresses of family fam, each inside a
// different prefix drawn at random from the table, so lookups spread over
// the whole table. Prefixes that overlap the lab's own ranges or that no
// forwarder routes (multicast, loopback, link-local, non-global IPv6) are
// skipped.
func pickDestinations(prefixes []netip.Prefix, fam, n int, rng *rand.Rand) []netip.Addr {
	var pool []netip.Prefix
	lab4, lab6 := netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:2::/48")
	global6 := netip.MustParsePrefix("2000::/3")
	for _, p := range prefixes {
		a := p.Addr()
		switch {
		case fam == 4 && a.Is4():
			if p.Overlaps(lab4) || p.Bits() < 8 || !a.IsGlobalUnicast() || a.IsPrivate() {
				continue
			}
		case fam == 6 && a.Is6():
			if p.Overlaps(lab6) || p.Bits() < 16 || !global6.Contains(a) {
				continue
			}
		default:
			continue
		}
		pool = append(pool, p)
	}
	rng.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, p := range pool {
		if len(out) == n {
			break
		}
		a := randomIn(p, rng)
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// randomIn is a random address inside p.
func randomIn(p netip.Prefix, rng *rand.Rand) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		if rng.IntN(2) == 1 {
			b[i/8] |= 0x80 >> (i % 8)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// imixMeanBytes is the mean frame size of the generator's IMIX for fam.
func imixMeanBytes(fam int) float64 {
	s := traffic.IMIXSizes(fam)
	return float64(7*s[0]+4*s[1]+s[2]) / 12
}
