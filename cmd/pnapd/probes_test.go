package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/daemon"

	"github.com/pnap-project/pnap/bench/emu"
	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/bench/topo"
	"golang.org/x/sys/unix"
)

// The emulated backbones of the probes test: one-way delay and loss on the
// way out (DUT to backbone), nothing on the way back, so the RTT pnap should
// measure is the delay and the loss is the loss.
var emulated = []struct {
	delay time.Duration
	loss  float64
}{{10 * time.Millisecond, 0}, {30 * time.Millisecond, 0.02}, {60 * time.Millisecond, 0.10}}

const nShared = 24 // prefixes every backbone holds, probed actively

// sharedDst is host k's address in shared prefix k; exclusiveDst is the one
// host of backbone i's own prefix (for passive measurement: only i carries it).
func sharedDst(k int, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("2001:2:0:f0%02x::1", k))
	}
	return netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", k))
}

func exclusiveDst(i int, v6 bool) netip.Addr {
	if v6 {
		return netip.MustParseAddr(fmt.Sprintf("2001:2:0:f1%02x::1", i))
	}
	return netip.MustParseAddr(fmt.Sprintf("198.19.%d.1", 100+i))
}

// TestProbesMeasureEmulatedBackbones runs pnapd in front of three emulated
// backbones (10 ms, 30 ms with 2 % loss, 60 ms with 10 % loss) and checks
// what it measures, IPv4 and IPv6: active probes give every backbone's RTT
// within ±2 ms and loss within ±2 points; TCP flows through pnap (passive:
// handshakes and timestamps) give the RTT of the backbone they cross within
// ±2 ms; and no probe reply reaches the customer, even with the probe
// source inside the customer's subnet.
func TestProbesMeasureEmulatedBackbones(t *testing.T) {
	lab.RequireRoot(t)
	if raceDetector {
		// A race-instrumented pnapd loses probes of its own (20 % against
		// the emulator's 9 % on the 60 ms backbone, in CI).
		t.Skip("measures loss and RTT to ±2: make test's plain run of cmd/pnapd does, not the -race one")
	}
	x := topo.Build(t, topo.Options{Backbones: 3, Emulated: true})
	dir := t.TempDir()
	sock := filepath.Join(dir, "api.sock")
	probe4, probe6 := "198.18.0.200", "2001:2:0:1::200"

	var conf strings.Builder
	fmt.Fprintf(&conf, "[forwarder]\nqueues = 1\nxdp_mode = \"native\"\n\n[[customer]]\nname = \"lab\"\ninterface = %q\naddress_v4 = %q\naddress_v6 = %q\n",
		x.Customer.Name, x.CustomerAddr4, x.CustomerAddr6)
	for i, bb := range x.Backbones {
		var static []string
		for k := range nShared {
			static = append(static, fmt.Sprintf("%q", netip.PrefixFrom(sharedDst(k, false), 24).Masked()), fmt.Sprintf("%q", netip.PrefixFrom(sharedDst(k, true), 64).Masked()))
		}
		static = append(static, fmt.Sprintf("%q", netip.PrefixFrom(exclusiveDst(i, false), 24).Masked()), fmt.Sprintf("%q", netip.PrefixFrom(exclusiveDst(i, true), 64).Masked()))
		fmt.Fprintf(&conf, "\n[[backbone]]\nname = %q\ninterface = %q\ngateway_v4 = %q\ngateway_v6 = %q\npreference = %d\nstatic = [%s]\n",
			bb.Name, bb.Port.Name, bb.Gateway4, bb.Gateway6, 100+i, strings.Join(static, ", "))
	}
	fmt.Fprintf(&conf, "\n[probes]\ntop_prefixes = 100\ninterval = \"500ms\"\ntimeout = \"400ms\"\nrate_per_backbone = 1000\nsource_v4 = %q\nsource_v6 = %q\ntcp_ports = [443]\n", probe4, probe6)
	fmt.Fprintf(&conf, "\n[optimizer]\nenabled = false\n\n[api]\nlisten = \"unix:%s\"\n\n[state]\ndir = \"\"\n", sock)
	path := filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// The "Internet": every backbone namespace answers for the shared
	// hosts (ICMP echo, RST to the TCP probes) and runs an echo server on
	// its own host; replies go back through pnap.
	for i, bb := range x.Backbones {
		lo := bb.NS.Loopback(t)
		for k := range nShared {
			lo.AddAddr(t, netip.PrefixFrom(sharedDst(k, false), 32).String())
			lo.AddAddr(t, netip.PrefixFrom(sharedDst(k, true), 128).String())
		}
		lo.AddAddr(t, netip.PrefixFrom(exclusiveDst(i, false), 32).String())
		lo.AddAddr(t, netip.PrefixFrom(exclusiveDst(i, true), 128).String())
		bb.NS.ServeEcho(t, 5001)
		if err := bb.Emu.Set(emu.Params{Delay: emulated[i].delay, Loss: emulated[i].loss}, emu.Params{}); err != nil {
			t.Fatal(err)
		}
	}
	custCap := x.SourceLink.Capture(t)
	cmd, logs, _ := startPnapdWith(t, path, x.DUT.Do)
	_ = cmd
	c, err := newAPIClient("", "unix:"+sock, "")
	if err != nil {
		t.Fatal(err)
	}

	// Traffic to every shared prefix, so that they rank for probing; TCP
	// flows to each backbone's own host, measured passively.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		udpSpray(t, x.Source, stop)
	}()
	for i := range x.Backbones {
		for _, v6 := range []bool{false, true} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				echoClient(t, x.Source, netip.AddrPortFrom(exclusiveDst(i, v6), 5001), stop)
			}()
		}
	}
	time.Sleep(12 * time.Second)
	close(stop)
	wg.Wait()

	var bbs []daemon.BackboneStatus
	if _, err := c.do("GET", "/v1/backbones", nil, &bbs); err != nil {
		t.Fatal(err)
	}
	var ms []daemon.Measurement
	if _, err := c.do("GET", "/v1/measurements?limit=1000", nil, &ms); err != nil {
		t.Fatal(err)
	}
	within := func(got float64, want time.Duration) bool {
		return got >= float64(want)/1e6-2 && got <= float64(want)/1e6+2
	}
	for i, bb := range x.Backbones {
		e := emulated[i]
		b := bbs[i]
		t.Logf("%s (emulated %v, %.0f %% loss): active probes %d sent, %d lost (%.2f %%), median RTT %v ms",
			bb.Name, e.delay, 100*e.loss, b.ProbesSent, b.ProbesLost, 100*b.ProbeLoss, deref(b.MedianRTTms))
		if b.ProbesSent < 500 {
			t.Errorf("%s: only %d probes sent", bb.Name, b.ProbesSent)
		}
		// The emulator draws its loss per frame: compare with what it
		// actually dropped, and say what else was lost on the way (the
		// kernel's rings overflow when this VM stalls a CPU).
		st := bb.Emu.Stats().AB
		applied := float64(st.Lost) / float64(max(st.Received, 1))
		t.Logf("%s: the emulator dropped %.2f %% of %d frames (queue full %d, overrun %d)", bb.Name, 100*applied, st.Received, st.QueueFull, st.Overrun)
		if d := 100 * (b.ProbeLoss - applied); d < -2 || d > 2 {
			t.Errorf("%s: probe loss %.2f %%, emulated %.0f %% (applied %.2f %%)", bb.Name, 100*b.ProbeLoss, 100*e.loss, 100*applied)
		}
		for _, v6 := range []bool{false, true} {
			fam := map[bool]string{false: "IPv4", true: "IPv6"}[v6]
			var active []float64
			for k := range nShared {
				if m, ok := find(ms, sharedDst(k, v6)); ok {
					if bm, ok := m.Backbones[bb.Name]; ok && bm.Active > 0 {
						active = append(active, bm.P50Ms)
					}
				}
			}
			if len(active) < nShared/2 {
				t.Errorf("%s %s: active RTT for only %d of %d shared prefixes", bb.Name, fam, len(active), nShared)
				continue
			}
			sort.Float64s(active)
			med := active[len(active)/2]
			if !within(med, e.delay) {
				t.Errorf("%s %s: active median RTT %.2f ms, emulated %v", bb.Name, fam, med, e.delay)
			}
			m, ok := find(ms, exclusiveDst(i, v6))
			bm, ok2 := m.Backbones[bb.Name]
			if !ok || !ok2 || bm.Passive == 0 {
				t.Errorf("%s %s: no passive samples for its own prefix: %+v", bb.Name, fam, m)
				continue
			}
			t.Logf("%s %s: active median of %d prefixes' p50 %.2f ms; passive p50 %.2f ms from %d samples", bb.Name, fam, len(active), med, bm.P50Ms, bm.Passive)
			if !within(bm.P50Ms, e.delay) {
				t.Errorf("%s %s: passive p50 %.2f ms, emulated %v", bb.Name, fam, bm.P50Ms, e.delay)
			}
		}
	}
	// No reply to a probe reached the customer side (nor anything else
	// addressed to the probe source).
	for {
		f, err := custCap.NextMatch(100*time.Millisecond, func(f []byte) bool {
			return bytes.Contains(f, netip.MustParseAddr(probe4).AsSlice()) || bytes.Contains(f, netip.MustParseAddr(probe6).AsSlice())
		})
		if err != nil || f == nil {
			break
		}
		t.Fatalf("a frame about the probe source reached the customer: %x", f[:min(len(f), 64)])
	}
	if t.Failed() {
		t.Logf("pnapd log:\n%s", logs)
	}
}

