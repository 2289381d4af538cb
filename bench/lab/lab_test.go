//go:build linux

package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// pair builds two namespaces joined by one veth pair with IPv4 and IPv6
// addresses on both ends.
func pair(t *testing.T) (a, b *NS, la, lb *Link) {
	t.Helper()
	RequireRoot(t)
	a = NewNS(t, "laba")
	b = NewNS(t, "labb")
	la, lb = Connect(t, a, "va", b, "vb", VethOpts{})
	la.AddAddr(t, "198.18.0.1/24", "2001:2::1/64")
	lb.AddAddr(t, "198.18.0.2/24", "2001:2::2/64")
	return a, b, la, lb
}

type udpPkt struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	payload        []byte
	csumOK         bool
}

// parseUDP decodes an Ethernet/IPv4|IPv6/UDP frame (no VLAN, no IPv6
// extension headers); ok is false for anything else.
func parseUDP(f []byte) (p udpPkt, ok bool) {
	if len(f) < 14 {
		return p, false
	}
	p.dstMAC, p.srcMAC = net.HardwareAddr(f[0:6]), net.HardwareAddr(f[6:12])
	var (
		l4     []byte
		pseudo []byte
		sa, da netip.Addr
	)
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 17 {
			return p, false
		}
		ihl := int(ip[0]&0xf) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:4]))
		if tot > len(ip) || ihl < 20 || tot < ihl+8 {
			return p, false
		}
		sa, da = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:tot]
		pseudo = append(append([]byte{}, ip[12:20]...), 0, 17, byte(len(l4)>>8), byte(len(l4)))
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 || ip[6] != 17 {
			return p, false
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) || plen < 8 {
			return p, false
		}
		sa, da = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40 : 40+plen]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(plen>>8), byte(plen), 0, 0, 0, 17)
	default:
		return p, false
	}
	if int(binary.BigEndian.Uint16(l4[4:6])) != len(l4) {
		return p, false
	}
	p.src = netip.AddrPortFrom(sa, binary.BigEndian.Uint16(l4[0:2]))
	p.dst = netip.AddrPortFrom(da, binary.BigEndian.Uint16(l4[2:4]))
	p.payload = l4[8:]
	p.csumOK = csum(append(pseudo, l4...)) == 0
	return p, true
}

