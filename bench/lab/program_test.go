//go:build linux

package lab

import (
	"os"
	"strings"
	"testing"
	"time"
)

// Main's TB behaves as a test's: Fatal ends the body, cleanups run last
// in, first out, TempDir goes with them, and the result says it failed.
func TestMainFatal(t *testing.T) {
	var out strings.Builder
	var order []string
	var dir string
	reached := false
	ok := Main("prog", &out, func(tb testing.TB) {
		dir = tb.TempDir()
		tb.Cleanup(func() { order = append(order, "first") })
		tb.Cleanup(func() { order = append(order, "second") })
		tb.Fatalf("stop at %d", 1)
		reached = true
	})
	if ok || reached {
		t.Errorf("Main = %v, after Fatal reached = %v; want false, false", ok, reached)
	}
	if strings.Join(order, ",") != "second,first" {
		t.Errorf("cleanups ran %v, want second,first", order)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("TempDir %s still there: %v", dir, err)
	}
	if got := out.String(); got != "prog: stop at 1\n" {
		t.Errorf("output %q", got)
	}
}

// Errorf fails but carries on; a clean body passes; Skip and a panic fail,
// and the panic's cleanups still run.
func TestMainOutcomes(t *testing.T) {
	for _, c := range []struct {
		name string
		body func(tb testing.TB)
		ok   bool
	}{
		{"clean", func(tb testing.TB) { tb.Log("fine") }, true},
		{"error", func(tb testing.TB) { tb.Error("bad"); tb.Log("after") }, false},
		{"skip", func(tb testing.TB) { tb.Skip("not here") }, false},
		{"panic", func(tb testing.TB) { panic("boom") }, false},
	} {
		var out strings.Builder
		cleaned := false
		ok := Main(c.name, &out, func(tb testing.TB) {
			tb.Cleanup(func() { cleaned = true })
			c.body(tb)
		})
		if ok != c.ok || !cleaned {
			t.Errorf("%s: Main = %v, cleaned %v; want %v, true; output:\n%s", c.name, ok, cleaned, c.ok, out.String())
		}
		if c.name == "error" && !strings.Contains(out.String(), "error: after") {
			t.Errorf("error: did not carry on after Error:\n%s", out.String())
		}
	}
}

// A program interrupted by Ctrl-C leaves nothing behind either: the child
// runs Main with a TempDir and a namespace; after SIGINT both are gone.
func TestMainInterrupt(t *testing.T) {
	if os.Getenv("LAB_TEST_MAIN_CHILD") == "1" {
		Main("sig", os.Stderr, func(tb testing.TB) {
			dir := tb.TempDir()
			n := NewNS(tb, "sigm")
			os.Stdout.WriteString("ready " + dir + " " + n.Name + "\n")
			time.Sleep(time.Minute) // the parent interrupts this
		})
		os.Exit(1)
	}
	RequireRoot(t)
	cmd, ready := startChild(t, "TestMainInterrupt", "LAB_TEST_MAIN_CHILD=1")
	if ready == nil {
		t.Fatal("child never reported its TempDir and namespace")
	}
	dir, ns := ready[0], ready[1]
	interrupt(t, cmd)
	for _, p := range []string{dir, "/run/netns/" + ns} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left behind after SIGINT (stat: %v)", p, err)
		}
	}
}