func deref(p *float64) any {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *p)
}

func find(ms []daemon.Measurement, a netip.Addr) (daemon.Measurement, bool) {
	for _, m := range ms {
		if p, err := netip.ParsePrefix(m.Prefix); err == nil && p.Contains(a) {
			return m, true
		}
	}
	return daemon.Measurement{}, false
}

// echoClient keeps a TCP connection to ap from ns busy with small
// exchanges (one every 20 ms) until stop, reconnecting when one breaks.
func echoClient(t *testing.T, ns *lab.NS, ap netip.AddrPort, stop <-chan struct{}) {
	buf := make([]byte, 100)
	for {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", ap.String(), 2*time.Second)
			return err
		})
		if err != nil {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				continue
			}
		}
		for {
			select {
			case <-stop:
				c.Close()
				return
			case <-time.After(20 * time.Millisecond):
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(buf); err != nil {
				break
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				break
			}
		}
		c.Close()
	}
}

// udpSpray sends datagrams to every shared host, both families, ~2 kpps,
// until stop: traffic that makes the shared prefixes the busiest.
func udpSpray(t *testing.T, ns *lab.NS, stop <-chan struct{}) {
	var fd4, fd6 int
	err := ns.Do(func() error {
		var err error
		if fd4, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		fd6, err = unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Error(err)
		return
	}
	defer unix.Close(fd4)
	defer unix.Close(fd6)
	payload := make([]byte, 64)
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		k := n % nShared
		unix.Sendto(fd4, payload, unix.MSG_DONTWAIT, &unix.SockaddrInet4{Port: 9, Addr: sharedDst(k, false).As4()})
		unix.Sendto(fd6, payload, unix.MSG_DONTWAIT, &unix.SockaddrInet6{Port: 9, Addr: sharedDst(k, true).As16()})
		if n%8 == 0 {
			time.Sleep(4 * time.Millisecond)
		}
	}
}
