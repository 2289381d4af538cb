//go:build linux

package lab

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	capNetAdmin = 12
	capSysAdmin = 21
)

var (
	rootOnce sync.Once
	rootErr  error
)

// RequireRoot skips tb with a clear message unless the process can create
// network namespaces (root, or CAP_NET_ADMIN and CAP_SYS_ADMIN). When the
// environment variable CI is set (non-empty) it fails tb instead of skipping,
// so a CI machine that lost its privileges does not pass silently.
//
// The check reads the effective capabilities and then probes once per
// process by creating (and immediately dropping) a network namespace on a
// throw-away OS thread.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	rootOnce.Do(func() { rootErr = canCreateNetns() })
	if rootErr == nil {
		return
	}
	msg := "lab: this test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces: " + rootErr.Error()
	if os.Getenv("CI") != "" {
		tb.Fatal(msg + " (CI is set: failing instead of skipping)")
	}
	tb.Skip(msg)
}

func canCreateNetns() error {
	capEff, err := effectiveCaps()
	if err != nil {
		return err
	}
	for _, c := range []struct {
		bit  uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capSysAdmin, "CAP_SYS_ADMIN"}} {
		if capEff&(1<<c.bit) == 0 {
			return fmt.Errorf("missing %s (uid %d)", c.name, os.Geteuid())
		}
	}
	// Probe: unshare a network namespace on a thread that is then discarded.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		errc <- unix.Unshare(unix.CLONE_NEWNET)
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
	}
	return nil
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no CapEff in /proc/self/status")
}
