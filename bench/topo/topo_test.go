//go:build linux

package topo

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/pnap-project/pnap/bench/emu"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/internal/shareddata"
	"github.com/pnap-project/pnap/routes"
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

// An emulated backbone delays what crosses it: a datagram from the source
// through Linux forwarding reaches the backbone only after the delay, and
// ARP resolves through the emulator.
func TestEmulatedBackbone(t *testing.T) {
	lab.RequireRoot(t)
	x := Build(t, Options{Backbones: 1, Emulated: true})
	bb := x.Backbones[0]
	x.DUT.Sysctl(t, "net/ipv4/ip_forward", "1")
	x.DUT.AddRoute(t, "203.0.113.0/24", bb.Gateway4.String())
	c := bb.Far.Capture(t)
	payload := []byte("through-the-emulator")
	send := func() time.Duration {
		start := time.Now()
		deadline := start.Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if err := x.Source.SendUDP(netip.AddrPortFrom(x.Host4.Addr(), 40000), netip.MustParseAddrPort("203.0.113.9:9"), payload); err != nil {
				t.Fatal(err)
			}
			if f, err := c.NextMatch(300*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, payload) }); err == nil && f != nil {
				return time.Since(start)
			}
		}
		t.Fatal("nothing crossed the emulator")
		return 0
	}
	send() // resolves the gateway through the emulator
	if err := bb.Emu.Set(emu.Params{Delay: 80 * time.Millisecond}, emu.Params{}); err != nil {
		t.Fatal(err)
	}
	if took := send(); took < 80*time.Millisecond || took > 250*time.Millisecond {
		t.Fatalf("with 80 ms of delay the datagram took %v", took)
	}
}

// A per-backbone configuration gives each backbone its own route files,
// none to those past the list, and pnapd's configuration loader reads it
// so; PnapdConfig still gives every backbone the same files.
func TestPnapdConfigPerBackbone(t *testing.T) {
	dir := t.TempDir()
	var files []string
	for _, n := range []string{"a.txt", "b.txt", "c.txt"} {
		f := filepath.Join(dir, n)
		if err := os.WriteFile(f, []byte("192.0.2.0/24\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	x := &Topology{
		Customer:      &lab.Link{Name: "pnap-c0"},
		CustomerAddr4: netip.MustParsePrefix("198.18.0.1/24"), CustomerAddr6: netip.MustParsePrefix("2001:2:0:1::1/64"),
	}
	for i := range 3 {
		x.Backbones = append(x.Backbones, Backbone{
			Name: fmt.Sprintf("bb-%d", i), Port: &lab.Link{Name: fmt.Sprintf("pnap-bb%d", i)},
			Gateway4: netip.MustParseAddr(fmt.Sprintf("198.18.%d.1", 100+i)),
			Gateway6: netip.MustParseAddr(fmt.Sprintf("2001:2:0:%d::1", 100+i)),
		})
	}
	routeFiles := func(text string) [][]string {
		t.Helper()
		// Decoded as TOML here, not by configs (only the daemon reads
		// configuration); the lab tests run pnapd on these files.
		var cfg struct {
			Backbone []struct {
				RouteFile []struct{ Path string } `toml:"route_file"`
			} `toml:"backbone"`
		}
		if _, err := toml.Decode(text, &cfg); err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		var out [][]string
		for _, b := range cfg.Backbone {
			var fs []string
			for _, rf := range b.RouteFile {
				fs = append(fs, rf.Path)
			}
			out = append(out, fs)
		}
		return out
	}
	per := [][]string{{files[0]}, {files[1], files[2]}}
	if got, want := routeFiles(x.PnapdConfigPerBackbone(per, []int{1})), [][]string{{files[0]}, {files[1], files[2]}, nil}; !reflect.DeepEqual(got, want) {
		t.Errorf("per backbone: route files %v, want %v", got, want)
	}
	if got, want := routeFiles(x.PnapdConfig(files[:2], nil)), [][]string{files[:2], files[:2], files[:2]}; !reflect.DeepEqual(got, want) {
		t.Errorf("same for all: route files %v, want %v", got, want)
	}
}
