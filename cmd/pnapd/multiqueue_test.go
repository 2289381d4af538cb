package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// With queues = 2 on veths of two queues, pnapd runs two workers, each with
// its own UMEM and sockets: every datagram of 64 flows arrives exactly once
// and in its flow's order, and both queues carried traffic.
func TestRunTwoQueues(t *testing.T) {
	lab.RequireRoot(t)
	cust, pn, bb := lab.NewNS(t, "qc"), lab.NewNS(t, "qp"), lab.NewNS(t, "qb")
	cl, pc0 := lab.Connect(t, cust, "c", pn, "pnap-c0", lab.VethOpts{Queues: 2})
	pb0, far := lab.Connect(t, pn, "pnap-bb0", bb, "a", lab.VethOpts{Queues: 2})
	cl.AddAddr(t, "198.18.0.7/24")
	pc0.AddAddr(t, "198.18.0.1/24")
	cust.AddRoute(t, "0.0.0.0/0", "198.18.0.1")
	pb0.AddAddr(t, "198.18.100.2/24")
	far.AddAddr(t, "198.18.100.1/24")
	pn.Sysctl(t, "net/ipv4/ip_forward", "0") // whatever arrives, pnapd forwarded
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "pnapd.toml")
	err := os.WriteFile(conf, []byte(fmt.Sprintf(`
[forwarder]
queues = 2
xdp_mode = "native"

[api]
listen = "unix:%s"

[state]
dir = ""

[[customer]]
name = "c"
interface = "pnap-c0"
address_v4 = "198.18.0.1/24"

[[backbone]]
name = "bb-a"
interface = "pnap-bb0"
gateway_v4 = "198.18.100.1"
static = ["203.0.113.0/24"]
`, sock)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	_, logs, _ := startPnapdWith(t, conf, pn.Do)
	capA := far.Capture(t)

	// A round is 256 datagrams: both queues together hold more, so a
	// loss is a fault, not an overflow of the veth's 256-frame rings.
	const flows, rounds, burst = 64, 16, 4
	fds := flowSockets(t, cust, flows)
	next := make([]int, flows) // the sequence number each flow expects next
	for r := range rounds {
		for f, fd := range fds {
			for i := range burst {
				msg := fmt.Appendf(nil, "pnap-mq %d %d", f, r*burst+i)
				if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{203, 0, 113, 9}}); err != nil {
					t.Fatal(err)
				}
			}
		}
		// Drain before the next round: the capture's buffer holds ~1300.
		for got := 0; got < flows*burst; got++ {
			frame, err := capA.NextMatch(2*time.Second, func(b []byte) bool { return len(b) > 42 && string(b[42:min(len(b), 50)]) == "pnap-mq " })
			if err != nil {
				t.Fatalf("round %d: %d of %d datagrams arrived: %v\n%s", r, got, flows*burst, err, logs)
			}
			var f, seq int
			if _, err := fmt.Sscanf(string(frame[42:]), "pnap-mq %d %d", &f, &seq); err != nil || f < 0 || f >= flows {
				t.Fatalf("unexpected payload %q", frame[42:])
			}
			if seq != next[f] {
				t.Fatalf("flow %d: datagram %d arrived when %d was due (duplicate or out of order)", f, seq, next[f])
			}
			next[f]++
		}
	}
	if f, err := capA.NextMatch(200*time.Millisecond, func(b []byte) bool { return len(b) > 50 && string(b[42:50]) == "pnap-mq " }); err == nil {
		t.Fatalf("an extra datagram arrived: %q", f[42:])
	}
	perQueue := rxPerQueue(t, sock, "pnap-c0")
	if len(perQueue) != 2 || perQueue["0"] == 0 || perQueue["1"] == 0 {
		t.Fatalf("customer port packets by queue: %v; want traffic on both queues", perQueue)
	}
	t.Logf("received by queue: %v", perQueue)
}

// flowSockets opens n UDP sockets in ns, one per flow (source ports 40000
// on): a socket keeps its flow on one TX queue of the veth, hence on one RX
// queue of pnapd's port, as a NIC's RSS keeps a flow on one queue.
func flowSockets(t *testing.T, ns *lab.NS, n int) []int {
	t.Helper()
	var fds []int
	err := ns.Do(func() error {
		for i := range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 40000 + i, Addr: [4]byte{198, 18, 0, 7}}); err != nil {
				return err
			}
		}
		return nil
	})
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return fds
}

// rxPerQueue reads pnap_port_packets_total for the received packets of
// the port on iface, by queue, from the API on unix socket sock.
func rxPerQueue(t *testing.T, sock, iface string) map[string]float64 {
	t.Helper()
	c, err := newAPIClient("", "unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	fams := scrapeMetrics(t, c)
	port := portOn(t, fams, iface)
	out := map[string]float64{}
	for _, m := range fams["pnap_port_packets_total"].GetMetric() {
		if l := metricLabels(m); l["port"] == port && l["direction"] == "rx" {
			out[l["queue"]] += m.GetCounter().GetValue()
		}
	}
	return out
}

// portOn is the port on interface iface, as pnap_port_info says: the port
// series name a port by its configured name alone.
func portOn(t *testing.T, fams map[string]*dto.MetricFamily, iface string) string {
	t.Helper()
	for _, m := range fams["pnap_port_info"].GetMetric() {
		if l := metricLabels(m); l["interface"] == iface {
			return l["port"]
		}
	}
	t.Fatalf("pnap_port_info has no port on %s", iface)
	return ""
}

func metricLabels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// scrapeMetrics reads and parses pnapd's /metrics through c.
func scrapeMetrics(t *testing.T, c *apiClient) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := c.http.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}
