package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/vishvananda/netlink"
)

// TestMain lets the test binary act as pnapd, so that tests can run the
// daemon as a real process (in a lab namespace) without building it.
func TestMain(m *testing.M) {
	if os.Getenv("PNAPD_TEST_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type runLab struct {
	cust, pnap, bbA, west *lab.NS
	bbB, bbC              *lab.NS
	cl, pc0, pb0, al, wl  *lab.Link
	bl, dl                *lab.Link // bb-b's and bb-c's far ends
	config                string
}

// newRunLab builds the topology of configs/examples/lab.toml (pnap's
// interfaces pnap-c0, pnap-c1, pnap-bb0..2 with its addresses and gateways)
// and runs pnapd with that very file.
func newRunLab(t *testing.T) *runLab {
	lab.RequireRoot(t)
	x := &runLab{cust: lab.NewNS(t, "rc"), pnap: lab.NewNS(t, "rp"), bbA: lab.NewNS(t, "ra")}
	bbB, bbC := lab.NewNS(t, "rb"), lab.NewNS(t, "rd")
	x.bbB, x.bbC = bbB, bbC
	x.west = lab.NewNS(t, "rw")
	x.cl, x.pc0 = lab.Connect(t, x.cust, "c", x.pnap, "pnap-c0", lab.VethOpts{})
	wl, pc1 := lab.Connect(t, x.west, "c", x.pnap, "pnap-c1", lab.VethOpts{})
	x.wl = wl
	x.pb0, x.al = lab.Connect(t, x.pnap, "pnap-bb0", x.bbA, "a", lab.VethOpts{})
	pb1, bl := lab.Connect(t, x.pnap, "pnap-bb1", bbB, "b", lab.VethOpts{})
	pb2, dl := lab.Connect(t, x.pnap, "pnap-bb2", bbC, "c", lab.VethOpts{})
	x.cl.AddAddr(t, "198.18.0.7/24")
	x.pc0.AddAddr(t, "198.18.0.1/24")
	x.pc0.AddAddr(t, "2001:2:0:1::1/64")
	x.cust.AddRoute(t, "0.0.0.0/0", "198.18.0.1")
	wl.AddAddr(t, "198.18.1.7/24")
	pc1.AddAddr(t, "198.18.1.1/24")
	pc1.AddAddr(t, "2001:2:0:2::1/64")
	for _, l := range []struct {
		pnap, far *lab.Link
		n         int
	}{{x.pb0, x.al, 100}, {pb1, bl, 101}, {pb2, dl, 102}} {
		x.bl, x.dl = bl, dl
		l.pnap.AddAddr(t, fmt.Sprintf("198.18.%d.2/24", l.n))
		l.far.AddAddr(t, fmt.Sprintf("198.18.%d.1/24", l.n))
		l.pnap.AddAddr(t, fmt.Sprintf("2001:2:0:%d::2/64", l.n))
		l.far.AddAddr(t, fmt.Sprintf("2001:2:0:%d::1/64", l.n))
	}
	x.pnap.Sysctl(t, "net/ipv4/ip_forward", "0")
	x.config = filepath.Join("..", "..", "configs", "examples", "lab.toml")
	return x
}

// startPnapd runs this test binary as pnapd inside pnap's namespace and
// waits until it logs that it forwards.
func (x *runLab) startPnapd(t *testing.T) (*exec.Cmd, *topo.Pnapd, <-chan struct{}) {
	return x.startPnapdIn(t, x.pnap.Do)
}

// startPnapdIn is startPnapd with the starting thread's set-up chosen by
// enter: NS.Do, or NS.DoSysfs when pnapd needs the namespace's own sysfs.
func (x *runLab) startPnapdIn(t *testing.T, enter func(func() error) error) (*exec.Cmd, *topo.Pnapd, <-chan struct{}) {
	t.Helper()
	return startPnapdWith(t, x.config, enter)
}

// startPnapdWith runs this test binary as pnapd with config, started by
// enter (a namespace's Do), and waits until it forwards. It is stopped
// when the test ends.
func startPnapdWith(t *testing.T, config string, enter func(func() error) error) (*exec.Cmd, *topo.Pnapd, <-chan struct{}) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "-c", config)
	cmd.Env = append(os.Environ(), "PNAPD_TEST_AS_MAIN=1")
	p, ready := topo.StartPnapd(t, cmd, enter)
	if !ready {
		t.Fatalf("pnapd did not start forwarding:\n%s", p)
	}
	return cmd, p, p.Exited()
}

