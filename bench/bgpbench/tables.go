//go:build linux

package bgpbench

import (
	"net/netip"
	"testing"

	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
)

// Tables reads the shared full tables (../shared/data): 901,899 IPv4 and
// 160,147 IPv6 prefixes. With n4 or n6 above 0 it keeps that many of the
// family, spread evenly over the table.
func Tables(tb testing.TB, n4, n6 int) (v4, v6 []netip.Prefix) {
	tb.Helper()
	read := func(name string, n int) []netip.Prefix {
		rs, err := routes.ReadPrefixFile(shareddata.File(tb, name))
		if err != nil {
			tb.Fatal(err)
		}
		return spread(prefixes(rs), n)
	}
	return read(shareddata.IPv4Full, n4), read(shareddata.IPv6Full, n6)
}

func prefixes(rs []routes.Route) []netip.Prefix {
	out := make([]netip.Prefix, len(rs))
	for i, r := range rs {
		out[i] = r.Prefix
	}
	return out
}

// spread keeps n of ps, evenly spaced; all of them when n is 0 or more
// than there are.
func spread(ps []netip.Prefix, n int) []netip.Prefix {
	if n <= 0 || n >= len(ps) {
		return ps
	}
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = ps[i*len(ps)/n]
	}
	return out
}