// csum folds the Internet checksum of b; 0 means a correct embedded checksum.
func csum(b []byte) uint16 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestSendUDPCapture(t *testing.T) {
	a, _, la, lb := pair(t)
	cap := lb.Capture(t)
	for _, tc := range []struct {
		name     string
		src, dst netip.AddrPort
	}{
		{"ipv4", netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:9")},
		{"ipv6", netip.MustParseAddrPort("[2001:2::1]:40001"), netip.MustParseAddrPort("[2001:2::2]:9")},
	} {
		payload := []byte("pnap lab " + tc.name + " payload")
		if err := a.SendUDP(tc.src, tc.dst, payload); err != nil {
			t.Fatalf("%s: SendUDP: %v", tc.name, err)
		}
		f, err := cap.NextMatch(3*time.Second, func(f []byte) bool {
			p, ok := parseUDP(f)
			return ok && p.dst == tc.dst
		})
		if err != nil {
			t.Fatalf("%s: capture: %v", tc.name, err)
		}
		p, _ := parseUDP(f)
		if !bytes.Equal(p.srcMAC, la.MAC) {
			t.Errorf("%s: Ethernet src %s, want sender's %s", tc.name, p.srcMAC, la.MAC)
		}
		if !bytes.Equal(p.dstMAC, lb.MAC) {
			t.Errorf("%s: Ethernet dst %s, want receiver's %s", tc.name, p.dstMAC, lb.MAC)
		}
		if p.src != tc.src || p.dst != tc.dst {
			t.Errorf("%s: %s -> %s, want %s -> %s", tc.name, p.src, p.dst, tc.src, tc.dst)
		}
		if !bytes.Equal(p.payload, payload) {
			t.Errorf("%s: payload %q, want %q", tc.name, p.payload, payload)
		}
		// TX checksum offload is off, so the kernel wrote a complete checksum.
		if !p.csumOK {
			t.Errorf("%s: UDP checksum of captured frame is not complete", tc.name)
		}
	}
}

func TestQueuesAndChecksumOffload(t *testing.T) {
	_, _, la, lb := pair(t)
	for _, l := range []*Link{la, lb} {
		nl, err := l.NS.Handle().LinkByIndex(l.Index)
		if err != nil {
			t.Fatal(err)
		}
		if at := nl.Attrs(); at.NumRxQueues != 1 || at.NumTxQueues != 1 {
			t.Errorf("%s: %d RX / %d TX queues, want 1/1", l, at.NumRxQueues, at.NumTxQueues)
		}
		if at := nl.Attrs(); at.MTU != 1500 {
			t.Errorf("%s: MTU %d, want 1500", l, at.MTU)
		}
		on, err := l.TxChecksum()
		if err != nil {
			t.Fatal(err)
		}
		if on {
			t.Errorf("%s: TX checksum offload is on", l)
		}
	}
	// The getter really reads the device: turn it on and back off.
	if err := la.SetTxChecksum(true); err != nil {
		t.Fatal(err)
	}
	if on, err := la.TxChecksum(); err != nil || !on {
		t.Errorf("after SetTxChecksum(true): on=%v err=%v", on, err)
	}
	// With offload on, the kernel stack leaves a partial checksum in the
	// frame (what an AF_XDP forwarder would pass on): this is why Connect
	// turns it off.
	cap := lb.Capture(t)
	dst := netip.MustParseAddrPort("198.18.0.2:9")
	if err := la.NS.SendUDP(netip.MustParseAddrPort("198.18.0.1:40002"), dst, []byte("partial")); err != nil {
		t.Fatal(err)
	}
	f, err := cap.NextMatch(3*time.Second, func(f []byte) bool { p, ok := parseUDP(f); return ok && p.dst == dst })
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := parseUDP(f); p.csumOK {
		t.Error("UDP checksum complete with TX offload on: the offload check above proves nothing")
	}
	if err := la.SetTxChecksum(false); err != nil {
		t.Fatal(err)
	}
}

func TestVethOpts(t *testing.T) {
	RequireRoot(t)
	a := NewNS(t, "labo")
	macA := net.HardwareAddr{0x02, 0, 0x5e, 0, 0, 0xa}
	macB := net.HardwareAddr{0x02, 0, 0x5e, 0, 0, 0xb}
	// Both ends in one namespace.
	la, lb := Connect(t, a, "v0", a, "v1", VethOpts{MTU: 9000, MACA: macA, MACB: macB})
	for _, c := range []struct {
		l   *Link
		mac net.HardwareAddr
	}{{la, macA}, {lb, macB}} {
		if !bytes.Equal(c.l.MAC, c.mac) {
			t.Errorf("%s: MAC %s, want %s", c.l, c.l.MAC, c.mac)
		}
		nl, err := a.Handle().LinkByIndex(c.l.Index)
		if err != nil {
			t.Fatal(err)
		}
		if at := nl.Attrs(); at.MTU != 9000 || at.NumRxQueues != 1 || at.NumTxQueues != 1 {
			t.Errorf("%s: MTU %d queues %d/%d, want 9000 1/1", c.l, at.MTU, at.NumRxQueues, at.NumTxQueues)
		}
	}
}

func TestSendFrame(t *testing.T) {
	_, _, la, lb := pair(t)
	cap := lb.Capture(t)
	for _, tc := range []struct {
		name  string
		etype uint16
		body  []byte
	}{
		{"experimental-ethertype", 0x88b5, bytes.Repeat([]byte{0xa5, 0x5a}, 40)},
		// A truncated IPv4 header (version 4, IHL 15) with garbage: delivered as is.
		{"malformed-ipv4", 0x0800, []byte{0x4f, 0, 0, 3, 0xde, 0xad}},
	} {
		f := append(append(append([]byte{}, lb.MAC...), la.MAC...), byte(tc.etype>>8), byte(tc.etype))
		f = append(f, tc.body...)
		if err := la.SendFrame(f); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got, err := cap.NextMatch(3*time.Second, func(g []byte) bool {
			return len(g) >= 14 && binary.BigEndian.Uint16(g[12:14]) == tc.etype && bytes.Equal(g[6:12], la.MAC)
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !bytes.Equal(got, f) {
			t.Errorf("%s: got\n% x\nwant\n% x", tc.name, got, f)
		}
	}
	// Nothing else of ours arrives: Next times out with ErrTimeout.
	if _, err := cap.NextMatch(100*time.Millisecond, func(g []byte) bool {
		return bytes.Equal(g[6:12], la.MAC) && binary.BigEndian.Uint16(g[12:14]) == 0x88b5
	}); !errors.Is(err, ErrTimeout) {
		t.Errorf("extra frame or wrong error: %v", err)
	}
}

func TestRoutesNeighSysctl(t *testing.T) {
	a, b, la, lb := pair(t)
	host, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	b.Sysctl(t, "net/ipv4/ip_forward", "1")
	b.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
	if v, err := b.ReadSysctl("net/ipv4/ip_forward"); err != nil || v != "1" {
		t.Errorf("ip_forward in %s = %q, %v; want 1", b.Name, v, err)
	}
	if v, err := a.ReadSysctl("net/ipv4/ip_forward"); err != nil || v != "0" {
		t.Errorf("ip_forward in %s = %q, %v; want 0", a.Name, v, err)
	}
	if now, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); !bytes.Equal(now, host) {
		t.Errorf("host ip_forward changed: %q -> %q", host, now)
	}
	if _, err := sysctlPath("kernel/hostname"); err == nil {
		t.Error("sysctl outside net/ accepted")
	}
	if _, err := sysctlPath("net/../kernel/x"); err == nil {
		t.Error("sysctl with .. accepted")
	}

	a.AddRoute(t, "203.0.113.0/24", "198.18.0.2")
	a.AddRoute(t, "default", "2001:2::2")
	// A permanent neighbour: no ARP needed, the frame goes out at once with it.
	fake := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	a.AddNeigh(t, la, "198.18.0.2", fake)
	cap := lb.Capture(t)
	dst := netip.MustParseAddrPort("203.0.113.7:9")
	if err := a.SendUDP(netip.AddrPort{}, dst, []byte("routed")); err != nil {
		t.Fatal(err)
	}
	f, err := cap.NextMatch(3*time.Second, func(f []byte) bool { p, ok := parseUDP(f); return ok && p.dst == dst })
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := parseUDP(f); !bytes.Equal(p.dstMAC, fake) || p.src.Addr() != netip.MustParseAddr("198.18.0.1") {
		t.Errorf("routed frame to %s from %s, want to %s from 198.18.0.1", p.dstMAC, p.src, fake)
	}
	routes, err := a.Handle().RouteGet(net.ParseIP("2001:db8::1"))
	if err != nil || len(routes) == 0 || !routes[0].Gw.Equal(net.ParseIP("2001:2::2")) {
		t.Errorf("IPv6 default route: %v, %v", routes, err)
	}
}

func TestDoEntersNamespace(t *testing.T) {
	RequireRoot(t)
	n := NewNS(t, "labd")
	self, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	var inside string
	if err := n.Do(func() error {
		var err error
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == self {
		t.Errorf("Do ran in the caller's namespace %s", self)
	}
	if want := "net:[" + inodeOf(t, n.Path()) + "]"; inside != want {
		t.Errorf("Do ran in %s, want %s", inside, want)
	}
	wantErr := errors.New("boom")
	if err := n.Do(func() error { return wantErr }); err != wantErr {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := n.Do(func() error { runtime.Goexit(); return nil }); err == nil || !strings.Contains(err.Error(), "Goexit") {
		t.Errorf("Goexit inside Do: %v", err)
	}
}

func inodeOf(t *testing.T, p string) string {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatUint(fi.Sys().(*syscall.Stat_t).Ino, 10)
}

func TestCleanup(t *testing.T) {
	RequireRoot(t)
	var names []string
	var gone *NS
	t.Run("topology", func(t *testing.T) {
		a := NewNS(t, "labc")
		b := NewNS(t, "labc")
		la, _ := Connect(t, a, "ca", b, "cb", VethOpts{})
		la.AddAddr(t, "198.18.1.1/24")
		la.Capture(t)
		names = []string{a.Name, b.Name}
		gone = a
		for _, name := range names {
			if _, err := os.Stat("/run/netns/" + name); err != nil {
				t.Fatalf("namespace %s not mounted: %v", name, err)
			}
		}
	})
	if len(names) != 2 {
		t.Fatal("subtest did not run")
	}
	for _, name := range names {
		if _, err := os.Stat("/run/netns/" + name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/run/netns/%s still there after cleanup: %v", name, err)
		}
		if h, err := netns.GetFromName(name); err == nil {
			h.Close()
			t.Errorf("netns.GetFromName(%s) still works after cleanup", name)
		}
	}
	if err := gone.Do(func() error { return nil }); err == nil {
		t.Error("Do on a removed namespace succeeded")
	}
}

func TestSysfsView(t *testing.T) {
	_, b, la, lb := pair(t)
	// Plain Do sees the host's sysfs, DoSysfs the namespace's.
	if err := b.Do(func() error { _, err := os.Stat("/sys/class/net/vb"); return err }); err == nil {
		t.Log("note: /sys/class/net/vb visible without DoSysfs")
	}
	for _, l := range []*Link{la, lb} {
		var rx, tx []string
		err := l.NS.DoSysfs(func() error {
			ents, err := os.ReadDir("/sys/class/net/" + l.Name + "/queues")
			for _, e := range ents {
				switch {
				case strings.HasPrefix(e.Name(), "rx-"):
					rx = append(rx, e.Name())
				case strings.HasPrefix(e.Name(), "tx-"):
					tx = append(tx, e.Name())
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(rx) != 1 || len(tx) != 1 {
			t.Errorf("%s: sysfs queues rx %v tx %v, want one each", l, rx, tx)
		}
	}
	if err := lb.SetThreadedNAPI(true); err == nil {
		t.Log("note: threaded NAPI accepted on a veth without NAPI")
	}
	if err := lb.SetGRO(true); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetThreadedNAPI(true); err != nil {
		t.Fatal(err)
	}
	var v []byte
	if err := b.DoSysfs(func() error {
		var err error
		v, err = os.ReadFile("/sys/class/net/vb/threaded")
		return err
	}); err != nil || strings.TrimSpace(string(v)) != "1" {
		t.Errorf("threaded = %q, %v; want 1", v, err)
	}
	// The host's /sys is untouched: no sysfs mount leaked into our mount namespace.
	if _, err := os.Stat("/sys/class/net/vb"); err == nil {
		t.Error("vb visible in the host's /sys")
	}
}
