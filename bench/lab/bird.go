//go:build linux

package lab

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// birdWait bounds every wait on BIRD's control socket: BIRD answers within
// milliseconds of its start, even with thousands of static routes.
const birdWait = 30 * time.Second

// wakeEvery is how often a running BIRD is sent a command on its control
// socket, to wake its event loop. BIRD 2.0.12 leaves the tail of an export
// unsent until the loop next wakes, which an otherwise idle BIRD does at
// its poll timeout, 3 s: measured here, 5000 routes exported to pnapd took
// 3.0 s in each of 16 runs, and 40-200 ms with a command every 50 ms. A
// command costs BIRD microseconds.
const wakeEvery = 10 * time.Millisecond

// BIRD is a BIRD 2 routing daemon (Debian package bird2) that a test runs
// in one of its namespaces, as the router at the other end of a BGP
// session. Start runs it in the foreground with a configuration the test
// writes; birdc queries and reconfigures it over its control socket. It is
// killed when the test ends, also when it fails or is interrupted, and its
// log (what it wrote to stdout and stderr: configure `log stderr all;`) is
// shown when the test failed. While it runs it is kept awake (wakeEvery),
// so that what it sends is not held up by its own event loop.
type BIRD struct {
	NS   *NS    // where it runs
	Conf string // its configuration file
	Sock string // its control socket

	bird, birdc string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	log    bytes.Buffer
}

// RequireBIRD skips tb unless it can create namespaces (RequireRoot) and
// BIRD 2's bird and birdc are installed, or fails it under CI (CI set), as
// RequireRoot does. It returns their paths.
func RequireBIRD(tb testing.TB) (bird, birdc string) {
	tb.Helper()
	RequireRoot(tb)
	var missing []string
	var err error
	if bird, err = exec.LookPath("bird"); err != nil {
		missing = append(missing, "bird")
	}
	if birdc, err = exec.LookPath("birdc"); err != nil {
		missing = append(missing, "birdc")
	}
	if len(missing) == 0 {
		out, _ := exec.Command(bird, "--version").CombinedOutput()
		if !bytes.Contains(out, []byte("BIRD version 2.")) {
			missing = append(missing, "BIRD 2 (found "+strings.TrimSpace(string(out))+")")
		}
	}
	if len(missing) > 0 {
		msg := "lab: this test runs BIRD 2 (Debian package bird2), missing: " + strings.Join(missing, ", ")
		if os.Getenv("CI") != "" {
			tb.Fatal(msg + " (CI is set: failing instead of skipping)")
		}
		tb.Skip(msg)
	}
	return bird, birdc
}

// NewBIRD prepares a BIRD to run in ns, its files in a directory of tb's,
// and registers its end with tb.Cleanup and OnInterrupt. It skips or fails
// tb as RequireBIRD does. Start runs it.
func NewBIRD(tb testing.TB, ns *NS) *BIRD {
	tb.Helper()
	bird, birdc := RequireBIRD(tb)
	dir := tb.TempDir()
	b := &BIRD{NS: ns, Conf: filepath.Join(dir, "bird.conf"), Sock: filepath.Join(dir, "bird.ctl"), bird: bird, birdc: birdc}
	tb.Cleanup(func() {
		b.Kill()
		if tb.Failed() {
			tb.Logf("BIRD's log (%s):\n%s", ns.Name, b.Log())
		}
	})
	OnInterrupt(tb, b.Kill)
	return b
}

// birdLog lets BIRD's output and Log share the buffer.
type birdLog struct{ b *BIRD }

func (w birdLog) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.log.Write(p)
}

// Log is what BIRD wrote so far, over all its runs.
func (b *BIRD) Log() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.log.String()
}

