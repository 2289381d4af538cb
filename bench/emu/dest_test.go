//go:build linux

package emu

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

func TestNewDestDelaysRefuses(t *testing.T) {
	for _, c := range []struct {
		prefix, want string
		d            time.Duration
	}{
		{"198.51.0.0/16", "only IPv4 /24 and IPv6 /48", 0},
		{"198.51.100.0/25", "only IPv4 /24 and IPv6 /48", 0},
		{"198.51.100.1/32", "only IPv4 /24 and IPv6 /48", 0},
		{"2001:db8::/32", "only IPv4 /24 and IPv6 /48", 0},
		{"2001:db8:1:2::/64", "only IPv4 /24 and IPv6 /48", 0},
		{"198.51.100.7/24", "did you mean 198.51.100.0/24?", 0},
		{"2001:db8:1:2::/48", "did you mean 2001:db8:1::/48?", 0},
		{"198.51.100.0/24", "negative", -time.Millisecond},
	} {
		p := netip.MustParsePrefix(c.prefix)
		_, err := NewDestDelays(map[netip.Prefix]time.Duration{p: c.d, netip.MustParsePrefix("203.0.113.0/24"): 0})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.prefix) {
			t.Errorf("NewDestDelays(%s: %v): %v, want an error naming it and saying %q", c.prefix, c.d, err, c.want)
		}
	}
	if _, err := NewDestDelays(map[netip.Prefix]time.Duration{{}: 0}); err == nil {
		t.Error("NewDestDelays took the zero prefix")
	}
}

func TestDestDelaysLookup(t *testing.T) {
	tab, err := NewDestDelays(map[netip.Prefix]time.Duration{
		netip.MustParsePrefix("198.51.100.0/24"): 10 * time.Millisecond,
		netip.MustParsePrefix("2001:db8:1::/48"): 20 * time.Millisecond,
		// Same leading bytes as the IPv4 /24 above: the families must not mix.
		netip.MustParsePrefix("c633:6400::/48"): 30 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 3 {
		t.Errorf("Len %d, want 3", tab.Len())
	}
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		dst  string
		want time.Duration
	}{
		{"198.51.100.7", 10 * time.Millisecond},
		{"198.51.100.255", 10 * time.Millisecond},
		{"198.51.101.7", 0},
		{"2001:db8:1:ffff::9", 20 * time.Millisecond},
		{"2001:db8:2::9", 0},
		{"c633:6400:0:1::", 30 * time.Millisecond},
		{"::ffff:198.51.100.7", 0}, // an IPv6 destination, in ::/48
	} {
		dst := netip.MustParseAddr(c.dst)
		if got := tab.Delay(dst); got != c.want {
			t.Errorf("Delay(%s) = %v, want %v", dst, got, c.want)
		}
		f := ipFrame(t, mac, dst)
		key, extra := tab.lookup(f)
		if time.Duration(extra) != c.want || key != addrKey(dst) {
			t.Errorf("frame to %s: key %#x, delay %v; want %#x, %v", dst, key, time.Duration(extra), addrKey(dst), c.want)
		}
		if n := testing.AllocsPerRun(100, func() { tab.lookup(f) }); n != 0 {
			t.Errorf("lookup of a frame to %s: %v allocations, want none", dst, n)
		}
	}
}

// TestDestDelaysScale looks up frames in a table of the scale scenario's
// size: 10,000 prefixes, without allocating.
func TestDestDelaysScale(t *testing.T) {
	m := make(map[netip.Prefix]time.Duration)
	for i := range 10_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0})
		m[netip.PrefixFrom(a, 24)] = time.Duration(i) * time.Microsecond
	}
	tab, err := NewDestDelays(m)
	if err != nil {
		t.Fatal(err)
	}
	f := ipFrame(t, net.HardwareAddr{2, 0, 0, 0, 0, 1}, netip.MustParseAddr("10.39.15.200"))
	if _, d := tab.lookup(f); time.Duration(d) != (39<<8+15)*time.Microsecond {
		t.Errorf("frame to 10.39.15.200: %v", time.Duration(d))
	}
	if n := testing.AllocsPerRun(1000, func() { tab.lookup(f) }); n != 0 {
		t.Errorf("lookup: %v allocations, want none", n)
	}
}

// TestDestKey checks which frames count as IP: the others share one key and
// get no extra delay.
func TestDestKey(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	v4 := ipFrame(t, mac, netip.MustParseAddr("198.51.100.7"))
	v6 := ipFrame(t, mac, netip.MustParseAddr("2001:db8:1::9"))
	arp := append(append(append([]byte{}, mac...), mac...), 0x08, 0x06)
	arp = append(arp, make([]byte, 28)...)
	vlan := append(append(append([]byte{}, mac...), mac...), 0x81, 0x00, 0, 1, 0x08, 0x00)
	vlan = append(vlan, v4[ethHdrLen:]...)
	badVersion := append([]byte{}, v4...)
	badVersion[ethHdrLen] = 0x65
	for _, c := range []struct {
		name string
		f    []byte
		want uint64
	}{
		{"IPv4", v4, v4Key | 198<<16 | 51<<8 | 100},
		{"IPv6", v6, v6Key | 0x2001_0db8_0001},
		{"IPv4 cut before the address", v4[:v4DstOff+2], otherKey},
		{"IPv6 cut in its header", v6[:ethHdrLen+39], otherKey},
		{"IPv4 type, version 6", badVersion, otherKey},
		{"ARP", arp, otherKey},
		{"VLAN-tagged IPv4", vlan, otherKey},
		{"runt", mac, otherKey},
		{"empty", nil, otherKey},
	} {
		if got := destKey(c.f); got != c.want {
			t.Errorf("%s: key %#x, want %#x", c.name, got, c.want)
		}
	}
}

// ipFrame returns an Ethernet/IP/UDP frame to dst.
func ipFrame(t *testing.T, mac net.HardwareAddr, dst netip.Addr) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: mac, DstMAC: sinkMAC}
	udp := &layers.UDP{SrcPort: 9, DstPort: 40000}
	var ip gopacket.SerializableLayer
	if dst.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 60, Protocol: layers.IPProtocolUDP,
			SrcIP: netip.MustParseAddr("198.18.0.1").AsSlice(), DstIP: dst.AsSlice()}
		udp.SetNetworkLayerForChecksum(v4)
		ip = v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: layers.IPProtocolUDP,
			SrcIP: netip.MustParseAddr("2001:2::1").AsSlice(), DstIP: dst.AsSlice()}
		udp.SetNetworkLayerForChecksum(v6)
		ip = v6
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(make([]byte, 18))); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
