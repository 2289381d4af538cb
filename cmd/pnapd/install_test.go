package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// make install stages what a host needs: the binary the unit starts, the
// unit, the sysusers.d and tmpfiles.d entries, an example configuration
// that passes check, and it never overwrites an operator's configuration.
func TestMakeInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pnapd")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make")
	}
	dest, bin := t.TempDir(), t.TempDir()
	install := func() string {
		t.Helper()
		cmd := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "install", "DESTDIR="+dest, "BIN="+bin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make install: %v\n%s", err, out)
		}
		return string(out)
	}
	install()
	for path, mode := range map[string]os.FileMode{
		"usr/local/bin/pnapd":                        0o755,
		"etc/systemd/system/pnapd.service":           0o644,
		"usr/lib/sysusers.d/pnapd.conf":              0o644,
		"usr/lib/tmpfiles.d/pnapd.conf":              0o644,
		"usr/share/doc/pnapd/pnapd.toml.example":     0o644,
		"usr/share/doc/pnapd/grafana-dashboard.json": 0o644,
		"etc/pnapd/pnapd.toml":                       0o640,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, st.Mode().Perm(), mode)
		}
	}
	// The unit starts the binary where make install put it.
	unit, _ := os.ReadFile(filepath.Join(dest, "etc/systemd/system/pnapd.service"))
	sc := bufio.NewScanner(strings.NewReader(string(unit)))
	for sc.Scan() {
		if exe, ok := strings.CutPrefix(sc.Text(), "ExecStart="); ok && !strings.HasPrefix(exe, "/usr/local/bin/pnapd ") {
			t.Errorf("the unit starts %q", exe)
		}
	}
	if code, _, errs := runCmd(t, "", "check", "-c", filepath.Join(dest, "etc/pnapd/pnapd.toml")); code != 0 {
		t.Errorf("the installed configuration does not pass check: %s", errs)
	}
	// A second install leaves the operator's configuration alone.
	mine := []byte("# mine\n")
	if err := os.WriteFile(filepath.Join(dest, "etc/pnapd/pnapd.toml"), mine, 0o640); err != nil {
		t.Fatal(err)
	}
	install()
	if b, _ := os.ReadFile(filepath.Join(dest, "etc/pnapd/pnapd.toml")); string(b) != string(mine) {
		t.Errorf("make install overwrote /etc/pnapd/pnapd.toml: %q", b)
	}
}
