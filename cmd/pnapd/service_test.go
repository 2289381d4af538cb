package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

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
