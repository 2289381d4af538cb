package daemon

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/internal/monotime"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
)

// apiConf is a configuration the API tests serve: two backbones holding
// a /16 and, backbone b only, a /24 at its first address.
const apiConf = `
[[backbone]]
name = "a"
interface = "eth1"
gateway_v4 = "203.0.113.1"
static = ["198.18.0.0/16"]
cost = %d
commit_mbps = 100

[[backbone]]
name = "b"
interface = "eth2"
gateway_v4 = "203.0.113.65"
static = ["198.18.0.0/16", "198.18.0.0/24"]

[[customer]]
name = "cust"
interface = "eth0"
address_v4 = "192.0.2.1/26"
next_hop_v4 = "192.0.2.2"
routes = ["192.0.2.64/26"]

[api]
metrics_top_prefixes = 10

[state]
dir = ""
`

// writeAPIConf writes apiConf, with backbone a's cost, to path.
func writeAPIConf(t testing.TB, path string, cost int) {
	t.Helper()
	if err := os.WriteFile(path, fmt.Appendf(nil, apiConf, cost), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newAPIDaemon is a Daemon with what the status API reads and nothing
// attached: the FIB, a data plane of counters only, probes fed by hand
// and an optimizer that is not run.
func newAPIDaemon(t testing.TB) *Daemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pnapd.toml")
	writeAPIConf(t, path, 0)
	return newAPIDaemonFrom(t, path)
}

// newAPIDaemonFrom is newAPIDaemon with the configuration file at path.
func newAPIDaemonFrom(t testing.TB, path string) *Daemon {
	t.Helper()
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{version: "test", errc: make(chan error, 16)}
	d.log = slog.New(slog.DiscardHandler)
	d.cfg.Store(cfg)
	if d.plan, err = newPlan(cfg); err != nil {
		t.Fatal(err)
	}
	if d.fib, _, err = LoadFIB(cfg, d.log); err != nil {
		t.Fatal(err)
	}
	dp := &dataPlane{plane: &forwarder.Plane{Backbones: d.fib}}
	for _, c := range cfg.Customers {
		dp.plane.Ports = append(dp.plane.Ports, forwarder.PortInfo{Name: c.Interface, Role: forwarder.RoleCustomer})
	}
	for i, b := range cfg.Backbones {
		dp.plane.Ports = append(dp.plane.Ports, forwarder.PortInfo{Name: b.Interface, Role: forwarder.RoleBackbone})
		dp.backbonePort = append(dp.backbonePort, uint8(len(cfg.Customers)+i))
	}
	dp.workers = []*forwarder.Worker{forwarder.NewWorker(dp.plane)}
	// Sockets that were never opened: their kernel counters read as
	// unavailable, which the metrics leave out.
	dp.byQueue = [][]*xsk.Port{make([]*xsk.Port, len(dp.plane.Ports))}
	for i := range dp.byQueue[0] {
		dp.byQueue[0][i] = &xsk.Port{}
	}
	d.dp = dp
	pr, err := probes.New(d.plan.probes, d.fib, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	o, err := optimizer.New(d.plan.optimizer, d.fib, pr, &backboneRates{dp: dp})
	if err != nil {
		t.Fatal(err)
	}
	d.ctl = &control{probes: pr, opt: o, pins: o.Pins()}
	return d
}

// get asks h for method path (with body) and returns the status and body.
func get(h http.Handler, method, path, body string) (int, string) {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	b, _ := io.ReadAll(w.Result().Body)
	return w.Code, string(b)
}

// The API reads the backbones' configuration while a reload (SIGHUP)
// replaces it: every endpoint that reads it, at the same time as reloads
// that change what reload changes (costs, routes), under -race.
func TestAPIDuringReload(t *testing.T) {
	d := newAPIDaemon(t)
	h := d.handler(d.metricsHandler())
	path := d.cfg.Load().Path
	paths := []string{"/v1/status", "/v1/backbones", "/v1/fib?addr=198.18.0.1", "/v1/measurements", "/v1/pins", "/metrics"}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range paths {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if code, body := get(h, "GET", p, ""); code != http.StatusOK {
					t.Errorf("GET %s: %d %s", p, code, body)
					return
				}
			}
		})
	}
	for i := range 20 {
		writeAPIConf(t, path, i+1)
		d.reload()
	}
	close(stop)
	wg.Wait()
	if c := d.cfg.Load().Backbones[0].Cost; c != 20 {
		t.Fatalf("backbone a's cost is %v after the reloads, want 20", c)
	}
	if code, body := get(h, "GET", "/v1/backbones", ""); code != http.StatusOK || !bytes.Contains([]byte(body), []byte(`"name": "b"`)) {
		t.Fatalf("after reloads: %d %s", code, body)
	}
}

