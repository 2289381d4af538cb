package shareddata

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Names of the files in the shared data directory.
const (
	IPv4Full   = "ipv4-full.txt.gz"
	IPv6Full   = "ipv6-full.txt.gz"
	IPv4Origin = "ipv4-origin-rv2-20240406.txt.gz"
	IPv6Origin = "ipv6-origin-rv6-2020.txt.gz"
	MRTv4      = "mrt/rv2-rib.20260730.1400.head.mrt.gz"
	MRTv6      = "mrt/rv6-rib.20260730.1400.head.mrt.gz"
)

// Dir returns the shared data directory: $PNAP_DATA if set, else
// ../shared/data beside the checkout (the directory holding go.mod), else,
// for a clone of a local checkout (git clone /work/main /tmp/x), the
// shared/data beside the checkout it was cloned from. It returns "" when
// none exists.
func Dir() string {
	if d := os.Getenv("PNAP_DATA"); d != "" {
		return d
	}
	root := moduleRoot()
	if root == "" {
		return ""
	}
	if data := filepath.Join(filepath.Dir(root), "shared", "data"); isDir(data) {
		return data
	}
	if origin := localOrigin(root); origin != "" {
		if data := filepath.Join(filepath.Dir(origin), "shared", "data"); isDir(data) {
			return data
		}
	}
	return ""
}

// moduleRoot is the nearest directory above the working directory that
// holds go.mod, or "".
func moduleRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}

// localOrigin returns the checkout root was cloned from when that is a
// directory on this machine (remote "origin" is a local path), or "".
func localOrigin(root string) string {
	out, err := exec.Command("git", "-C", root, "config", "--get", "remote.origin.url").Output()
	if err != nil {
		return ""
	}
	url := strings.TrimPrefix(strings.TrimSpace(string(out)), "file://")
	if !filepath.IsAbs(url) || !isDir(url) {
		return ""
	}
	return filepath.Clean(url)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// File returns the path of a shared data file. When the file is missing the
// test is skipped with a message naming PNAP_DATA, except under CI (CI set),
// where the data is always present and its absence is a failure.
func File(tb testing.TB, name string) string {
	tb.Helper()
	dir := Dir()
	p := filepath.Join(dir, name)
	if dir != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := "shared data file " + name + " not found; set PNAP_DATA to the directory holding the shared routing tables (default ../shared/data)"
	if os.Getenv("CI") != "" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
	return ""
}
