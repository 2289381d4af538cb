package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/topo"
	"golang.org/x/sys/unix"
)

// capNumbers are the capabilities the unit may name.
var capNumbers = map[string]uintptr{
	"CAP_NET_ADMIN": unix.CAP_NET_ADMIN, "CAP_NET_RAW": unix.CAP_NET_RAW, "CAP_IPC_LOCK": unix.CAP_IPC_LOCK,
	"CAP_SYS_ADMIN": unix.CAP_SYS_ADMIN, "CAP_SYS_RESOURCE": unix.CAP_SYS_RESOURCE,
	"CAP_PERFMON": unix.CAP_PERFMON, "CAP_BPF": unix.CAP_BPF, "CAP_SYS_NICE": unix.CAP_SYS_NICE,
}

// serviceCaps reads AmbientCapabilities from configs/pnapd.service.
func serviceCaps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "pnapd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "AmbientCapabilities="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("configs/pnapd.service has no AmbientCapabilities line")
	return nil
}

// TestRunWithServiceCapabilities runs pnapd as the systemd unit does: an
// unprivileged user holding only the unit's ambient capabilities, with an
// unlimited locked-memory limit (LimitMEMLOCK=infinity). It must forward;
// and without any one of those capabilities it must refuse to start with an
// error, which shows the set is minimal.
func TestRunWithServiceCapabilities(t *testing.T) {
	caps := serviceCaps(t)
	x := newRunLab(t)
	bin, conf := unprivilegedCopy(t)
	var old unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_MEMLOCK, &old)
	inf := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &inf); err != nil {
		// Some sandboxes withhold CAP_SYS_RESOURCE even from root; the
		// lab's UMEMs (1 MiB a port) fit the usual 8 MiB limit anyway.
		t.Logf("cannot lift RLIMIT_MEMLOCK (%v); running with %d KiB", err, old.Cur>>10)
	} else {
		t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_MEMLOCK, &old) })
	}

	run := func(caps []string, env ...string) (bool, string) {
		var ambient []uintptr
		for _, c := range caps {
			n, ok := capNumbers[c]
			if !ok {
				t.Fatalf("unknown capability %s in the unit", c)
			}
			ambient = append(ambient, n)
		}
		cmd := exec.Command(bin, "run", "-c", conf)
		cmd.Env = append(append(os.Environ(), "PNAPD_TEST_AS_MAIN=1"), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: ambient}
		p, ok := topo.StartPnapd(t, cmd, x.pnap.Do)
		p.Stop()
		return ok, p.String()
	}
	if ok, logs := run(caps); !ok {
		t.Fatalf("pnapd with the unit's capabilities %v did not start forwarding:\n%s", caps, logs)
	}
	for i, c := range caps {
		fewer := append(append([]string(nil), caps[:i]...), caps[i+1:]...)
		ok, logs := run(fewer)
		if ok {
			t.Errorf("pnapd started without %s: the unit asks for more than it needs", c)
			continue
		}
		if !strings.Contains(logs, "missing capabilities: "+c) {
			t.Errorf("without %s pnapd failed without naming it:\n%s", c, logs)
		}
		t.Logf("without %s: %s", c, lastLine(logs))
		// Not only pnapd's own check: the kernel refuses too.
		if ok, logs := run(fewer, "PNAPD_SKIP_CAPABILITY_CHECK=1"); ok {
			t.Errorf("without %s (and pnapd's check skipped) pnapd forwarded: the unit asks for more than it needs", c)
		} else {
			t.Logf("without %s, check skipped: %s", c, lastLine(logs))
		}
	}
}

func lastLine(s string) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	return ls[len(ls)-1]
}

// unprivilegedCopy puts this test binary (which runs as pnapd, see TestMain)
// and the lab configuration where user nobody can read them.
func unprivilegedCopy(t *testing.T) (bin, conf string) {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	bin = filepath.Join(dir, "pnapd")
	copyFile(t, os.Args[0], bin, 0o755)
	src := filepath.Join("..", "..", "configs", "examples")
	conf = filepath.Join(dir, "lab.toml")
	copyFile(t, filepath.Join(src, "lab.toml"), conf, 0o644)
	os.Mkdir(filepath.Join(dir, "routes"), 0o755)
	ents, err := os.ReadDir(filepath.Join(src, "routes"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(src, "routes", e.Name()), filepath.Join(dir, "routes", e.Name()), 0o644)
	}
	return bin, conf
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", from, err))
	}
}

