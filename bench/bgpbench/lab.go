//go:build linux

package bgpbench

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
)

// The lab's AS numbers, from the documentation range (RFC 5398): both
// receivers are localAS; feeder i is feederAS+i; the flapping speaker is
// speakerAS.
const (
	localAS   = 64496
	feederAS  = 64501
	speakerAS = 64505
)

// feeders is the number of backbones fed a table; backbone feeders (the
// last) is the flapping speaker's.
const feeders = 4

// labLayout: topo's DUT namespace is pnapd's, with one port per backbone
// (198.18.(100+i).2, gateway .1 in backbone i's namespace). The BIRD
// receiver has a namespace of its own with a veth to each backbone
// namespace: 198.18.(120+i).2 and 2001:2:0:(120+i)::2 on its side, .1 and
// ::1 on the backbone's. A backbone namespace holds feeder i's BIRD (or the
// speaker), which thus has a distinct address pair toward each receiver.
type labLayout struct {
	x    *topo.Topology
	rcv  *lab.NS
	dir  string
	bird string // BIRD's binary

	feeders []*bird
	speaker *speaker
	// perFeeder is how many routes each feeder sends (IPv4 + IPv6): its
	// static protocols' count, which may be below the table's if BIRD
	// refused some.
	perFeeder int
}

// rcvAddr4 and friends are the addresses on the receiver's veth to
// backbone i: its own (self) and the backbone's.
func rcvAddr4(i int, self bool) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(120 + i), map[bool]byte{true: 2, false: 1}[self]})
}

func rcvAddr6(i int, self bool) netip.Addr {
	return netip.MustParseAddr(fmt.Sprintf("2001:2:0:%d::%d", 120+i, map[bool]int{true: 2, false: 1}[self]))
}

// buildLab makes the namespaces, starts a BIRD feeder holding v4 and v6 in
// each of the first feeders backbone namespaces and the speaker, flapping
// flap, in the last, and waits until every feeder has its table loaded.
func buildLab(tb testing.TB, opt Options) *labLayout {
	tb.Helper()
	bird, _ := lab.RequireBIRD(tb)
	l := &labLayout{bird: bird, dir: tb.TempDir()}
	os.Chmod(l.dir, 0o755)
	l.x = topo.Build(tb, topo.Options{Backbones: feeders + 1})
	l.rcv = lab.NewNS(tb, "rcv")
	for i, bb := range l.x.Backbones {
		far, near := lab.Connect(tb, bb.NS, "r", l.rcv, fmt.Sprintf("feed%d", i), lab.VethOpts{})
		far.AddAddr(tb, netip.PrefixFrom(rcvAddr4(i, false), 24).String(), netip.PrefixFrom(rcvAddr6(i, false), 64).String())
		near.AddAddr(tb, netip.PrefixFrom(rcvAddr4(i, true), 24).String(), netip.PrefixFrom(rcvAddr6(i, true), 64).String())
	}

	// The table goes into one file that every feeder includes at top
	// level: BIRD refuses include inside a protocol block.
	table := filepath.Join(l.dir, "table.conf")
	if err := writeStatic(table, opt.V4, opt.V6); err != nil {
		tb.Fatal(err)
	}
	opt.progress("  starting %d BIRD feeders with %d IPv4 + %d IPv6 routes each...", feeders, len(opt.V4), len(opt.V6))
	start := time.Now()
	for i := range feeders {
		l.feeders = append(l.feeders, startBIRD(tb, l.bird, l.x.Backbones[i].NS, fmt.Sprintf("feeder%d", i), l.dir, l.feederConfig(i, table)))
	}
	for i, f := range l.feeders {
		n, err := waitStatic(f, len(opt.V4)+len(opt.V6), time.Minute)
		if err != nil {
			tb.Fatalf("feeder %d: %v", i, err)
		}
		if i == 0 {
			l.perFeeder = n
		} else if n != l.perFeeder {
			tb.Fatalf("feeder %d holds %d routes, feeder 0 %d", i, n, l.perFeeder)
		}
	}
	opt.progress("  feeders loaded in %.1f s, %d routes each", time.Since(start).Seconds(), l.perFeeder)

	sp := l.x.Backbones[feeders]
	var ln net.Listener
	if err := sp.NS.Do(func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:179"); return err }); err != nil {
		tb.Fatal(err)
	}
	l.speaker = newSpeaker(ln, speakerAS, sp.Gateway4, opt.Flap)
	tb.Cleanup(l.speaker.close)
	return l
}