// xdpAttached reports whether any pnap port still has an XDP program.
func (x *runLab) xdpAttached(t *testing.T) bool {
	t.Helper()
	for _, name := range []string{"pnap-c0", "pnap-c1", "pnap-bb0", "pnap-bb1", "pnap-bb2"} {
		l, err := x.pnap.Handle().LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if xdp := l.Attrs().Xdp; xdp != nil && xdp.Attached {
			return true
		}
	}
	return false
}

// sendUntil sends datagrams from the customer until one arrives at capture,
// or the deadline passes; it returns how long that took.
func (x *runLab) sendUntil(t *testing.T, c *lab.Capture, within time.Duration) (time.Duration, []byte) {
	t.Helper()
	start := time.Now()
	for i := 0; time.Since(start) < within; i++ {
		payload := []byte(fmt.Sprintf("pnap-run-%d-%d", time.Now().UnixNano(), i))
		if err := x.cust.SendUDP(netip.MustParseAddrPort("198.18.0.7:40000"), netip.MustParseAddrPort("203.0.113.9:9"), payload); err != nil {
			t.Fatal(err)
		}
		f, err := c.NextMatch(50*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, payload) })
		if err == nil {
			return time.Since(start), f
		}
	}
	return 0, nil
}

func TestRunForwardsAndStopsCleanly(t *testing.T) {
	x := newRunLab(t)
	capA := x.al.Capture(t)
	cmd, logs, exited := x.startPnapd(t)
	if !x.xdpAttached(t) {
		t.Fatal("no XDP program attached while pnapd runs")
	}
	// The gateway's MAC comes from the kernel's neighbour table, which
	// pnapd asks to resolve it; 203.0.113.0/25 is held by bb-a and bb-b,
	// and bb-a is preferred.
	took, f := x.sendUntil(t, capA, 5*time.Second)
	if f == nil {
		t.Fatalf("nothing forwarded to backbone a within 5 s:\n%s", logs)
	}
	if !bytes.Equal(f[0:6], x.al.MAC) || !bytes.Equal(f[6:12], x.pb0.MAC) || f[22] != 63 {
		t.Fatalf("forwarded frame: MACs %x -> %x, TTL %d", f[6:12], f[0:6], f[22])
	}
	t.Logf("first packet forwarded after %v", took)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		t.Fatalf("pnapd did not stop within 2 s of SIGTERM:\n%s", logs)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("pnapd exited with %d:\n%s", code, logs)
	}
	if x.xdpAttached(t) {
		t.Fatal("an XDP program is still attached after pnapd stopped")
	}
	// On the way out it reports what each port did.
	if !regexp.MustCompile(`msg="port counters" interface=pnap-c0 rx=[1-9]`).MatchString(logs.String()) {
		t.Fatalf("no counters for the customer port in the stop log:\n%s", logs)
	}
}