// A prefix's measurements name the backbone selected for that prefix, not
// the one of a more-specific route at its first address.
func TestMeasurementsSelectedIsTheExactRoute(t *testing.T) {
	d := newAPIDaemon(t)
	wide, narrow := netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("198.18.0.0/24")
	ew, ok1 := d.fib.Route(wide)
	en, ok2 := d.fib.Route(narrow)
	if !ok1 || !ok2 || ew.Backbone != 0 || en.Backbone != 1 {
		t.Fatalf("setup: /16 %v %v, /24 %v %v; want the /16 on a, the /24 on b", ew, ok1, en, ok2)
	}
	st := d.ctl.probes.Store()
	st.AddRTT(ew.Route, 0, probes.Passive, 10*time.Millisecond, monotime.Now())
	st.AddRTT(en.Route, 1, probes.Passive, 20*time.Millisecond, monotime.Now())
	code, body := get(d.handler(nil), "GET", "/v1/measurements", "")
	var ms []Measurement
	if err := json.Unmarshal([]byte(body), &ms); code != http.StatusOK || err != nil {
		t.Fatalf("%d %v: %s", code, err, body)
	}
	want := map[string]string{wide.String(): "a", narrow.String(): "b"}
	for _, m := range ms {
		if m.Selected != want[m.Prefix] {
			t.Errorf("%s: selected %q, want %q", m.Prefix, m.Selected, want[m.Prefix])
		}
		delete(want, m.Prefix)
	}
	if len(want) > 0 {
		t.Errorf("no measurements of %v: %s", want, body)
	}
}

// testLimits: two connections at a time and short idle keep-alives; the
// rest long enough never to be what closes a connection here.
var testLimits = apiLimits{ReadHeader: 10 * time.Second, Read: 10 * time.Second, Write: 10 * time.Second, Idle: 300 * time.Millisecond, Conns: 2}

// serveTestAPI serves d's API on a loopback port within lim.
func serveTestAPI(t *testing.T, d *Daemon, lim apiLimits) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop := d.serveAPI(l, d.handler(nil), lim)
	t.Cleanup(func() { stop() })
	return l.Addr().String()
}

// keepAlive opens a connection to addr and makes one request on it, which
// leaves it open and idle.
func keepAlive(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /v1/pins HTTP/1.1\r\nHost: pnapd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("status %d, close %v", resp.StatusCode, resp.Close)
	}
	return c, br
}

// An idle keep-alive connection is closed after the idle timeout.
func TestAPIClosesIdleConnections(t *testing.T) {
	addr := serveTestAPI(t, newAPIDaemon(t), testLimits)
	start := time.Now()
	c, br := keepAlive(t, addr)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := br.ReadByte()
	took := time.Since(start)
	if err != io.EOF {
		t.Fatalf("an idle connection was still open after %v: %v", took.Round(time.Millisecond), err)
	}
	if took < testLimits.Idle {
		t.Fatalf("closed after %v, before the idle timeout (%v)", took, testLimits.Idle)
	}
}

// Connections past the limit wait to be served until open ones close: idle
// keep-alives hold a client off until they time out.
func TestAPILimitsConnections(t *testing.T) {
	addr := serveTestAPI(t, newAPIDaemon(t), testLimits)
	start := time.Now()
	for range testLimits.Conns {
		keepAlive(t, addr)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + addr + "/v1/status")
	if err != nil {
		t.Fatalf("a client past the limit was not served once the idle connections timed out: %v", err)
	}
	resp.Body.Close()
	// The server closes an idle connection no sooner than Idle after its
	// request, all of which were sent after start.
	if took := time.Since(start); resp.StatusCode != http.StatusOK || took < testLimits.Idle {
		t.Fatalf("status %d after %v: served before the idle connections (%v) left", resp.StatusCode, took, testLimits.Idle)
	}
}

// FuzzAPI: no request, whatever its method, path and body, makes the API
// fail (5xx) or panic. The seeds are every route, with the queries and
// bodies they take.
func FuzzAPI(f *testing.F) {
	d := newAPIDaemon(f)
	for _, p := range []string{"198.18.0.0/16", "198.18.0.0/24"} {
		e, _ := d.fib.Route(netip.MustParsePrefix(p))
		d.ctl.probes.Store().AddRTT(e.Route, e.Backbone, probes.Passive, 10*time.Millisecond, monotime.Now())
	}
	h := d.handler(d.metricsHandler())
	for _, rt := range d.routes() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		f.Add(method, path, "")
	}
	f.Add("GET", "/metrics", "")
	f.Add("GET", "/v1/fib?addr=198.18.0.1", "")
	f.Add("GET", "/v1/fib?addr=2001:db8::1", "")
	f.Add("GET", "/v1/measurements?limit=1", "")
	f.Add("GET", "/v1/decisions?limit=10", "")
	f.Add("POST", "/v1/pins", `{"prefix": "198.18.0.0/24", "backbone": "b"}`)
	f.Add("POST", "/v1/pins", `{"prefix": "198.18.0.0/16", "backbone": "b"}`)
	f.Add("DELETE", "/v1/pins?prefix=198.18.0.0/16", "")
	f.Add("PUT", "/v1/nothing", "x")
	f.Fuzz(func(t *testing.T, method, path, body string) {
		// The request as the server would hand it over; one it could not
		// parse never reaches the handler.
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: pnapd\r\nContent-Length: %d\r\n\r\n%s", method, path, len(body), body)
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q %q: %d %s", method, path, body, w.Code, w.Body)
		}
	})
}
