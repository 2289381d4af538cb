//go:build linux

package topo

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/fib/routes"
	"github.com/pnap-project/pnap/internal/shareddata"
)

// The kernel baseline's tables: the full IPv4 table loads, lookups in the
// DUT's kernel pick the loaded routes, and Linux forwards through the
// topology by them.
func TestKernelFullTable(t *testing.T) {
	lab.RequireRoot(t)
	rs, err := routes.ReadPrefixFile(shareddata.File(t, shareddata.IPv4Full))
	if err != nil {
		t.Fatal(err)
	}
	x := Build(t, Options{Backbones: 2})
	kr := make([]KernelRoute, 0, len(rs))
	for i, r := range rs {
		bb := x.Backbones[i%2]
		kr = append(kr, KernelRoute{Prefix: r.Prefix, Gateway: bb.Gateway4, Ifindex: bb.Port.Index})
	}
	took, err := LoadKernelRoutes(x.DUT, kr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d IPv4 routes into the kernel in %v", len(kr), took)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		i := rng.IntN(len(kr))
		r := kr[i]
		if r.Prefix.Bits() < 8 || r.Prefix.Contains(netip.MustParseAddr("198.18.0.1")) {
			continue
		}
		got, err := x.DUT.Handle().RouteGet(r.Prefix.Addr().AsSlice())
		if err != nil {
			t.Fatal(err)
		}
		// A longer loaded prefix may cover the address; its gateway is
		// then one of the two, and the kernel found some loaded route.
		if len(got) != 1 || got[0].Gw == nil || (!got[0].Gw.Equal(x.Backbones[0].Gateway4.AsSlice()) && !got[0].Gw.Equal(x.Backbones[1].Gateway4.AsSlice())) {
			t.Fatalf("route for %v: %+v", r.Prefix.Addr(), got)
		}
	}

	// Linux forwards by them: a datagram to an address in a loaded prefix
	// reaches that route's backbone.
	x.DUT.Sysctl(t, "net/ipv4/ip_forward", "1")
	var dst KernelRoute
	for _, r := range kr {
		if r.Prefix.Bits() == 24 && r.Gateway == x.Backbones[1].Gateway4 {
			dst = r
			break
		}
	}
	c := x.Backbones[1].Far.Capture(t)
	to := netip.AddrPortFrom(dst.Prefix.Addr().Next(), 9)
	payload := []byte("kernel-baseline")
	deadline := time.Now().Add(3 * time.Second)
	for {
		if err := x.Source.SendUDP(netip.AddrPortFrom(x.Host4.Addr(), 40000), to, payload); err != nil {
			t.Fatal(err)
		}
		f, err := c.NextMatch(200*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, payload) })
		if err == nil && len(f) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("datagram to %v never reached %s", to, x.Backbones[1].Name)
		}
	}
}

// A route the kernel refuses is an error naming it.
func TestKernelRouteErrorNamesRoute(t *testing.T) {
	lab.RequireRoot(t)
	x := Build(t, Options{Backbones: 1})
	bb := x.Backbones[0]
	kr := []KernelRoute{
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Gateway: bb.Gateway4, Ifindex: bb.Port.Index},
		// The gateway is not on the interface's subnet: unreachable.
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Gateway: netip.MustParseAddr("10.9.9.9"), Ifindex: bb.Port.Index},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Gateway: bb.Gateway6, Ifindex: bb.Port.Index},
	}
	_, err := LoadKernelRoutes(x.DUT, kr)
	if err == nil || !strings.Contains(err.Error(), "192.0.2.0/24 via 10.9.9.9") {
		t.Fatalf("error %v, want one naming 192.0.2.0/24 via 10.9.9.9", err)
	}
	got, err := x.DUT.Handle().RouteGet(netip.MustParseAddr("2001:db8::1").AsSlice())
	if err != nil || len(got) != 1 || !got[0].Gw.Equal(bb.Gateway6.AsSlice()) {
		t.Fatalf("IPv6 route after the error: %+v, %v", got, err)
	}
}
