package slowpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/forwarder"
)

// Header sizes the slow path parses.
const (
	ethHdrLen  = 14
	vlanTagLen = 4
	ipv4MinHdr = 20
	ipv6HdrLen = 40
)

// ErrNoICMP: the packet must not be answered with an ICMP error.
var ErrNoICMP = errors.New("no ICMP error is sent for this packet")

// owedICMP applies RFC 1812 4.3.2.7 and RFC 4443 2.4(e): no error about an
// ICMP error, about a non-first fragment, or to a source that is not one
// host (multicast, broadcast, unspecified, loopback). Without this, two
// routers can answer each other's errors until the rate limit stops them.
func owedICMP(ip []byte) bool {
	switch ip[0] >> 4 {
	case 4:
		return owedICMP4(ip)
	case 6:
		return owedICMP6(ip)
	}
	return false
}

func owedICMP4(ip []byte) bool {
	ihl := int(ip[0]&0x0f) * 4
	if binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
		return false
	}
	if ip[9] == 1 && len(ip) > ihl {
		switch ip[ihl] { // ICMP type: destination unreachable, source quench, redirect, time exceeded, parameter problem
		case 3, 4, 5, 11, 12:
			return false
		}
	}
	src := netip.AddrFrom4([4]byte(ip[12:16]))
	return !(src.IsMulticast() || src.IsUnspecified() || src.IsLoopback() || src == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || ip[12] == 0)
}

// owedICMP6 walks the extension headers to the upper layer, as Linux's
// ipv6_skip_exthdr does: an ICMPv6 error behind a hop-by-hop header is
// still one. A non-first fragment's upper layer is in the first fragment,
// and a chain longer than the bytes at hand hides it: neither is answered,
// since either may be an error.
func owedICMP6(ip []byte) bool {
	if len(ip) < ipv6HdrLen {
		return false
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	if src.IsMulticast() || src.IsUnspecified() || src.IsLoopback() {
		return false
	}
	next, off := ip[6], ipv6HdrLen
	for {
		switch next {
		case 0, 43, 44, 51, 60: // hop-by-hop, routing, fragment, authentication, destination options
			if off+8 > len(ip) {
				return false
			}
			n := 8 + int(ip[off+1])*8
			switch next {
			case 44:
				if binary.BigEndian.Uint16(ip[off+2:off+4])&^7 != 0 {
					return false
				}
				n = 8
			case 51:
				n = (int(ip[off+1]) + 2) * 4 // RFC 4302: in 4-byte units
			}
			next, off = ip[off], off+n
		case 58:
			return off < len(ip) && ip[off] >= 128 // informational, not an error
		default:
			return true
		}
	}
}

// ICMPError builds the ICMP or ICMPv6 error owed to the sender of frame
// (as received, L3 at d.L3): time exceeded for ReasonTTL, destination
// unreachable (no route) for ReasonNoRoute, fragmentation needed / packet too
// big with mtu for ReasonMTU. It comes from portMAC and srcIP (the receiving
// port's own address, of the frame's family) and goes back to the frame's
// source MAC.
func ICMPError(frame []byte, d forwarder.Decision, portMAC forwarder.MAC, srcIP netip.Addr, mtu int) ([]byte, error) {
	l3 := int(d.L3)
	if l3 < ethHdrLen || len(frame) < l3+ipv4MinHdr {
		return nil, errors.New("frame too short for an ICMP error")
	}
	ipPkt := frame[l3:]
	if !owedICMP(ipPkt) {
		return nil, ErrNoICMP
	}
	var (
		et  layers.EthernetType
		l34 []gopacket.SerializableLayer
		err error
	)
	switch ipPkt[0] >> 4 {
	case 4:
		et = layers.EthernetTypeIPv4
		l34, err = icmp4Error(ipPkt, d.Reason, srcIP, mtu)
	case 6:
		et = layers.EthernetTypeIPv6
		l34, err = icmp6Error(ipPkt, d.Reason, srcIP, mtu)
	default:
		return nil, errors.New("not an IP packet")
	}
	if err != nil {
		return nil, err
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, append(replyL2(frame, l3, portMAC, et), l34...)...); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// replyL2 is the answer's Ethernet header, from portMAC back to the frame's
// source, on the VLAN the packet came in on, carrying et.
func replyL2(frame []byte, l3 int, portMAC forwarder.MAC, et layers.EthernetType) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(portMAC[:]), DstMAC: net.HardwareAddr(append([]byte(nil), frame[6:12]...)), EthernetType: et}
	if l3 != ethHdrLen+vlanTagLen {
		return []gopacket.SerializableLayer{eth}
	}
	eth.EthernetType = layers.EthernetTypeDot1Q
	dot1q := &layers.Dot1Q{VLANIdentifier: binary.BigEndian.Uint16(frame[14:16]) & 0x0fff, Priority: frame[14] >> 5, Type: et}
	return []gopacket.SerializableLayer{eth, dot1q}
}

