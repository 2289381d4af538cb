// Package frametest builds the Ethernet frames that the forwarder's tests
// and its subpackages' tests feed to the fast path, the steering program
// and the slow path. It is for tests only and must never be imported by
// code that runs in pnapd.
package frametest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Opts tweak a generated frame.
type Opts struct {
	Src, Dst [6]byte // Ethernet addresses
	TTL      uint8   // TTL or hop limit; 0 means 64
	VLAN     bool    // tag it with VLAN 42
	Payload  int     // UDP payload bytes (zeros)
	DF       bool    // IPv4 don't-fragment
}

// UDP is a UDP datagram from src to dst (IPv4 or IPv6 addresses) to port
// 53, with valid checksums.
func UDP(tb testing.TB, src, dst string, o Opts) []byte {
	tb.Helper()
	if o.TTL == 0 {
		o.TTL = 64
	}
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(o.Src[:]), DstMAC: net.HardwareAddr(o.Dst[:]), EthernetType: layers.EthernetTypeIPv4}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
	var ip gopacket.NetworkLayer
	if s.Is4() {
		ip4 := &layers.IPv4{Version: 4, IHL: 5, TTL: o.TTL, Protocol: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
		if o.DF {
			ip4.Flags = layers.IPv4DontFragment
		}
		ip = ip4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: o.TTL, NextHeader: layers.IPProtocolUDP, SrcIP: s.AsSlice(), DstIP: d.AsSlice()}
	}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	ls := []gopacket.SerializableLayer{eth}
	if o.VLAN {
		et := eth.EthernetType
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{VLANIdentifier: 42, Type: et})
	}
	ls = append(ls, ip.(gopacket.SerializableLayer), udp, gopacket.Payload(make([]byte, o.Payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}
