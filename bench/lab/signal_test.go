//go:build linux

package lab

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A lab interrupted by Ctrl-C leaves nothing behind. The test runs itself
// as a child that builds a namespace with a veth, prints its name and waits;
// the parent interrupts it and checks that its OnInterrupt hook ran and
// the namespaces are gone (their veths go with them).
func TestInterruptRemovesNamespaces(t *testing.T) {
	if os.Getenv("LAB_TEST_INTERRUPT_CHILD") == "1" {
		a := NewNS(t, "sig")
		b := NewNS(t, "sig")
		Connect(t, a, "sig-a", b, "sig-b", VethOpts{})
		OnInterrupt(t, func() { os.WriteFile(os.Getenv("LAB_TEST_HOOK_FILE"), []byte("ran"), 0o644) })
		os.Stdout.WriteString("ready " + a.Name + " " + b.Name + "\n")
		time.Sleep(time.Minute) // the parent interrupts this
		t.Fatal("not interrupted")
	}
	RequireRoot(t)
	hook := t.TempDir() + "/hook"
	cmd, names := startChild(t, "TestInterruptRemovesNamespaces", "LAB_TEST_INTERRUPT_CHILD=1", "LAB_TEST_HOOK_FILE="+hook)
	if names == nil {
		t.Fatal("child never reported its namespaces")
	}
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); err != nil {
			t.Fatalf("namespace %s not there while the child runs: %v", n, err)
		}
	}
	interrupt(t, cmd)
	if b, err := os.ReadFile(hook); err != nil || string(b) != "ran" {
		t.Errorf("OnInterrupt hook did not run: %q, %v", b, err)
	}
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s left behind after SIGINT (stat: %v)", n, err)
		}
	}
}

// startChild runs this test binary again as a child that runs only test,
// with env added, and waits for the line "ready <a> <b>" the child prints
// once it is set up: it returns a and b, or nil if the child never says so.
// The child is killed at cleanup if it is still running.
func startChild(t *testing.T, test string, env ...string) (*exec.Cmd, []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ready" {
			return cmd, f[1:]
		}
	}
	return cmd, nil
}

// interrupt sends the child SIGINT, as Ctrl-C does, and checks that it
// exits with status 130.
func interrupt(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("child exit: %v, want status 130", err)
	}
}
