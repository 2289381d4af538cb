package steering

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
)

func loadSteering(t *testing.T) *Program {
	t.Helper()
	s, err := New(Options{NoSocketAction: xdpDrop})
	if err != nil {
		if os.Geteuid() != 0 && os.Getenv("CI") == "" {
			t.Skipf("loading an XDP program needs root or CAP_BPF: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func runXDP(t *testing.T, s *Program, frame []byte) uint32 {
	t.Helper()
	ret, err := s.XDP.Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		if errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("BPF_PROG_RUN not supported: %v", err)
		}
		t.Fatal(err)
	}
	return ret
}

var (
	macCust = [6]byte{0x02, 0, 0, 0, 0, 0x10}
	macPort = [6]byte{0x02, 0, 0, 0, 0xaa, 0}
)

func udpFrame(t *testing.T, src, dst string, o frametest.Opts) []byte {
	t.Helper()
	o.Src, o.Dst = macCust, macPort
	return frametest.UDP(t, src, dst, o)
}

func ndpFrame(t *testing.T) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: macCust[:], DstMAC: macPort[:], EthernetType: layers.EthernetTypeIPv6}
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6,
		SrcIP: netip.MustParseAddr("2001:2:0:1::7").AsSlice(), DstIP: netip.MustParseAddr("2001:2:0:1::1").AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, icmp, &layers.ICMPv6NeighborSolicitation{TargetAddress: netip.MustParseAddr("2001:2:0:1::1").AsSlice()}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSteeringVerdicts runs the XDP program on frames with BPF_PROG_RUN.
// Transit traffic would be redirected to the queue's socket; with no socket
// it gets the configured fallback (XDP_DROP here, to tell it apart from the
// kernel path, which is XDP_PASS).
func TestSteeringVerdicts(t *testing.T) {
	s := loadSteering(t)
	if err := s.AddLocal(netip.MustParseAddr("198.18.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddLocal(netip.MustParseAddr("2001:2:0:1::1")); err != nil {
		t.Fatal(err)
	}
	arp := udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{})
	arp[12], arp[13] = 0x08, 0x06
	// 802.1ad outer tag: the program reads one 802.1Q tag only.
	qinq := udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{VLAN: true})
	qinq[12], qinq[13] = 0x88, 0xa8
	cases := []struct {
		name  string
		frame []byte
		want  uint32
		why   PassReason // for xdpPass
	}{
		{"IPv4 transit", udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{}), xdpDrop, 0},
		{"IPv4 transit, VLAN", udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{VLAN: true}), xdpDrop, 0},
		{"IPv6 transit", udpFrame(t, "2001:2:0:1::7", "2001:db8::1", frametest.Opts{}), xdpDrop, 0},
		{"IPv4 to the box", udpFrame(t, "198.18.0.7", "198.18.0.1", frametest.Opts{}), xdpPass, PassLocal},
		{"IPv6 to the box", udpFrame(t, "2001:2:0:1::7", "2001:2:0:1::1", frametest.Opts{}), xdpPass, PassLocal},
		{"ARP", arp, xdpPass, PassNotIP},
		{"NDP", ndpFrame(t), xdpPass, PassNDP},
		{"IPv4 multicast", udpFrame(t, "198.18.0.7", "224.0.0.5", frametest.Opts{}), xdpPass, PassMulticast},
		{"IPv6 multicast", udpFrame(t, "2001:2:0:1::7", "ff02::1", frametest.Opts{}), xdpPass, PassMulticast},
		{"bare Ethernet header", arp[:14], xdpPass, PassNotIP},
		{"QinQ", qinq, xdpPass, PassNotIP},
		{"truncated IPv4", udpFrame(t, "198.18.0.7", "203.0.113.9", frametest.Opts{})[:20], xdpPass, PassShort},
	}
	for _, tc := range cases {
		before, err := s.PassCounts()
		if err != nil {
			t.Fatal(err)
		}
		if got := runXDP(t, s, tc.frame); got != tc.want {
			t.Errorf("%s: XDP action %d, want %d", tc.name, got, tc.want)
		}
		after, err := s.PassCounts()
		if err != nil {
			t.Fatal(err)
		}
		// Every frame given to the kernel is counted once, under its reason.
		for r := range after {
			want := uint64(0)
			if tc.want == xdpPass && PassReason(r) == tc.why {
				want = 1
			}
			if after[r]-before[r] != want {
				t.Errorf("%s: %v counted %d times, want %d", tc.name, PassReason(r), after[r]-before[r], want)
			}
		}
	}
}
