package main

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/daemon"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// apiLab is the run lab with pnapd's configuration copied to a directory
// the test may rewrite, its API on a unix socket there (reachable from the
// test, outside pnapd's namespace), and pnapd running.
type apiLab struct {
	*runLab
	dir, sock string
	c         *apiClient
	cmd       *exec.Cmd
	logs      *topo.Pnapd
}

func newAPILab(t *testing.T, edit func(conf string) string) *apiLab {
	t.Helper()
	x := newRunLab(t)
	dir := t.TempDir()
	src := filepath.Join("..", "..", "configs", "examples")
	os.Mkdir(filepath.Join(dir, "routes"), 0o755)
	ents, _ := os.ReadDir(filepath.Join(src, "routes"))
	for _, e := range ents {
		copyFile(t, filepath.Join(src, "routes", e.Name()), filepath.Join(dir, "routes", e.Name()), 0o644)
	}
	b, err := os.ReadFile(filepath.Join(src, "lab.toml"))
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	conf := strings.Replace(string(b), `listen = "127.0.0.1:9180"`, `listen = "unix:`+sock+`"`, 1)
	if edit != nil {
		conf = edit(conf)
	}
	x.config = filepath.Join(dir, "lab.toml")
	if err := os.WriteFile(x.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, logs, _ := x.startPnapd(t)
	c, err := newAPIClient("", "unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	return &apiLab{runLab: x, dir: dir, sock: sock, c: c, cmd: cmd, logs: logs}
}

// The status API and the metrics answer; pins move traffic and come back;
// bad requests get a 4xx with a message.
func TestAPIStatusMetricsPins(t *testing.T) {
	x := newAPILab(t, nil)
	c := x.c
	capA, capB := x.al.Capture(t), x.bl.Capture(t)
	if _, f := x.sendUntil(t, capA, 5*time.Second); f == nil {
		t.Fatal("nothing forwarded to bb-a")
	}
	var st daemon.Status
	if _, err := c.do("GET", "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 5 || len(st.Backbones) != 3 || st.IPv4Routes == 0 || st.Ports[0].Total.RxPackets == 0 || !st.Backbones[0].ResolvedV4 {
		t.Fatalf("status: %+v", st)
	}

	// The scrape parses, and says what the status says.
	resp, err := c.http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{"pnap_port_packets_total", "pnap_port_drops_total", "pnap_backbone_prefixes_selected", "pnap_fib_routes", "pnap_fib_versions_total", "pnap_optimizer_decisions_total", "pnap_sample_ring_drops_total", "pnap_probes_sent_total", "pnap_probe_results_total", "pnap_xdp_passed_total", "pnap_port_info"} {
		if fams[name] == nil {
			t.Errorf("metric %s missing", name)
		}
	}
	for _, m := range fams["pnap_fib_routes"].GetMetric() {
		if m.GetLabel()[0].GetValue() == "ipv4" && int(m.GetGauge().GetValue()) != st.IPv4Routes {
			t.Errorf("pnap_fib_routes{ipv4} %v, status says %d", m.GetGauge().GetValue(), st.IPv4Routes)
		}
	}

	show := func() daemon.FIBAnswer {
		var j daemon.FIBAnswer
		if _, err := c.do("GET", "/v1/fib?addr=203.0.113.9", nil, &j); err != nil {
			t.Fatal(err)
		}
		return j
	}
	if j := show(); j.Prefix != "203.0.113.0/25" || j.Backbone != "bb-a" || j.Why != "default" || len(j.Holders) != 2 {
		t.Fatalf("fib show: %+v", j)
	}
	// Pinning (here with the CLI) moves the traffic to bb-b.
	var out, errb bytes.Buffer
	if code := run([]string{"pin", "--api", "unix:" + x.sock, "203.0.113.0/25", "bb-b"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "pinned to bb-b") {
		t.Fatalf("pnapd pin: exit %d, %q %q", code, out.String(), errb.String())
	}
	if j := show(); j.Backbone != "bb-b" || j.Why != "pinned" {
		t.Fatalf("after pin: %+v", j)
	}
	if _, f := x.sendUntil(t, capB, 3*time.Second); f == nil {
		t.Fatal("pinned prefix's traffic did not move to bb-b")
	}
	out.Reset()
	if code := run([]string{"pins", "--api", "unix:" + x.sock}, nil, &out, &errb); code != 0 || !regexp.MustCompile(`203\.0\.113\.0/25 +bb-b `).MatchString(out.String()) {
		t.Fatalf("pnapd pins: exit %d, %q %q", code, out.String(), errb.String())
	}
	var ds []daemon.Decision
	if _, err := c.do("GET", "/v1/decisions", nil, &ds); err != nil || len(ds) == 0 || ds[len(ds)-1].Reason != "pinned" {
		t.Fatalf("decisions after pin: %+v %v", ds, err)
	}
	out.Reset()
	if code := run([]string{"unpin", "--api", "unix:" + x.sock, "203.0.113.0/25"}, nil, &out, &errb); code != 0 {
		t.Fatalf("pnapd unpin: exit %d, %q", code, errb.String())
	}
	if j := show(); j.Backbone != "bb-a" || j.Why != "default" {
		t.Fatalf("after unpin: %+v", j)
	}

	for _, bad := range []struct {
		method, path string
		body         any
		status       int
		msg          string
	}{
		{"GET", "/v1/fib?addr=nope", nil, 400, "not an IP address"},
		{"GET", "/v1/fib?addr=100.64.0.1", nil, 404, "no route"},
		{"POST", "/v1/pins", map[string]any{"prefix": "203.0.113.0/25"}, 400, `no backbone ""`},
		{"POST", "/v1/pins", map[string]any{"prefix": "203.0.113.0/25", "backbone": "bb-z"}, 400, `no backbone "bb-z"`},
		{"POST", "/v1/pins", map[string]any{"prefix": "203.0.113.1/25", "backbone": "bb-a"}, 400, "not a canonical prefix"},
		{"POST", "/v1/pins", map[string]any{"prefix": "203.0.113.0/26", "backbone": "bb-a"}, 404, "not a prefix in the FIB"},
		{"POST", "/v1/pins", map[string]any{"prefix": "203.0.113.0/25", "backbone": "bb-c"}, 409, "holds no route"},
		{"POST", "/v1/pins", map[string]any{"prefix": "203.0.113.0/25", "backbone": "bb-a", "extra": 1}, 400, "unknown field"},
		{"DELETE", "/v1/pins?prefix=203.0.113.0/25", nil, 404, "not pinned"},
		{"GET", "/v1/decisions?limit=0", nil, 400, "limit"},
		{"GET", "/v2/nothing", nil, 404, "no such endpoint"},
		{"GET", "/v1/routes?backbone=bb-z", nil, 400, `no backbone "bb-z"`},
		{"GET", "/v1/routes?backbone=bb-c&prefix=203.0.113.0/25", nil, 404, "holds no route"},
	} {
		raw, err := c.do(bad.method, bad.path, bad.body, nil)
		if err == nil || !strings.Contains(err.Error(), bad.msg) || !strings.Contains(err.Error(), "HTTP "+itoa(bad.status)) {
			t.Errorf("%s %s: %v (%s), want HTTP %d with %q", bad.method, bad.path, err, raw, bad.status, bad.msg)
		}
	}
	// Still serving after all that; the CLI's tables show the backbones
	// and a lookup says why.
	api := "unix:" + x.sock
	for _, cmd := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--api", api}, "bb-a"},
		{[]string{"fib", "show", "--api", api, "203.0.113.9"}, "203.0.113.0/25 via bb-a (default"},
		{[]string{"decisions", "--api", api}, "unpinned"},
		{[]string{"routes", "bb-b", "--api", api}, "203.0.113.128/25"},
		{[]string{"routes", "bb-a", "203.0.113.0/25", "--api", api}, "*"},
		{[]string{"routes", "bb-c", "--api", api, "-n", "2"}, "PREFIX"},
		{[]string{"measurements", "--api", api}, "PREFIX"},
	} {
		out.Reset()
		if code := run(cmd.args, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), cmd.want) {
			t.Errorf("pnapd %v: exit %d, want %q in\n%s%s", cmd.args, code, cmd.want, out.String(), errb.String())
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// With a token configured, requests without it are refused.
func TestAPIToken(t *testing.T) {
	c := newAPILab(t, func(conf string) string {
		return strings.Replace(conf, "[api]\n", "[api]\ntoken = \"0123456789abcdef0123\"\n", 1)
	}).c
	if _, err := c.do("GET", "/v1/status", nil, nil); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("no token: %v, want 401", err)
	}
	c.token = "wrong-token-wrong-token"
	if _, err := c.do("GET", "/v1/status", nil, nil); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("wrong token: %v, want 401", err)
	}
	c.token = "0123456789abcdef0123"
	if _, err := c.do("GET", "/v1/status", nil, nil); err != nil {
		t.Fatalf("right token: %v", err)
	}
	resp, err := c.http.Get(c.base + "/metrics")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without the token: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// udpSender is a UDP socket in the customer namespace that numbers what it
// sends, so the receiving side can count losses.
type udpSender struct {
	fd int
	to unix.Sockaddr
}

func newUDPSender(t *testing.T, ns *lab.NS, to netip.AddrPort) *udpSender {
	t.Helper()
	s := &udpSender{}
	err := ns.Do(func() error {
		var err error
		s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	s.to = &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
	return s
}

func (s *udpSender) send(tag string, seq uint32) error {
	b := make([]byte, len(tag)+4)
	copy(b, tag)
	binary.BigEndian.PutUint32(b[len(tag):], seq)
	return unix.Sendto(s.fd, b, 0, s.to)
}

// countTagged reads frames carrying tag from c until quiet for 300 ms and
// returns the distinct sequence numbers seen.
func countTagged(c *lab.Capture, tag string) map[uint32]bool {
	seen := map[uint32]bool{}
	for {
		f, err := c.NextMatch(300*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, []byte(tag)) })
		if err != nil || f == nil {
			return seen
		}
		i := bytes.Index(f, []byte(tag)) + len(tag)
		if i+4 <= len(f) {
			seen[binary.BigEndian.Uint32(f[i:])] = true
		}
	}
}

// SIGHUP with a changed route file under traffic: no packet of the flow
// that keeps its route is lost, the new route applies; a bad file is
// refused and the old routes keep forwarding.
func TestReloadUnderTraffic(t *testing.T) {
	x := newAPILab(t, nil)
	dir, cmd, logs := x.dir, x.cmd, x.logs
	capA, capB := x.al.Capture(t), x.bl.Capture(t)
	if _, f := x.sendUntil(t, capA, 5*time.Second); f == nil {
		t.Fatal("nothing forwarded to bb-a")
	}
	// 203.0.113.128/25 is bb-b's alone: before the reload it goes there.
	upper := newUDPSender(t, x.cust, netip.MustParseAddrPort("203.0.113.200:9"))
	upper.send("upper-before", 0)
	if got := countTagged(capB, "upper-before"); len(got) != 1 {
		t.Fatal("203.0.113.200 did not reach bb-b before the reload")
	}

	// A steady flow to 203.0.113.9 (bb-a's, unchanged by the reload)
	// while bb-a gains 203.0.113.128/25 and pnapd reloads.
	flow := newUDPSender(t, x.cust, netip.MustParseAddrPort("203.0.113.9:9"))
	const n = 3000 // 1.5 s at 2 kpps
	done := make(chan int)
	go func() {
		sent := 0
		for i := range n {
			if flow.send("steady-flow", uint32(i)) == nil {
				sent++
			}
			time.Sleep(500 * time.Microsecond)
		}
		done <- sent
	}()
	routes := filepath.Join(dir, "routes", "bb-a.txt")
	b, _ := os.ReadFile(routes)
	os.WriteFile(routes, append(b, []byte("203.0.113.128/25\n")...), 0o644)
	time.Sleep(300 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGHUP)
	seen := countTagged(capA, "steady-flow")
	sent := <-done
	if len(seen) != sent || sent != n {
		t.Fatalf("steady flow across the reload: %d sent, %d arrived\n%s", sent, len(seen), logs)
	}
	if !strings.Contains(logs.String(), "msg=reloaded") {
		t.Fatalf("no reload logged:\n%s", logs)
	}
	upper.send("upper-after", 1)
	if got := countTagged(capA, "upper-after"); len(got) != 1 {
		t.Fatalf("after the reload 203.0.113.200 does not go to bb-a (its new, preferred route):\n%s", logs)
	}

	// A route file that does not parse: refused, routes unchanged.
	os.WriteFile(routes, []byte("203.0.113.0/25\nnot-a-prefix\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(logs.String(), "reload refused") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "reload refused") {
		t.Fatalf("a bad route file was not refused:\n%s", logs)
	}
	upper.send("upper-bad", 2)
	if got := countTagged(capA, "upper-bad"); len(got) != 1 {
		t.Fatal("after a refused reload the previous routes no longer forward")
	}
	// A change that needs a restart is refused too.
	conf, _ := os.ReadFile(x.config)
	os.WriteFile(x.config, bytes.Replace(conf, []byte(`interface = "pnap-bb2"`), []byte(`interface = "pnap-bb9"`), 1), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(logs.String(), "need a restart") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "need a restart") {
		t.Fatalf("an interface change was not refused:\n%s", logs)
	}
}

// A reload applies [probes] and [optimizer] settings to the running
// components: a shorter probe interval sends more probes from then on,
// and the reload names what changed.
func TestReloadAppliesProbeAndOptimizerSettings(t *testing.T) {
	x := newAPILab(t, nil)
	capA := x.al.Capture(t)
	if _, f := x.sendUntil(t, capA, 5*time.Second); f == nil {
		t.Fatal("nothing forwarded to bb-a")
	}
	sent := func() float64 {
		f := scrapeMetrics(t, x.c)["pnap_probes_sent_total"]
		if f == nil {
			t.Fatal("no pnap_probes_sent_total")
		}
		total := 0.0
		for _, m := range f.GetMetric() {
			total += m.GetCounter().GetValue()
		}
		return total
	}
	// sentIn counts probes sent in d, keeping the prefix busy meanwhile so
	// that it stays among the probed.
	sentIn := func(d time.Duration) float64 {
		before := sent()
		for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			x.cust.SendUDP(netip.MustParseAddrPort("198.18.0.7:40000"), netip.MustParseAddrPort("203.0.113.9:9"), []byte("keep-busy"))
		}
		return sent() - before
	}
	sentIn(6 * time.Second) // the first round
	slow := sentIn(10 * time.Second)

	conf, _ := os.ReadFile(x.config)
	conf = bytes.Replace(conf, []byte("interval = \"5s\"\ntimeout = \"1s\""), []byte("interval = \"1500ms\"\ntimeout = \"900ms\""), 1)
	os.WriteFile(x.config, conf, 0o644)
	if code, _, errs := runCmd(t, "", "reload", "--api", "unix:"+x.sock); code != 1 || !strings.Contains(errs, "[probes] timeout changed") {
		t.Fatalf("a new probe timeout: exit %d, %q; want it refused, naming it", code, errs)
	}
	conf = bytes.Replace(conf, []byte("timeout = \"900ms\""), []byte("timeout = \"1s\""), 1)
	conf = bytes.Replace(conf, []byte("hold_down = \"20s\""), []byte("hold_down = \"30s\""), 1)
	os.WriteFile(x.config, conf, 0o644)
	if code, out, errs := runCmd(t, "", "reload", "--api", "unix:"+x.sock); code != 0 {
		t.Fatalf("reload: exit %d, %q %q\n%s", code, out, errs, x.logs)
	}
	// The log reaches the test through a pipe: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(x.logs.String(), "msg=reloaded") && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(x.logs.String(), "settings_changed=optimizer.hold_down,probes.interval") {
		t.Fatalf("the reload does not name the settings it changed:\n%s", x.logs)
	}
	sentIn(time.Second)
	fast := sentIn(10 * time.Second)
	t.Logf("probes sent in 10 s: %.0f at interval 5 s, %.0f at 1.5 s", slow, fast)
	if slow == 0 || fast < 2*slow {
		t.Fatalf("probes sent in 10 s: %.0f at interval 5 s, %.0f after the reload to 1.5 s; want about 3 times as many", slow, fast)
	}
}
