package main

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/internal/shareddata"
)

// pnapd is fail-open: its XDP programs hang off bpf_links that die with the
// process, so a SIGKILL at any moment hands forwarding back to the kernel.
// Each case kills it at a different moment and checks that the kernel
// forwards within a second, nothing is left attached and the next start
// forwards.
func TestKillNineFailsSafe(t *testing.T) {
	cases := []struct {
		name string
		// kill brings pnapd to the moment and kills it; it returns when the
		// SIGKILL was sent.
		kill func(t *testing.T, x *runLab, config string) (exited <-chan struct{}, killedAt time.Time)
	}{
		{"under traffic", killUnderTraffic},
		{"during reload", killDuringReload},
		{"during full-table load", killDuringLoad},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := newRunLab(t)
			config := labConfigCopy(t)
			capA := x.al.Capture(t)
			// What an operator sets up for fail-open: the kernel has the
			// routes and forwards whatever XDP does not take.
			x.pnap.Sysctl(t, "net/ipv4/ip_forward", "1")
			x.pnap.AddRoute(t, "203.0.113.0/24", "198.18.100.1")
			exited, killedAt := c.kill(t, x, config)
			select {
			case <-exited:
			case <-time.After(time.Second):
				t.Fatal("pnapd still running 1 s after SIGKILL")
			}
			if _, f := x.sendUntil(t, capA, time.Second); f == nil {
				t.Fatal("the kernel did not forward within 1 s of pnapd's death")
			}
			t.Logf("kernel forwarding %v after SIGKILL", time.Since(killedAt).Round(time.Millisecond))
			for deadline := time.Now().Add(time.Second); x.xdpAttached(t) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if x.xdpAttached(t) {
				t.Fatal("an XDP program is still attached 1 s after SIGKILL")
			}
			// The next start forwards: with the kernel's forwarding off,
			// only pnapd can deliver.
			_, logs, _ := startPnapdWith(t, config, x.pnap.Do)
			x.pnap.Sysctl(t, "net/ipv4/ip_forward", "0")
			if _, f := x.sendUntil(t, capA, 5*time.Second); f == nil {
				t.Fatalf("pnapd started after the kill forwards nothing:\n%s", logs)
			}
		})
	}
}

// killUnderTraffic kills pnapd while the customer sends to backbone a, a
// datagram every 100 µs.
func killUnderTraffic(t *testing.T, x *runLab, config string) (<-chan struct{}, time.Time) {
	cmd, logs, exited := startPnapdWith(t, config, x.pnap.Do)
	capB := x.al.Capture(t)
	if _, f := x.sendUntil(t, capB, 5*time.Second); f == nil {
		t.Fatalf("pnapd forwarded nothing:\n%s", logs)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		from, to := netip.MustParseAddrPort("198.18.0.7:40001"), netip.MustParseAddrPort("203.0.113.9:9")
		for {
			select {
			case <-stop:
				return
			default:
			}
			x.cust.SendUDP(from, to, []byte("pnap-kill-traffic"))
			time.Sleep(100 * time.Microsecond)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	before := rxPackets(t, x.bbA, "a")
	time.Sleep(200 * time.Millisecond)
	if n := rxPackets(t, x.bbA, "a") - before; n < 100 {
		t.Fatalf("backbone a received %d frames in 200 ms; the traffic is not flowing", n)
	}
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return exited, killedAt
}

func rxPackets(t *testing.T, ns *lab.NS, name string) uint64 {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.RxPackets
}

// killDuringReload gives backbone c the full IPv4 table in the running
// configuration, sends SIGHUP and kills pnapd while it reads the table.
func killDuringReload(t *testing.T, x *runLab, config string) (<-chan struct{}, time.Time) {
	cmd, logs, exited := startPnapdWith(t, config, x.pnap.Do)
	withFullTable(t, config)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if strings.Contains(logs.String(), "msg=reloaded") || strings.Contains(logs.String(), "reload refused") {
		t.Fatalf("the reload ended before the kill; the case tests nothing:\n%s", logs)
	}
	return exited, killedAt
}

// killDuringLoad starts pnapd on a configuration with the full IPv4 table
// and kills it before the FIB is loaded.
func killDuringLoad(t *testing.T, x *runLab, config string) (<-chan struct{}, time.Time) {
	withFullTable(t, config)
	var logs lockedBuffer
	cmd := exec.Command(os.Args[0], "run", "-c", config)
	cmd.Env = append(os.Environ(), "PNAPD_TEST_AS_MAIN=1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := x.pnap.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	lab.OnInterrupt(t, func() { cmd.Process.Kill() })
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	time.Sleep(150 * time.Millisecond)
	killedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if strings.Contains(logs.String(), "FIB loaded") {
		t.Fatalf("the FIB was loaded before the kill; the case tests nothing:\n%s", logs.String())
	}
	return exited, killedAt
}

// labConfigCopy is configs/examples/lab.toml and its route files in a
// directory the test may rewrite.
func labConfigCopy(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "configs", "examples")
	if err := os.Mkdir(filepath.Join(dir, "routes"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(src, "routes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(src, "routes", e.Name()), filepath.Join(dir, "routes", e.Name()), 0o644)
	}
	copyFile(t, filepath.Join(src, "lab.toml"), filepath.Join(dir, "lab.toml"), 0o644)
	return filepath.Join(dir, "lab.toml")
}

// withFullTable adds the shared full IPv4 table to backbone bb-c of config
// (the last backbone, so the lab's own destinations keep their routes).
func withFullTable(t *testing.T, config string) {
	t.Helper()
	full, err := filepath.Abs(shareddata.File(t, "ipv4-full.txt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	anchor := `  path = "routes/bb-c.txt.gz"` + "\n"
	if !bytes.Contains(b, []byte(anchor)) {
		t.Fatalf("lab.toml has no %q to add the full table after", anchor)
	}
	b = bytes.Replace(b, []byte(anchor), []byte(anchor+"\n  [[backbone.route_file]]\n  path = \""+full+"\"\n"), 1)
	if err := os.WriteFile(config, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
