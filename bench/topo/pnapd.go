package topo

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BuildPnapd builds cmd/pnapd into dir and returns its path: labs run the
// real binary.
func BuildPnapd(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "pnapd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/pnap-project/pnap/cmd/pnapd")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("building pnapd: %v", err)
	}
	return bin
}