// requireTool returns the path of a program the test needs, or skips the
// test without it (fails it under CI, which installs it: .ci/run).
func requireTool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s is not installed (Debian package %s)", name, debianPackage)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI is set: failing instead of skipping")
		}
		t.Skip(msg)
	}
	return path
}

// unitValues are the values of every key= line of configs/pnapd.service,
// split into words, in order.
func unitValues(t *testing.T, key string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "pnapd.service"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			out = append(out, strings.Fields(v)...)
		}
	}
	return out
}

// TestServiceSecurityScore keeps the unit's sandbox where the operator's
// `systemd-analyze security pnapd.service` puts it: 2.5 or less (it was 6.4
// before the sandboxing directives).
func TestServiceSecurityScore(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	unit := filepath.Join("..", "..", "configs", "pnapd.service")
	out, err := exec.Command(sa, "security", "--offline=true", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for pnapd.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > 2.5 {
		t.Errorf("the unit's exposure is %.1f, above 2.5:\n%s", score, out)
	}
}

// syscallAllowList expands the unit's SystemCallFilter= allow list (its
// groups through systemd-analyze, which knows this systemd's groups) into
// system call names, with those systemd always permits.
func syscallAllowList(t *testing.T, sa string) map[string]bool {
	t.Helper()
	allowed := map[string]bool{"execve": true, "exit": true, "exit_group": true, "getrlimit": true, "rt_sigreturn": true, "sigreturn": true}
	var expand func(name string)
	expand = func(name string) {
		if !strings.HasPrefix(name, "@") {
			allowed[name] = true
			return
		}
		out, err := exec.Command(sa, "syscall-filter", "--no-pager", name).Output()
		if err != nil {
			t.Fatalf("systemd-analyze syscall-filter %s: %v", name, err)
		}
		for _, l := range strings.Split(string(out), "\n")[1:] {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				expand(l)
			}
		}
	}
	for _, v := range unitValues(t, "SystemCallFilter") {
		if strings.HasPrefix(v, "~") {
			t.Fatalf("SystemCallFilter=%s: this test understands allow lists only", v)
		}
		expand(v)
	}
	if len(allowed) < 100 {
		t.Fatalf("the unit's SystemCallFilter= allows only %d system calls", len(allowed))
	}
	return allowed
}