// target is the routes a receiver holds from the feeders once converged.
func (l *labLayout) target() int { return feeders * l.perFeeder }

// writeStatic writes the BIRD static protocols that hold the table.
func writeStatic(path string, v4, v6 []netip.Prefix) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, t := range []struct {
		name, channel string
		ps            []netip.Prefix
	}{{"table4", "ipv4", v4}, {"table6", "ipv6", v6}} {
		fmt.Fprintf(w, "protocol static %s {\n\t%s;\n", t.name, t.channel)
		for _, p := range t.ps {
			fmt.Fprintf(w, "\troute %v blackhole;\n", p)
		}
		w.WriteString("}\n")
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitStatic waits until BIRD's static protocols hold want routes, or for
// as long as the count still grows, at most timeout; it returns the count.
func waitStatic(b *bird, want int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		ps, err := b.protocols()
		if err != nil {
			return 0, err
		}
		n, up := 0, 0
		for _, name := range []string{"table4", "table6"} {
			if p := ps[name]; p != nil && p.State == "up" {
				n += p.Imported
				up++
			}
		}
		if up == 2 && n == want {
			return n, nil
		}
		if time.Now().After(deadline) {
			if up == 2 && n > 0 {
				return n, nil // BIRD refused some routes: feed what it has
			}
			return n, fmt.Errorf("static protocols hold %d of %d routes after %v", n, want, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// feederConfig is feeder i's bird.conf: the table, one session toward
// pnapd over backbone i's port and one toward the BIRD receiver, both
// passive (the receivers connect, as a transit's router waits for its
// customer), exporting everything with the feeder's own address on that
// link as next hop.
func (l *labLayout) feederConfig(i int, table string) string {
	bb := l.x.Backbones[i]
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr { info, warning, error, fatal, bug };\nrouter id %s;\ntimeformat protocol iso long ms;\nprotocol device { }\ninclude %q;\n", bb.Gateway4, table)
	session := func(name string, local, peer, nh6 netip.Addr) {
		fmt.Fprintf(&b, "protocol bgp %s {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n\tpassive on;\n", name, local, feederAS+i, peer, localAS)
		fmt.Fprintf(&b, "\tipv4 { import none; export all; };\n\tipv6 { import none; export all; next hop address %s; };\n}\n", nh6)
	}
	session("pnapd", bb.Gateway4, bb.Addr4.Addr(), bb.Gateway6)
	session("receiver", rcvAddr4(i, false), rcvAddr4(i, true), rcvAddr6(i, false))
	return b.String()
}

// pokeEvery is how often wakeFeeders pokes each feeder.
const pokeEvery = 10 * time.Millisecond

// wakeFeeders sends each feeder a command over its control socket every
// pokeEvery until stop is closed. BIRD 2.0 runs the route feed of a new
// session as "work" events, and an event queued while its main loop goes
// to sleep waits for the next socket or timer activity, up to 3 s: without
// this, the last few hundred routes of a feed reached either receiver 0.3
// to 3 s after the rest (the feeder's socket empty and acknowledged
// meanwhile), which measured the feeder's idle wake-ups rather than the
// receiver.
func (l *labLayout) wakeFeeders(stop <-chan struct{}) {
	t := time.NewTicker(pokeEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, f := range l.feeders {
				f.query("show status")
			}
		}
	}
}
