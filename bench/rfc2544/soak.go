//go:build linux

package rfc2544

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/bench/traffic"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// SoakOptions shape a soak run (`make soak`): pnapd with the full tables on
// three backbones carries 64 B IPv4 traffic at a share of its zero-loss rate
// for Duration, while prefixes are moved between backbones and a route
// source churns.
type SoakOptions struct {
	Duration  time.Duration // default 10 min
	Every     time.Duration // one sample per interval; default 10 s
	WarmUp    time.Duration // samples before it are not held to flatness; default 1 min
	LoadShare float64       // of the zero-loss rate found first; default 0.8
	// Rate, if set, is the offered rate instead of LoadShare × the
	// zero-loss rate (which is then not searched).
	Rate       float64
	RouteFiles []string
	Pnapd      string
	Progress   io.Writer
}

// SoakSample is one interval of the run.
type SoakSample struct {
	Seconds      float64 `json:"t_s"`
	OfferedPPS   float64 `json:"offered_pps"`
	DeliveredPPS float64 `json:"delivered_pps"`
	Lost         uint64  `json:"lost"` // by the receivers, in this interval
	// PnapDrops is every frame pnapd's own counters say it dropped (any
	// reason, and its sockets' drops), since the soak began.
	PnapDrops  uint64  `json:"pnap_drops"`
	RSSMiB     float64 `json:"rss_mib"`
	Goroutines int     `json:"goroutines"`
	Moves      int     `json:"moves"`   // pins and unpins so far
	Reloads    int     `json:"reloads"` // accepted SIGHUP reloads so far
}

// SoakResult is a whole run.
type SoakResult struct {
	ZeroLossPPS float64            `json:"zero_loss_pps"` // 0 when Rate was given
	RatePPS     float64            `json:"rate_pps"`
	Routes      int                `json:"routes"`
	Samples     []SoakSample       `json:"samples"`
	Drops       map[string]float64 `json:"drops"` // pnapd's drop counters over the soak, by counter
	Log         string             `json:"-"`     // pnapd's output
}