// TestServiceSandboxAllowsPnapd checks the unit's SystemCallFilter= and
// RestrictAddressFamilies= against what pnapd does: run as the unit runs
// it (unprivileged, the unit's capabilities) under strace while it starts,
// forwards, reloads and stops, every system call it makes must be in the
// allow list and every socket it opens in an allowed family. Without
// systemd as init here the filters cannot be enforced, so this traces
// instead; a call they would refuse fails the test by name.
func TestServiceSandboxAllowsPnapd(t *testing.T) {
	sa := requireTool(t, "systemd-analyze", "systemd")
	strace := requireTool(t, "strace", "strace")
	allowed := syscallAllowList(t, sa)
	families := map[string]bool{}
	for _, f := range unitValues(t, "RestrictAddressFamilies") {
		families[f] = true
	}
	x := newRunLab(t)
	capA := x.al.Capture(t)
	bin, conf := unprivilegedCopy(t)
	var ambient []uintptr
	for _, c := range serviceCaps(t) {
		ambient = append(ambient, capNumbers[c])
	}
	// traced is a command of the unit's (ExecStartPre, ExecStart,
	// ExecReload) as the unit runs it, under strace writing to its own file.
	var traces []string
	traced := func(args ...string) *exec.Cmd {
		trace := filepath.Join(filepath.Dir(bin), fmt.Sprintf("trace%d", len(traces)))
		if err := os.WriteFile(trace, nil, 0o666); err != nil {
			t.Fatal(err)
		}
		os.Chmod(trace, 0o666)
		traces = append(traces, trace)
		cmd := exec.Command(strace, append([]string{"-f", "-qq", "-o", trace, bin}, args...)...)
		cmd.Env = append(os.Environ(), "PNAPD_TEST_AS_MAIN=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}, AmbientCaps: ambient}
		return cmd
	}
	if out, err := runIn(x.pnap.Do, traced("check", "--host", "-c", conf)); err != nil {
		t.Fatalf("pnapd check --host under strace: %v\n%s", err, out)
	}
	cmd := traced("run", "-c", conf)
	p, ok := topo.StartPnapd(t, cmd, x.pnap.Do)
	if !ok {
		t.Fatalf("pnapd under strace did not start forwarding:\n%s", p)
	}
	if _, f := x.sendUntil(t, capA, 10*time.Second); f == nil {
		t.Fatalf("pnapd under strace forwarded nothing within 10 s:\n%s", p)
	}
	if out, err := runIn(x.pnap.Do, traced("reload", "-c", conf)); err != nil {
		t.Fatalf("pnapd reload under strace: %v\n%s", err, out)
	}
	pid := tracedChild(t, cmd.Process.Pid)
	signalAndWait(t, p, pid, syscall.SIGHUP, 2)
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(20 * time.Second):
		t.Fatalf("pnapd under strace did not stop within 20 s of SIGTERM:\n%s", p)
	}
	if !strings.Contains(p.String(), "msg=stopped") {
		t.Fatalf("pnapd did not stop cleanly:\n%s", p)
	}
	checkTrace(t, traces, allowed, families)
}

// runIn runs cmd to completion from a thread enter has put in a namespace.
func runIn(enter func(func() error) error, cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := enter(cmd.Start); err != nil {
		return nil, err
	}
	err := cmd.Wait()
	return out.Bytes(), err
}

// tracedChild is the PID of strace's child, pnapd.
func tracedChild(t *testing.T, stracePID int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", stracePID, stracePID))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(b) + " x")[0])
	if err != nil {
		t.Fatalf("strace has no child: %q", b)
	}
	return pid
}

// signalAndWait sends sig to pid and waits until pnapd has logged its
// reloads'th "reloaded".
func signalAndWait(t *testing.T, p *topo.Pnapd, pid int, sig syscall.Signal, reloads int) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); strings.Count(p.String(), "msg=reloaded") < reloads; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no reload within 20 s of %v:\n%s", sig, p)
		}
	}
}

// checkTrace fails the test for every system call in strace's outputs that
// allowed lacks and every socket family that families lacks.
func checkTrace(t *testing.T, traces []string, allowed, families map[string]bool) {
	t.Helper()
	var b []byte
	for _, trace := range traces {
		tb, err := os.ReadFile(trace)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, tb...)
	}
	call := regexp.MustCompile(`(?m)^\d+\s+([a-z0-9_]+)\(`)
	socket := regexp.MustCompile(`(?m)^\d+\s+socket\(([A-Z0-9_]+|\d+),`)
	calls, fams := map[string]int{}, map[string]int{}
	for _, m := range call.FindAllStringSubmatch(string(b), -1) {
		calls[m[1]]++
	}
	for _, m := range socket.FindAllStringSubmatch(string(b), -1) {
		fams[m[1]]++
	}
	if calls["bpf"] == 0 || fams["AF_XDP"] == 0 {
		t.Fatalf("the trace has no bpf() or AF_XDP socket: strace did not follow pnapd (%d lines)", bytes.Count(b, []byte("\n")))
	}
	for _, c := range slices.Sorted(maps.Keys(calls)) {
		if !allowed[c] {
			t.Errorf("pnapd calls %s (%d times), which the unit's SystemCallFilter= refuses", c, calls[c])
		}
	}
	for _, f := range slices.Sorted(maps.Keys(fams)) {
		if !families[f] {
			t.Errorf("pnapd opens %s sockets (%d), which the unit's RestrictAddressFamilies= refuses", f, fams[f])
		}
	}
	t.Logf("%d distinct system calls, socket families %v: all allowed by the unit", len(calls), slices.Sorted(maps.Keys(fams)))
}
