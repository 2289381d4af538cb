package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/topo"
)

// pnapd speaks systemd's Type=notify protocol: READY=1 once it forwards,
// WATCHDOG=1 while its workers run (WatchdogSec=), RELOADING=1 then
// READY=1 around a reload, STOPPING=1 on the way out. The test plays
// systemd's part on a datagram socket of its own.
func TestRunNotifiesSystemd(t *testing.T) {
	x := newRunLab(t)
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cmd := exec.Command(os.Args[0], "run", "-c", x.config)
	cmd.Env = append(os.Environ(), "PNAPD_TEST_AS_MAIN=1", "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	p, ready := topo.StartPnapd(t, cmd, x.pnap.Do)
	if !ready {
		t.Fatalf("pnapd did not start:\n%s", p)
	}
	next := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		buf := make([]byte, 4096)
		for {
			conn.SetReadDeadline(deadline)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("no %s within %v (%v):\n%s", want, within, err, p)
			}
			if strings.HasPrefix(string(buf[:n]), want) {
				return
			}
		}
	}
	next("READY=1", 2*time.Second)
	next("WATCHDOG=1", time.Second)
	next("WATCHDOG=1", time.Second)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	next("RELOADING=1", 2*time.Second)
	next("READY=1", 5*time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next("STOPPING=1", 2*time.Second)
}
