package shareddata

import (
	"os"
	"path/filepath"
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
// ../shared/data relative to the directory holding go.mod. It returns ""
// when neither exists.
func Dir() string {
	if d := os.Getenv("PNAP_DATA"); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			data := filepath.Join(filepath.Dir(d), "shared", "data")
			if _, err := os.Stat(data); err == nil {
				return data
			}
			return ""
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
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