func (o *SoakOptions) fill() {
	o.Duration = cmp.Or(o.Duration, 10*time.Minute)
	o.Every = cmp.Or(o.Every, 10*time.Second)
	o.WarmUp = cmp.Or(o.WarmUp, time.Minute)
	o.LoadShare = cmp.Or(o.LoadShare, 0.8)
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// soakRun is a running soak's pnapd and what drives it.
type soakRun struct {
	opt     *SoakOptions
	dir     string
	pnapd   *topo.Pnapd
	api     *http.Client
	configs [2]string    // without and with the churn routes
	moves   atomic.Int64 // written by churn, read by sample
}

// Soak runs the soak and returns its samples; it fails tb only when the
// run cannot go on (the verdict is the caller's).
func Soak(tb testing.TB, opt SoakOptions) SoakResult {
	tb.Helper()
	opt.fill()
	prefixes := loadPrefixes(tb, opt.RouteFiles)
	dests := pickDestinations(prefixes, 4, 1024, rand.New(rand.NewPCG(4, 2544)))
	x := topo.Build(tb, topo.Options{Backbones: 4})
	s := &soakRun{opt: &opt, dir: tb.TempDir()}
	s.writeConfigs(tb, x)
	s.start(tb, x)
	rx := traffic.NewReceiver(tb)
	for _, bb := range x.Backbones {
		rx.Attach(tb, bb.NS, bb.Far) // any backbone: prefixes move
	}
	gen := traffic.NewGenerator(tb, x.Source, x.SourceLink, traffic.Spec{
		SrcMAC: x.SourceLink.MAC, DstMAC: x.Customer.MAC, Src: x.Host4.Addr(), Dsts: dests,
		FrameBytes: 64, SrcPort: 40000, DstPort: 9,
	})
	r := &rig{rx: rx, gen: gen}
	r.warmUp(tb, Pnap, "ipv4")
	res := SoakResult{RatePPS: opt.Rate, Routes: len(prefixes)}
	if res.RatePPS == 0 {
		res.ZeroLossPPS = s.zeroLoss(tb, r)
		res.RatePPS = opt.LoadShare * res.ZeroLossPPS
	}
	fmt.Fprintf(opt.Progress, "soak: %.0f pps for %v (zero-loss rate %.0f pps)\n", res.RatePPS, opt.Duration, res.ZeroLossPPS)
	targets := s.prefixesOf(tb, dests[:256])
	ctx, cancel := context.WithCancel(context.Background())
	churned := make(chan struct{})
	go func() { defer close(churned); s.churn(ctx, targets) }()
	defer func() { cancel(); <-churned }()
	start, first := time.Now(), s.drops(tb)
	for time.Since(start) < opt.Duration {
		t, err := r.trial(res.RatePPS, opt.Every-100*time.Millisecond)
		if err != nil {
			tb.Fatal(err)
		}
		smp := s.sample(tb, t, first)
		smp.Seconds = time.Since(start).Seconds()
		res.Samples = append(res.Samples, smp)
		fmt.Fprintf(opt.Progress, "soak %4.0fs: offered %7.0f, delivered %7.0f pps, lost %d; pnap drops %d; RSS %.1f MiB; %d goroutines; %d moves, %d reloads\n",
			smp.Seconds, smp.OfferedPPS, smp.DeliveredPPS, smp.Lost, smp.PnapDrops, smp.RSSMiB, smp.Goroutines, smp.Moves, smp.Reloads)
	}
	res.Drops = subtract(s.drops(tb), first)
	res.Log = s.pnapd.String()
	return res
}

// writeConfigs writes the two configurations reloads alternate between.
// Backbones 0 to 2 hold the route files; backbone 3 holds 20,000 /24s in
// 10.0.0.0/8, where no traffic goes, shifted by 10,000 in the second: each
// reload withdraws 10,000 routes and adds 10,000. (A reload re-reads only
// the backbones whose sources changed, so the full tables stay loaded.)
// The sockets' rings take 2048 frames rather than 256: this VM stalls the
// worker's vCPU for 1-5 ms several times a second, which at 60-70 kpps
// overflows 256 entries (3.9 ms at 66 kpps) before pnapd can run.
func (s *soakRun) writeConfigs(tb testing.TB, x *topo.Topology) {
	tb.Helper()
	files := make([][]string, len(x.Backbones))
	for i := range files[:len(files)-1] {
		files[i] = s.opt.RouteFiles
	}
	api := fmt.Sprintf("\n[api]\nlisten = \"unix:%s\"\n", filepath.Join(s.dir, "api.sock"))
	for k, from := range []int{0, 10_000} {
		var churn strings.Builder
		for i := from; i < from+20_000; i++ {
			fmt.Fprintf(&churn, "10.%d.%d.0/24\n", i>>8, i&0xff)
		}
		path := filepath.Join(s.dir, fmt.Sprintf("churn-%d.txt", k))
		if err := os.WriteFile(path, []byte(churn.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
		files[len(files)-1] = []string{path}
		conf := x.PnapdConfigPerBackbone(files, []int{dutCPU}) + api
		s.configs[k] = strings.Replace(conf, "[forwarder]\n", "[forwarder]\nring_size = 2048\nframes = 4096\n", 1)
	}
	if err := s.writeConfig(0); err != nil {
		tb.Fatal(err)
	}
	s.api = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(s.dir, "api.sock"))
		},
	}}
}

// writeConfig puts configuration which in place, atomically.
func (s *soakRun) writeConfig(which int) error {
	tmp := filepath.Join(s.dir, "pnapd.toml.new")
	if err := os.WriteFile(tmp, []byte(s.configs[which]), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, "pnapd.toml"))
}

func (s *soakRun) start(tb testing.TB, x *topo.Topology) {
	tb.Helper()
	p, ready := topo.StartPnapd(tb, exec.Command(s.opt.Pnapd, "run", "-c", filepath.Join(s.dir, "pnapd.toml")), x.DUT.Do)
	if !ready {
		tb.Fatalf("pnapd did not start forwarding:\n%s", p)
	}
	s.pnapd = p
	if err := x.Customer.PinNAPI(dutCPU); err != nil {
		tb.Fatal(err)
	}
}

// zeroLoss is the search of the RFC 2544 run, 500 ms trials.
func (s *soakRun) zeroLoss(tb testing.TB, r *rig) float64 {
	tb.Helper()
	o := Options{Trial: 500 * time.Millisecond, Tolerance: 0.001}
	flood, err := r.trial(0, o.Trial)
	if err != nil {
		tb.Fatal(err)
	}
	retried := 0
	best, _, err := Search(searchStart, flood.Offered, 5, o.Tolerance, r.retrying(&o, &retried))
	if err != nil {
		tb.Fatal(err)
	}
	return best.Offered
}