// Start writes conf and starts BIRD in its namespace, in the foreground,
// with args added (such as "-R", graceful restart recovery); it returns
// once BIRD answers on its control socket, and fails tb if it does not
// within 30 s. A BIRD already running is killed first.
func (b *BIRD) Start(tb testing.TB, conf string, args ...string) {
	tb.Helper()
	b.Kill()
	if err := os.WriteFile(b.Conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(b.bird, append([]string{"-f", "-c", b.Conf, "-s", b.Sock, "-P", b.Sock + ".pid"}, args...)...)
	cmd.Stdout, cmd.Stderr = birdLog{b}, birdLog{b}
	if err := b.NS.Do(cmd.Start); err != nil {
		tb.Fatalf("lab: start BIRD in %s: %v", b.NS.Name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	deadline := time.Now().Add(birdWait)
	for {
		if err := exec.Command(b.birdc, "-s", b.Sock, "show", "status").Run(); err == nil {
			go b.keepAwake(exited)
			return
		}
		select {
		case <-exited:
			tb.Fatalf("lab: BIRD in %s exited at start:\n%s", b.NS.Name, b.Log())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("lab: BIRD in %s does not answer on its control socket after %v", b.NS.Name, birdWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// keepAwake sends BIRD a command every wakeEvery until it exits.
func (b *BIRD) keepAwake(exited <-chan struct{}) {
	c, err := net.Dial("unix", b.Sock)
	if err != nil {
		return
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	t := time.NewTicker(wakeEvery)
	defer t.Stop()
	for {
		select {
		case <-exited:
			return
		case <-t.C:
			if _, err := c.Write([]byte("show status\n")); err != nil {
				return
			}
		}
	}
}

// Running reports whether BIRD runs: started, and neither killed nor
// exited (as it does after `birdc graceful restart`).
func (b *BIRD) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// Kill kills BIRD with SIGKILL, if it runs, and waits until it is gone:
// its BGP sessions end without a NOTIFICATION, as when a router crashes.
func (b *BIRD) Kill() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-exited
}

// Control runs birdc with args and returns its output; it fails tb when
// birdc fails.
func (b *BIRD) Control(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := b.control(args...)
	if err != nil {
		tb.Fatalf("lab: birdc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (b *BIRD) control(args ...string) (string, error) {
	out, err := exec.Command(b.birdc, append([]string{"-s", b.Sock}, args...)...).CombinedOutput()
	return string(out), err
}

// Configure makes the running BIRD load conf (birdc configure).
func (b *BIRD) Configure(tb testing.TB, conf string) {
	tb.Helper()
	if err := os.WriteFile(b.Conf, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	if out := b.Control(tb, "configure"); !strings.Contains(out, "Reconfigured") {
		tb.Fatalf("lab: birdc configure: %s", out)
	}
}

// Routes runs `show route <filter> all` (filter such as "protocol", "pnap"
// or "for", "192.0.2.0/24") and returns each route BIRD shows, keyed by
// prefix: its first line and the attribute lines under it. Several routes
// for one prefix are all under it. None found is no route (birdc fails
// then).
func (b *BIRD) Routes(tb testing.TB, filter ...string) map[string]string {
	tb.Helper()
	args := append(append([]string{"show", "route"}, filter...), "all")
	out, err := b.control(args...)
	if err != nil && !strings.Contains(out, "Network not found") {
		tb.Fatalf("lab: birdc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return ParseBIRDRoutes(out)
}

// ParseBIRDRoutes parses the output of birdc's `show route ... all` as
// Routes does.
func ParseBIRDRoutes(out string) map[string]string {
	routes := map[string]string{}
	var cur string
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "BIRD ") || strings.HasPrefix(line, "Table ") || strings.HasPrefix(line, "Network not found") {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			cur = strings.Fields(line)[0]
		}
		if cur != "" {
			routes[cur] += line + "\n"
		}
	}
	return routes
}

// Exported is how many routes BIRD's protocol exports now, by channel
// ("ipv4", "ipv6"), from `show protocols all`.
func (b *BIRD) Exported(tb testing.TB, protocol string) map[string]int {
	tb.Helper()
	out := b.Control(tb, "show", "protocols", "all", protocol)
	got := map[string]int{}
	channel := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Channel":
			channel = f[1]
		case len(f) >= 5 && f[0] == "Routes:" && channel != "":
			// "Routes: 0 imported, 3000 exported, 0 preferred"
			for i := 1; i+1 < len(f); i++ {
				if strings.TrimSuffix(f[i+1], ",") == "exported" {
					n, err := strconv.Atoi(f[i])
					if err != nil {
						tb.Fatalf("lab: birdc show protocols all %s: %q", protocol, line)
					}
					got[channel] = n
				}
			}
		}
	}
	return got
}

// BIRDStatic is a BIRD `protocol static` block named name, of channel
// ("ipv4" or "ipv6"), holding a blackhole route for each of ps: routes for
// BIRD to export. (BIRD refuses `include` inside a protocol block, so the
// routes are inline.)
func BIRDStatic(name, channel string, ps []netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "protocol static %s {\n\t%s;\n", name, channel)
	for _, p := range ps {
		fmt.Fprintf(&b, "\troute %v blackhole;\n", p)
	}
	b.WriteString("}\n")
	return b.String()
}
