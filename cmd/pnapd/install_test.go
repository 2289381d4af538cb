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
// unit, the sysusers.d and tmpfiles.d entries, the completions and the man
// page, an example configuration that passes check, and it never
// overwrites an operator's configuration.
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
		"usr/local/bin/pnapd":                         0o755,
		"etc/systemd/system/pnapd.service":            0o644,
		"usr/lib/sysusers.d/pnapd.conf":               0o644,
		"usr/lib/tmpfiles.d/pnapd.conf":               0o644,
		"usr/share/doc/pnapd/pnapd.toml.example":      0o644,
		"usr/share/doc/pnapd/grafana-dashboard.json":  0o644,
		"etc/pnapd/pnapd.toml":                        0o640,
		"usr/share/bash-completion/completions/pnapd": 0o644,
		"usr/share/zsh/vendor-completions/_pnapd":     0o644,
		"usr/share/man/man8/pnapd.8":                  0o644,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v, mode %v, want %v", path, err, st.Mode().Perm(), mode)
		}
	}
	// The completions and the man page are what the installed pnapd prints.
	for path, args := range map[string][]string{
		"usr/share/bash-completion/completions/pnapd": {"completion", "bash"},
		"usr/share/zsh/vendor-completions/_pnapd":     {"completion", "zsh"},
		"usr/share/man/man8/pnapd.8":                  {"man"},
	} {
		want, err := exec.Command(filepath.Join(dest, "usr/local/bin/pnapd"), args...).Output()
		got, _ := os.ReadFile(filepath.Join(dest, path))
		if err != nil || len(want) == 0 || string(got) != string(want) {
			t.Errorf("%s is not what pnapd %s prints (%v)", path, strings.Join(args, " "), err)
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

// make deb builds a Debian package of the same files at Debian's paths:
// its control fields, its contents, the configuration as a conffile, and a
// unit that starts the packaged binary.
func TestMakeDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pnapd and nfpm")
	}
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("dpkg-deb is missing")
		}
		t.Skip("no dpkg-deb to read the package with")
	}
	bin := t.TempDir()
	out, err := exec.Command("make", "-s", "-C", filepath.Join("..", ".."), "deb", "BIN="+bin).CombinedOutput()
	if err != nil {
		t.Fatalf("make deb: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(bin, "pnapd_*_amd64.deb"))
	if len(debs) != 1 {
		t.Fatalf("packages: %v\n%s", debs, out)
	}
	info, err := exec.Command("dpkg-deb", "-I", debs[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Package: pnapd", "Version: 0.0~git", "Architecture: amd64", "Depends: systemd", "postinst"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", want, info)
		}
	}
	contents, err := exec.Command("dpkg-deb", "-c", debs[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"./usr/bin/pnapd", "./lib/systemd/system/pnapd.service", "./usr/lib/sysusers.d/pnapd.conf", "./usr/lib/tmpfiles.d/pnapd.conf", "./etc/pnapd/pnapd.toml",
		"./usr/share/bash-completion/completions/pnapd", "./usr/share/zsh/vendor-completions/_pnapd", "./usr/share/man/man8/pnapd.8.gz"} {
		if !strings.Contains(string(contents), want+"\n") {
			t.Errorf("the package lacks %s:\n%s", want, contents)
		}
	}
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(contents), "\n") {
		generated := strings.HasSuffix(line, "/completions/pnapd") || strings.HasSuffix(line, "/_pnapd") || strings.HasSuffix(line, "/pnapd.8.gz")
		if generated && !strings.HasPrefix(line, "-rw-r--r-- ") {
			t.Errorf("not mode 0644: %s", line)
		}
	}
	if out, err := exec.Command("gzip", "-dc", filepath.Join(x, "usr/share/man/man8/pnapd.8.gz")).Output(); err != nil || !strings.Contains(string(out), "\n.TH PNAPD 8 ") {
		t.Errorf("the packaged man page: %v\n%.200s", err, out)
	}
	unit, _ := os.ReadFile(filepath.Join(x, "lib/systemd/system/pnapd.service"))
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/pnapd run") || strings.Contains(string(unit), "/usr/local/") {
		t.Errorf("the packaged unit does not start /usr/bin/pnapd:\n%s", unit)
	}
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", debs[0], ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); strings.TrimSpace(string(b)) != "/etc/pnapd/pnapd.toml" {
		t.Errorf("conffiles: %q", b)
	}
}
