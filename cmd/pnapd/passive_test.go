package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/pnap-project/pnap/bench/emu"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/daemon"
)

// TestPassiveOnlySendsNoProbes runs pnapd with [probes] active = false in
// front of two emulated backbones (10 ms, 30 ms), the probe sources and a
// probed port written as if probing were on, and TCP flows through it. No
// probe leaves: pnapd counts none sent, and no port copies a frame of its
// own into its UMEM. The flows' handshakes and timestamps still give each
// backbone's RTT, for the backbone the traffic takes only: a prefix both
// hold is measured on the selected one alone. Nothing is failed.
func TestPassiveOnlySendsNoProbes(t *testing.T) {
	lab.RequireRoot(t)
	delays := []time.Duration{10 * time.Millisecond, 30 * time.Millisecond}
	x := topo.Build(t, topo.Options{Backbones: len(delays), Emulated: true})
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	path := filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(path, []byte(passiveConfig(x, sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, bb := range x.Backbones {
		lo := bb.NS.Loopback(t)
		lo.AddAddr(t, netip.PrefixFrom(sharedDst(0, false), 32).String())
		lo.AddAddr(t, netip.PrefixFrom(exclusiveDst(i, false), 32).String())
		lo.AddAddr(t, netip.PrefixFrom(exclusiveDst(i, true), 128).String())
		bb.NS.ServeEcho(t, 5001)
		if err := bb.Emu.Set(emu.Params{Delay: delays[i]}, emu.Params{}); err != nil {
			t.Fatal(err)
		}
	}
	_, logs, _ := startPnapdWith(t, path, x.DUT.Do)
	defer func() {
		if t.Failed() {
			t.Logf("pnapd log:\n%s", logs)
		}
	}()
	c, err := newAPIClient("", "unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	dsts := []netip.Addr{sharedDst(0, false)}
	for i := range x.Backbones {
		dsts = append(dsts, exclusiveDst(i, false), exclusiveDst(i, true))
	}
	for _, d := range dsts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoClient(t, x.Source, netip.AddrPortFrom(d, 5001), stop)
		}()
	}
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()

	checkNoProbes(t, c)
	checkPassiveStatus(t, c, "unix:"+sock, len(delays))
	if !strings.Contains(logs.String(), "passive only") {
		t.Error("pnapd did not log that it measures passively only")
	}
	checkPassiveRTT(t, c, x, delays)
}

// passiveConfig is the test's configuration: every backbone holds its own
// prefixes (IPv4, IPv6) and sharedDst(0)'s, selected on bb-0; the probe
// sources and port are written as if probing were on.
func passiveConfig(x *topo.Topology, sock string) string {
	var conf strings.Builder
	fmt.Fprintf(&conf, "[forwarder]\nqueues = 1\nxdp_mode = \"native\"\n\n[[customer]]\nname = \"lab\"\ninterface = %q\naddress_v4 = %q\naddress_v6 = %q\n",
		x.Customer.Name, x.CustomerAddr4, x.CustomerAddr6)
	for i, bb := range x.Backbones {
		static := []string{fmt.Sprintf("%q", netip.PrefixFrom(sharedDst(0, false), 24).Masked())}
		for _, v6 := range []bool{false, true} {
			bits := map[bool]int{false: 24, true: 64}[v6]
			static = append(static, fmt.Sprintf("%q", netip.PrefixFrom(exclusiveDst(i, v6), bits).Masked()))
		}
		fmt.Fprintf(&conf, "\n[[backbone]]\nname = %q\ninterface = %q\ngateway_v4 = %q\ngateway_v6 = %q\npreference = %d\nstatic = [%s]\n",
			bb.Name, bb.Port.Name, bb.Gateway4, bb.Gateway6, 100+i, strings.Join(static, ", "))
	}
	fmt.Fprintf(&conf, "\n[probes]\nactive = false\ntop_prefixes = 100\ninterval = \"500ms\"\ntimeout = \"400ms\"\nrate_per_backbone = 1000\nsource_v4 = \"198.18.0.200\"\nsource_v6 = \"2001:2:0:1::200\"\ntcp_ports = [5001]\n")
	fmt.Fprintf(&conf, "\n[api]\nlisten = \"unix:%s\"\n\n[state]\ndir = \"\"\n", sock)
	return conf.String()
}

// checkPassiveRTT checks /v1/measurements: each backbone's own prefixes
// have passive samples only, giving its emulated delay, and the shared
// prefix is measured on the backbone its traffic takes alone, which is
// what passive measurement cannot do better.
func checkPassiveRTT(t *testing.T, c *apiClient, x *topo.Topology, delays []time.Duration) {
	t.Helper()
	var ms []daemon.Measurement
	if _, err := c.do("GET", "/v1/measurements?limit=1000", nil, &ms); err != nil {
		t.Fatal(err)
	}
	for i, bb := range x.Backbones {
		for _, v6 := range []bool{false, true} {
			dst := exclusiveDst(i, v6)
			m, ok := find(ms, dst)
			bm, ok2 := m.Backbones[bb.Name]
			if !ok || !ok2 || bm.Passive == 0 || bm.Active != 0 || bm.Sent != 0 {
				t.Errorf("%s %v: want passive samples only: %+v", bb.Name, dst, m)
				continue
			}
			t.Logf("%s %v: passive p50 %.2f ms from %d samples (emulated %v)", bb.Name, dst, bm.P50Ms, bm.Passive, delays[i])
			// A race-instrumented pnapd adds its own delay (see
			// TestProbesMeasureEmulatedBackbones).
			if want := float64(delays[i]) / 1e6; !raceDetector && (bm.P50Ms < want-3 || bm.P50Ms > want+3) {
				t.Errorf("%s %v: passive p50 %.2f ms, emulated %v", bb.Name, dst, bm.P50Ms, delays[i])
			}
		}
	}
	m, _ := find(ms, sharedDst(0, false))
	if m.Backbones["bb-0"].Passive == 0 || m.Backbones["bb-1"].Passive != 0 {
		t.Errorf("shared prefix: want bb-0 measured, bb-1 not: %+v", m)
	}
}

// checkNoProbes checks the metrics: no probe sent or answered, no frame
// of pnapd's own copied into a UMEM to be sent, passive RTT samples taken.
func checkNoProbes(t *testing.T, c *apiClient) {
	t.Helper()
	fams := scrapeMetrics(t, c)
	total := func(name string, label string) (n float64) {
		for _, m := range fams[name].GetMetric() {
			if label == "" || hasLabel(m, "source", label) {
				n += m.GetCounter().GetValue()
			}
		}
		return n
	}
	if n := total("pnap_probes_sent_total", ""); n != 0 {
		t.Errorf("pnap_probes_sent_total %v, want 0", n)
	}
	if n := total("pnap_rtt_samples_total", "probe"); n != 0 {
		t.Errorf("pnap_rtt_samples_total{source=probe} %v, want 0", n)
	}
	if n := total("pnap_xsk_copied_frames_total", ""); n != 0 {
		t.Errorf("pnap_xsk_copied_frames_total %v: frames of pnapd's own were sent", n)
	}
	if n := total("pnap_rtt_samples_total", "syn") + total("pnap_rtt_samples_total", "ts"); n == 0 {
		t.Error("no passive RTT samples")
	}
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// checkPassiveStatus checks that GET /v1/status and pnapd status (asking
// api) say probes run passive only, and that no backbone is failed.
func checkPassiveStatus(t *testing.T, c *apiClient, api string, backbones int) {
	t.Helper()
	var st daemon.Status
	if _, err := c.do("GET", "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if !st.Probes || st.ActiveProbes || len(st.Backbones) != backbones {
		t.Errorf("status: probes %v, active_probes %v, %d backbones", st.Probes, st.ActiveProbes, len(st.Backbones))
	}
	for _, b := range st.Backbones {
		if b.Failed || b.ProbesSent != 0 {
			t.Errorf("backbone %s: failed %v, %d probes sent", b.Name, b.Failed, b.ProbesSent)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--api", api}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "probes passive only") {
		t.Errorf("pnapd status: exit %d, %q %q", code, out.String(), errb.String())
	}
}