// TestRunBusyPoll runs pnapd with busy_poll: it sets the interfaces' NAPI
// deferral while it runs, forwards, and restores the settings on SIGTERM.
func TestRunBusyPoll(t *testing.T) {
	x := newRunLab(t)
	src, err := os.ReadFile(x.config)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := filepath.Abs(filepath.Join(filepath.Dir(x.config), "routes"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "[forwarder]\n", "[forwarder]\nbusy_poll = true\n", 1)
	cfg = strings.ReplaceAll(cfg, `path = "routes/`, `path = "`+routes+`/`)
	x.config = filepath.Join(t.TempDir(), "busy.toml")
	if err := os.WriteFile(x.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	readDefer := func() string {
		var v []byte
		err := x.pnap.DoSysfs(func() error {
			var err error
			v, err = os.ReadFile("/sys/class/net/pnap-c0/napi_defer_hard_irqs")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(v))
	}
	before := readDefer()
	capA := x.al.Capture(t)
	cmd, logs, exited := x.startPnapdIn(t, x.pnap.DoSysfs)
	if got := readDefer(); got != "2" {
		t.Fatalf("napi_defer_hard_irqs = %s while pnapd runs with busy_poll, want 2", got)
	}
	if _, f := x.sendUntil(t, capA, 5*time.Second); f == nil {
		t.Fatalf("nothing forwarded with busy_poll:\n%s", logs)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("pnapd exited with %d:\n%s", code, logs)
	}
	if got := readDefer(); got != before {
		t.Fatalf("napi_defer_hard_irqs = %s after pnapd stopped, want it restored to %s", got, before)
	}
}

// TestRunResolvesSilentCustomerHost: traffic from a backbone to a connected
// customer host that has never sent anything makes pnapd ask the kernel to
// resolve it, and then reaches it.
func TestRunResolvesSilentCustomerHost(t *testing.T) {
	x := newRunLab(t)
	capW := x.wl.Capture(t)
	_, logs, _ := x.startPnapd(t)
	pb0, err := x.pnap.Handle().LinkByName("pnap-bb0")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		payload := []byte(fmt.Sprintf("to-silent-host-%d", i))
		frame := lab.UDPFrame(t, x.al.MAC, pb0.Attrs().HardwareAddr, "203.0.113.9", "198.18.1.7", payload)
		if err := x.al.SendFrame(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := capW.NextMatch(100*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, payload) }); err == nil {
			return
		}
	}
	t.Fatalf("nothing reached the silent host 198.18.1.7 within 5 s:\n%s", logs)
}

// TestRunFollowsLocalAddresses: an address added to pnap's port after
// pnapd started is the box's own: its traffic reaches the kernel.
func TestRunFollowsLocalAddresses(t *testing.T) {
	x := newRunLab(t)
	_, logs, _ := x.startPnapd(t)
	x.pc0.AddAddr(t, "198.18.0.9/24")
	deadline := time.Now().Add(3 * time.Second)
	var got string
	for time.Now().Before(deadline) && got == "" {
		b, err := x.pnap.DeliverUDP(x.cust, netip.MustParseAddrPort("198.18.0.7:40002"), netip.MustParseAddrPort("198.18.0.9:5353"), []byte("new-local"), 200*time.Millisecond)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatal(err)
		}
		got = string(b)
	}
	if got != "new-local" {
		t.Fatalf("traffic to an address added after start did not reach the kernel:\n%s", logs)
	}
}

// check --host, run on the lab's pnap namespace, passes for the lab's
// configuration and names what is wrong when the host does not match it.
func TestCheckHost(t *testing.T) {
	x := newRunLab(t)
	check := func() (int, string) {
		cmd := exec.Command(os.Args[0], "check", "--host", "-c", x.config)
		cmd.Env = append(os.Environ(), "PNAPD_TEST_AS_MAIN=1")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := x.pnap.Do(cmd.Start); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		return cmd.ProcessState.ExitCode(), out.String()
	}
	if code, out := check(); code != 0 {
		t.Fatalf("check --host on the lab: exit %d\n%s", code, out)
	}
	// Take the customer's address away and the second backbone's link.
	err := x.pnap.Do(func() error {
		l, err := netlink.LinkByName("pnap-c0")
		if err != nil {
			return err
		}
		a, _ := netlink.ParseAddr("198.18.0.1/24")
		if err := netlink.AddrDel(l, a); err != nil {
			return err
		}
		b, err := netlink.LinkByName("pnap-bb1")
		if err != nil {
			return err
		}
		return netlink.LinkDel(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	code, out := check()
	for _, want := range []string{`interface pnap-c0 does not have address 198.18.0.1/24`, `backbone "bb-b": interface "pnap-bb1" does not exist`} {
		if code == 0 || !strings.Contains(out, want) {
			t.Errorf("check --host after breaking the host: exit %d, want %q in\n%s", code, want, out)
		}
	}
}