// prefixesOf asks pnapd for the route each destination uses.
func (s *soakRun) prefixesOf(tb testing.TB, dests []netip.Addr) []string {
	tb.Helper()
	seen := map[string]bool{}
	var out []string
	for _, d := range dests {
		var a struct {
			Prefix string `json:"prefix"`
		}
		if err := s.call("GET", "/v1/fib?addr="+d.String(), nil, &a); err != nil {
			tb.Fatal(err)
		}
		if !seen[a.Prefix] {
			seen[a.Prefix] = true
			out = append(out, a.Prefix)
		}
	}
	return out
}

// churn moves a traffic prefix to one of the three backbones holding the
// tables every 250 ms (a pin;
// the oldest of 64 pins is released) and alternates the route sets with a
// SIGHUP every 30 s, until ctx ends.
func (s *soakRun) churn(ctx context.Context, prefixes []string) {
	rng := rand.New(rand.NewPCG(1, 2))
	move, reload := time.NewTicker(250*time.Millisecond), time.NewTicker(30*time.Second)
	defer move.Stop()
	defer reload.Stop()
	var pinned []string
	which := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-move.C:
			p := prefixes[rng.IntN(len(prefixes))]
			body := fmt.Sprintf(`{"prefix": %q, "backbone": "bb-%d"}`, p, rng.IntN(3))
			if s.call("POST", "/v1/pins", strings.NewReader(body), nil) == nil {
				s.moves.Add(1)
				pinned = append(pinned, p)
			}
			if len(pinned) > 64 {
				if s.call("DELETE", "/v1/pins?prefix="+pinned[0], nil, nil) == nil {
					s.moves.Add(1)
				}
				pinned = pinned[1:]
			}
		case <-reload.C:
			which = 1 - which
			// A failed write shows as a refused reload in pnapd's log.
			if s.writeConfig(which) == nil {
				s.pnapd.Cmd.Process.Signal(syscall.SIGHUP)
			}
		}
	}
}

func (s *soakRun) call(method, path string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, "http://pnapd"+path, body)
	if err != nil {
		return err
	}
	resp, err := s.api.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// drops reads pnapd's drop counters: by port and reason, and its sockets'.
// A socket's fill_ring_empty frames are among its rx_dropped (the kernel
// counts both), so they are left out.
func (s *soakRun) drops(tb testing.TB) map[string]float64 {
	tb.Helper()
	fams := s.metrics(tb)
	out := map[string]float64{}
	for _, name := range []string{"pnap_port_drops_total", "pnap_xsk_drops_total"} {
		for _, m := range fams[name].GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "port" || l.GetName() == "reason" {
					labels = append(labels, l.GetValue())
				}
			}
			if slices.Contains(labels, "fill_ring_empty") {
				continue
			}
			out[name+"{"+strings.Join(labels, ",")+"}"] += m.GetCounter().GetValue()
		}
	}
	return out
}

func (s *soakRun) metrics(tb testing.TB) map[string]*dto.MetricFamily {
	tb.Helper()
	resp, err := s.api.Get("http://pnapd/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return fams
}

// sample is one interval's figures.
func (s *soakRun) sample(tb testing.TB, t Trial, first map[string]float64) SoakSample {
	tb.Helper()
	smp := SoakSample{OfferedPPS: t.Offered, Lost: t.Lost, Moves: int(s.moves.Load()), Reloads: strings.Count(s.pnapd.String(), "msg=reloaded")}
	if t.Offered > 0 && t.Sent > 0 {
		smp.DeliveredPPS = t.Offered * float64(t.Received) / float64(t.Sent)
	}
	for _, v := range subtract(s.drops(tb), first) {
		smp.PnapDrops += uint64(v)
	}
	for _, m := range s.metrics(tb)["go_goroutines"].GetMetric() {
		smp.Goroutines = int(m.GetGauge().GetValue())
	}
	smp.RSSMiB = float64(rssKiB(tb, s.pnapd.Cmd.Process.Pid)) / 1024
	return smp
}

func rssKiB(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

func subtract(now, then map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range now {
		if d := v - then[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}