// errorTypes is the ICMP and the ICMPv6 type and code of the error owed
// for r: time exceeded, no route to the network, packet too big (RFC 792,
// 1191; RFC 4443). ok is false when r owes none.
func errorTypes(r forwarder.Reason) (v4 layers.ICMPv4TypeCode, v6 layers.ICMPv6TypeCode, ok bool) {
	switch r {
	case forwarder.ReasonTTL:
		return layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, layers.ICMPv4CodeTTLExceeded),
			layers.CreateICMPv6TypeCode(layers.ICMPv6TypeTimeExceeded, layers.ICMPv6CodeHopLimitExceeded), true
	case forwarder.ReasonNoRoute:
		return layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet),
			layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodeNoRouteToDst), true
	case forwarder.ReasonMTU:
		return layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded),
			layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0), true
	}
	return 0, 0, false
}

// icmp4Error is the IPv4 header, ICMP header and quote of the error owed
// for the IPv4 packet ipPkt.
func icmp4Error(ipPkt []byte, r forwarder.Reason, srcIP netip.Addr, mtu int) ([]gopacket.SerializableLayer, error) {
	if !srcIP.Is4() {
		return nil, fmt.Errorf("IPv4 error needs an IPv4 source, have %v", srcIP)
	}
	ihl, total := int(ipPkt[0]&0x0f)*4, int(binary.BigEndian.Uint16(ipPkt[2:4]))
	if ihl < ipv4MinHdr || ihl > len(ipPkt) || total < ihl {
		// RFC 1812 5.2.2: a packet with an invalid header is dropped silently.
		return nil, fmt.Errorf("%w: malformed IPv4 header (length %d, total length %d)", ErrNoICMP, ihl, total)
	}
	// As much of the packet as fits in 576 bytes (RFC 1812 4.3.2.3), and
	// none of the Ethernet padding after a short one.
	quote := ipPkt[:min(len(ipPkt), total, 576-ipv4MinHdr-8)]
	tc, _, ok := errorTypes(r)
	if !ok {
		return nil, fmt.Errorf("no ICMP error for %v", r)
	}
	icmp := &layers.ICMPv4{TypeCode: tc}
	if r == forwarder.ReasonMTU {
		icmp.Seq = uint16(mtu) // next-hop MTU sits where echo's sequence does (RFC 1191)
	}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: srcIP.AsSlice(), DstIP: net.IP(append([]byte(nil), ipPkt[12:16]...))}
	return []gopacket.SerializableLayer{ip, icmp, gopacket.Payload(quote)}, nil
}

// icmp6Error is the IPv6 header, ICMPv6 header and quote of the error owed
// for the IPv6 packet ipPkt.
func icmp6Error(ipPkt []byte, r forwarder.Reason, srcIP netip.Addr, mtu int) ([]gopacket.SerializableLayer, error) {
	if len(ipPkt) < ipv6HdrLen || !srcIP.Is6() {
		return nil, fmt.Errorf("IPv6 error needs a whole header and an IPv6 source, have %v", srcIP)
	}
	// As much of the packet as fits in the minimum MTU (RFC 4443 2.4), and
	// none of the Ethernet padding after a short one.
	quote := ipPkt[:min(len(ipPkt), ipv6HdrLen+int(binary.BigEndian.Uint16(ipPkt[4:6])), 1280-ipv6HdrLen-8)]
	_, tc, ok := errorTypes(r)
	if !ok {
		return nil, fmt.Errorf("no ICMPv6 error for %v", r)
	}
	icmp := &layers.ICMPv6{TypeCode: tc}
	var rest [4]byte
	if r == forwarder.ReasonMTU {
		rest = [4]byte{byte(mtu >> 24), byte(mtu >> 16), byte(mtu >> 8), byte(mtu)} // Packet Too Big's MTU field
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: srcIP.AsSlice(), DstIP: net.IP(append([]byte(nil), ipPkt[8:24]...))}
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		return nil, err
	}
	return []gopacket.SerializableLayer{ip, icmp, gopacket.Payload(append(rest[:], quote...))}, nil
}
