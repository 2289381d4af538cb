//go:build linux

package rfc2544

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"github.com/pnap-project/pnap/bench/traffic"
	"github.com/pnap-project/pnap/internal/shareddata"
)

// BenchmarkGeneratorCrossCheck measures one point, pnap and Linux
// forwarding at 64 B IPv4, with trafgen (netsniff-ng) sending as fast as it
// can and then the Go generator (bench/traffic) paced at the rate trafgen
// reached, and reports what each forwarder delivered with each: offering
// the same load, the two generators should see the same result. Counts come from the interfaces' own counters, since trafgen's
// frames carry no tag.
func BenchmarkGeneratorCrossCheck(b *testing.B) {
	lab.RequireRoot(b)
	trafgen, err := exec.LookPath("trafgen")
	if err != nil {
		b.Skip("trafgen not installed (Debian package netsniff-ng)")
	}
	// trafgen's TX ring needs larger socket buffers (ENVIRONMENT.md).
	for _, k := range []string{"wmem_default", "wmem_max"} {
		os.WriteFile("/proc/sys/net/core/"+k, []byte("4194304"), 0)
	}
	dir := b.TempDir()
	files := []string{shareddata.File(b, shareddata.IPv4Full)}
	pnapd := topo.BuildPnapd(b, dir)
	split, err := splitRoutes(loadPrefixes(b, files), 4, dir)
	if err != nil {
		b.Fatal(err)
	}
	dst := netip.MustParseAddr("1.1.1.1")
	to, err := split.expect([]netip.Addr{dst})
	if err != nil {
		b.Fatal(err)
	}
	for _, fwd := range []string{Pnap, Kernel} {
		x := topo.Build(b, topo.Options{Backbones: 4})
		s := &setup{x: x, pnapd: pnapd, routes: split}
		startDUT(b, fwd, s)
		bb := x.Backbones[to[0]] // where dst's longest prefix is
		far := bb.Far
		rx := traffic.NewReceiver(b) // gives the far end NAPI; counts the tagged frames
		rx.AttachPath(b, bb.NS, far, to[0])
		gen := traffic.NewGenerator(b, x.Source, x.SourceLink, traffic.Spec{
			SrcMAC: x.SourceLink.MAC, DstMAC: x.Customer.MAC, Src: x.Host4.Addr(), Dsts: []netip.Addr{dst},
			Paths: to, FrameBytes: 64, SrcPort: 40000, DstPort: 9,
		})
		gen.Run(genCPU, 10_000, 300*time.Millisecond) // warm-up: neighbours
		time.Sleep(100 * time.Millisecond)

		// trafgen first, as fast as it goes; then the Go generator paced at
		// the rate trafgen reached, so both offer the same load.
		conf := filepath.Join(dir, "udp64.cfg")
		os.WriteFile(conf, []byte(trafgenConfig(x, dst)), 0o644)
		before, txBefore := linkPackets(b, far, false), linkPackets(b, x.SourceLink, true)
		start := time.Now()
		cmd := exec.Command("ip", "netns", "exec", x.Source.Name, "taskset", "-c", fmt.Sprint(genCPU),
			trafgen, "--dev", x.SourceLink.Name, "--conf", conf, "-P", "1", "-n", "500000", "-C", "-Q")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("trafgen: %v\n%s", err, out)
		}
		took := time.Since(start)
		time.Sleep(100 * time.Millisecond)
		tgPPS := float64(linkPackets(b, far, false)-before) / took.Seconds()
		tgOffered := float64(linkPackets(b, x.SourceLink, true)-txBefore) / took.Seconds()

		before = linkPackets(b, far, false)
		sent, err := gen.Run(genCPU, tgOffered, time.Second)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		goPPS := float64(linkPackets(b, far, false)-before) / sent.Took.Seconds()
		goOffered := sent.Rate()
		b.ReportMetric(goPPS, fwd+"-go-gen-pps")
		b.ReportMetric(tgPPS, fwd+"-trafgen-pps")
		b.Logf("%s, 64 B IPv4: Go generator offered %.0f pps, %.0f delivered; trafgen offered %.0f pps, %.0f delivered (ratio %.2f)",
			fwd, goOffered, goPPS, tgOffered, tgPPS, goPPS/tgPPS)
	}
}

// trafgenConfig is one 64-byte UDP frame (60 bytes + FCS) from the source
// to dst, with a valid IPv4 header checksum.
func trafgenConfig(x *topo.Topology, dst netip.Addr) string {
	d, s := x.Customer.MAC, x.SourceLink.MAC
	src4, dst4 := x.Host4.Addr().As4(), dst.As4()
	return fmt.Sprintf(`{
  0x%02x, 0x%02x, 0x%02x, 0x%02x, 0x%02x, 0x%02x,
  0x%02x, 0x%02x, 0x%02x, 0x%02x, 0x%02x, 0x%02x,
  0x08, 0x00,
  0x45, 0x00, const16(46), const16(0), 0x00, 0x00, 64, 17, csumip(14, 33),
  %d, %d, %d, %d,
  %d, %d, %d, %d,
  const16(40000), const16(9), const16(26), const16(0),
  fill(0x00, 18)
}
`, d[0], d[1], d[2], d[3], d[4], d[5], s[0], s[1], s[2], s[3], s[4], s[5],
		src4[0], src4[1], src4[2], src4[3], dst4[0], dst4[1], dst4[2], dst4[3])
}

// linkPackets is l's received (or, with tx, transmitted) packet counter.
func linkPackets(tb testing.TB, l *lab.Link, tx bool) uint64 {
	tb.Helper()
	ll, err := l.NS.Handle().LinkByIndex(l.Index)
	if err != nil {
		tb.Fatal(err)
	}
	if tx {
		return ll.Attrs().Statistics.TxPackets
	}
	return ll.Attrs().Statistics.RxPackets
}
