package rfc2544

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pnap-project/pnap/routes"
)

// Prefixes are dealt out by index mod the number of backbones, duplicates
// skipped, and a destination expects the backbone of its longest match,
// which may be a more specific prefix than the one it was drawn from.
func TestSplitRoutes(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	in := pp("10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.0.0/16", "2001:db8::/32", "2001:db8:1::/48", "192.0.2.0/24")
	dir := t.TempDir()
	r, err := splitRoutes(in, 3, dir)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]netip.Prefix{
		pp("10.0.0.0/8", "2001:db8::/32"),
		pp("10.1.0.0/16", "2001:db8:1::/48"),
		pp("10.1.2.0/24", "192.0.2.0/24"),
	}
	if !reflect.DeepEqual(r.sets, want) {
		t.Errorf("sets %v, want %v", r.sets, want)
	}
	for i, fs := range r.files {
		rs, err := routes.ReadPrefixFile(fs[0])
		if err != nil {
			t.Fatal(err)
		}
		var got []netip.Prefix
		for _, x := range rs {
			got = append(got, x.Prefix)
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("backbone %d's file %s holds %v, want %v", i, fs[0], got, want[i])
		}
	}
	dests := []netip.Addr{
		netip.MustParseAddr("10.9.9.9"),         // only in the /8
		netip.MustParseAddr("10.1.9.9"),         // the /16 is longer than the /8
		netip.MustParseAddr("10.1.2.3"),         // the /24 inside the /16
		netip.MustParseAddr("2001:db8:1::1"),    // the /48 inside the /32
		netip.MustParseAddr("2001:db8:ffff::1"), // the /32
	}
	got, err := r.expect(dests)
	if err != nil {
		t.Fatal(err)
	}
	if w := []int{0, 1, 2, 1, 0}; !reflect.DeepEqual(got, w) {
		t.Errorf("expected backbones %v, want %v", got, w)
	}
	if _, err := r.expect([]netip.Addr{netip.MustParseAddr("203.0.113.1")}); err == nil {
		t.Error("an address no prefix covers: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "backbone-3.routes")); err == nil {
		t.Error("a fourth route file for three backbones")
	}
}
