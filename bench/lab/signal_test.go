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
	cmd := exec.Command(os.Args[0], "-test.run", "^TestInterruptRemovesNamespaces$", "-test.v")
	hook := t.TempDir() + "/hook"
	cmd.Env = append(os.Environ(), "LAB_TEST_INTERRUPT_CHILD=1", "LAB_TEST_HOOK_FILE="+hook)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var names []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "ready" {
			names = f[1:]
			break
		}
	}
	if names == nil {
		t.Fatal("child never reported its namespaces")
	}
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); err != nil {
			t.Fatalf("namespace %s not there while the child runs: %v", n, err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
		t.Fatalf("child exit: %v, want status 130", err)
	}
	if b, err := os.ReadFile(hook); err != nil || string(b) != "ran" {
		t.Errorf("OnInterrupt hook did not run: %q, %v", b, err)
	}
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); !os.IsNotExist(err) {
			t.Errorf("namespace %s left behind after SIGINT (stat: %v)", n, err)
		}
	}
}
