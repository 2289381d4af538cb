package forwarder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The slow path answers what the fast path hands it (ActSlow) with the
// ICMP error RFC 1812 and RFC 4443 call for. It runs off the workers, so it
// may allocate and use gopacket.

// ErrNoICMP: the packet must not be answered with an ICMP error.
var ErrNoICMP = errors.New("no ICMP error is sent for this packet")

// owedICMP applies RFC 1812 4.3.2.7 and RFC 4443 2.4(e): no error about an
// ICMP error, about a non-first fragment, or to a source that is not one
// host (multicast, broadcast, unspecified, loopback). Without this, two
// routers can answer each other's errors until the rate limit stops them.
func owedICMP(ip []byte) bool {
	switch ip[0] >> 4 {
	case 4:
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
	case 6:
		if len(ip) < ipv6HdrLen {
			return false
		}
		if ip[6] == 58 && len(ip) > ipv6HdrLen && ip[ipv6HdrLen] < 128 { // an ICMPv6 error
			return false
		}
		src := netip.AddrFrom16([16]byte(ip[8:24]))
		return !(src.IsMulticast() || src.IsUnspecified() || src.IsLoopback())
	}
	return false
}

// ICMPError builds the ICMP or ICMPv6 error owed to the sender of frame
// (as received, L3 at d.L3): time exceeded for ReasonTTL, destination
// unreachable (no route) for ReasonNoRoute, fragmentation needed / packet too
// big with mtu for ReasonMTU. It comes from portMAC and srcIP (the receiving
// port's own address, of the frame's family) and goes back to the frame's
// source MAC.
func ICMPError(frame []byte, d Decision, portMAC MAC, srcIP netip.Addr, mtu int) ([]byte, error) {
	l3 := int(d.L3)
	if l3 < ethHdrLen || len(frame) < l3+ipv4MinHdr {
		return nil, errors.New("frame too short for an ICMP error")
	}
	if !owedICMP(frame[l3:]) {
		return nil, ErrNoICMP
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(portMAC[:]), DstMAC: net.HardwareAddr(append([]byte(nil), frame[6:12]...))}
	// The answer goes back on the VLAN the packet came in on.
	var l2 []gopacket.SerializableLayer
	var dot1q *layers.Dot1Q
	if l3 == ethHdrLen+vlanTagLen {
		dot1q = &layers.Dot1Q{VLANIdentifier: binary.BigEndian.Uint16(frame[14:16]) & 0x0fff, Priority: frame[14] >> 5}
		l2 = []gopacket.SerializableLayer{eth, dot1q}
	} else {
		l2 = []gopacket.SerializableLayer{eth}
	}
	tag := func(t layers.EthernetType) {
		if dot1q != nil {
			eth.EthernetType, dot1q.Type = layers.EthernetTypeDot1Q, t
		} else {
			eth.EthernetType = t
		}
	}
	ipPkt := frame[l3:]
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	buf := gopacket.NewSerializeBuffer()
	switch ipPkt[0] >> 4 {
	case 4:
		if !srcIP.Is4() {
			return nil, fmt.Errorf("IPv4 error needs an IPv4 source, have %v", srcIP)
		}
		ihl := int(ipPkt[0]&0x0f) * 4
		// The original header and 8 bytes of data (RFC 792); RFC 1812 allows
		// more, up to 576 bytes in all.
		quote := ipPkt[:min(len(ipPkt), ihl+8)]
		icmp := &layers.ICMPv4{}
		switch d.Reason {
		case ReasonTTL:
			icmp.TypeCode = layers.CreateICMPv4TypeCode(layers.ICMPv4TypeTimeExceeded, layers.ICMPv4CodeTTLExceeded)
		case ReasonNoRoute:
			icmp.TypeCode = layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeNet)
		case ReasonMTU:
			icmp.TypeCode = layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded)
			icmp.Seq = uint16(mtu) // next-hop MTU sits where echo's sequence does (RFC 1191)
		default:
			return nil, fmt.Errorf("no ICMP error for %v", d.Reason)
		}
		tag(layers.EthernetTypeIPv4)
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolICMPv4,
			SrcIP: srcIP.AsSlice(), DstIP: net.IP(append([]byte(nil), ipPkt[12:16]...))}
		if err := gopacket.SerializeLayers(buf, opts, append(l2, ip, icmp, gopacket.Payload(quote))...); err != nil {
			return nil, err
		}
	case 6:
		if len(ipPkt) < ipv6HdrLen || !srcIP.Is6() {
			return nil, fmt.Errorf("IPv6 error needs a whole header and an IPv6 source, have %v", srcIP)
		}
		// As much of the packet as fits in the minimum MTU (RFC 4443 2.4).
		quote := ipPkt[:min(len(ipPkt), 1280-ipv6HdrLen-8)]
		icmp := &layers.ICMPv6{}
		var rest [4]byte
		switch d.Reason {
		case ReasonTTL:
			icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeTimeExceeded, layers.ICMPv6CodeHopLimitExceeded)
		case ReasonNoRoute:
			icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodeNoRouteToDst)
		case ReasonMTU:
			icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)
			rest = [4]byte{byte(mtu >> 24), byte(mtu >> 16), byte(mtu >> 8), byte(mtu)}
		default:
			return nil, fmt.Errorf("no ICMPv6 error for %v", d.Reason)
		}
		tag(layers.EthernetTypeIPv6)
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6,
			SrcIP: srcIP.AsSlice(), DstIP: net.IP(append([]byte(nil), ipPkt[8:24]...))}
		if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		if err := gopacket.SerializeLayers(buf, opts, append(l2, ip, icmp, gopacket.Payload(append(rest[:], quote...)))...); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("not an IP packet")
	}
	return buf.Bytes(), nil
}
