//go:build linux

package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// ErrTimeout is returned (wrapped) by Capture.Next when no frame arrived in time.
var ErrTimeout = errors.New("lab: capture timed out")

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Capture is an AF_PACKET raw socket (ETH_P_ALL) bound to one Link inside its
// namespace. It sees the frames that arrive on the link as the kernel stack
// gets them (frames the link itself sends are skipped). An XDP program on the
// link runs first: frames it drops or redirects are not seen. It is not safe
// for concurrent use; it is closed at cleanup.
type Capture struct {
	link *Link
	fd   int
	buf  []byte
	once sync.Once
}

// Capture opens a capture on l. The socket is created with protocol 0 and
// then bound to l with ETH_P_ALL, so it never queues frames of other
// interfaces. Its receive buffer is 1 MiB. It fails tb on error.
func (l *Link) Capture(tb testing.TB) *Capture {
	tb.Helper()
	c := &Capture{link: l, fd: -1, buf: make([]byte, 1<<17)}
	err := l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20); err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		tb.Fatalf("lab.Capture(%s): %v", l, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Next returns a copy of the next frame received on the link, or an error
// wrapping ErrTimeout if none arrives within timeout.
func (c *Capture) Next(timeout time.Duration) ([]byte, error) {
	return c.NextMatch(timeout, nil)
}

// NextMatch returns a copy of the next received frame for which match returns
// true (match nil accepts every frame), discarding the others (ARP, neighbour
// discovery, MLD and the like), or an error wrapping ErrTimeout if none
// arrives within timeout.
func (c *Capture) NextMatch(timeout time.Duration, match func(frame []byte) bool) ([]byte, error) {
	if c.fd < 0 {
		return nil, fmt.Errorf("lab: capture on %s closed", c.link)
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("%w after %v on %s", ErrTimeout, timeout, c.link)
		}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lab: capture on %s: poll: %w", c.link, err)
		}
		if n == 0 {
			continue // the deadline check above ends the loop
		}
		for {
			size, from, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT|unix.MSG_TRUNC)
			if err == unix.EAGAIN || err == unix.EINTR {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("lab: capture on %s: recv: %w", c.link, err)
			}
			if sll, ok := from.(*unix.SockaddrLinklayer); ok && sll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if size > len(c.buf) {
				return nil, fmt.Errorf("lab: capture on %s: %d-byte frame truncated", c.link, size)
			}
			frame := c.buf[:size]
			if match == nil || match(frame) {
				return append([]byte(nil), frame...), nil
			}
		}
	}
}

// Close closes the capture socket. It is safe to call more than once.
func (c *Capture) Close() error {
	var err error
	c.once.Do(func() {
		if c.fd >= 0 {
			err = unix.Close(c.fd)
			c.fd = -1
		}
	})
	return err
}

// SendFrame writes frame, a complete Ethernet frame (destination MAC first,
// no FCS), out of l with an AF_PACKET raw socket opened inside l's namespace.
// The kernel adds nothing and does not pad; it refuses frames shorter than an
// Ethernet header or longer than the MTU plus header. Use it for malformed
// packet tests: the peer receives exactly these bytes.
func (l *Link) SendFrame(frame []byte) error {
	return l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: l.Index, Halen: 6}
		if len(frame) >= 6 {
			copy(sa.Addr[:], frame[:6])
		}
		if err := unix.Sendto(fd, frame, 0, sa); err != nil {
			return fmt.Errorf("lab: send frame on %s: %w", l, err)
		}
		return nil
	})
}

// SendUDP sends one UDP datagram from dst's family socket inside the namespace
// with the kernel stack: the socket is bound to src first when src.Addr() is
// valid (port 0 picks an ephemeral port), so the source address and port are
// src's; otherwise the kernel chooses them. A link-local address may carry a
// zone naming an interface of the namespace. The kernel resolves the next
// hop (ARP/ND) and queues the datagram meanwhile.
func (n *NS) SendUDP(src, dst netip.AddrPort, payload []byte) error {
	if !dst.IsValid() {
		return fmt.Errorf("lab.SendUDP(%s): invalid destination", n.Name)
	}
	dstAddr := dst.Addr().Unmap()
	fam := unix.AF_INET6
	if dstAddr.Is4() {
		fam = unix.AF_INET
	}
	return n.Do(func() error {
		fd, err := unix.Socket(fam, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if src.Addr().IsValid() {
			s := src.Addr().Unmap()
			if s.Is4() != dstAddr.Is4() {
				return fmt.Errorf("lab.SendUDP(%s): source %s and destination %s are of different families", n.Name, src, dst)
			}
			sa, err := sockaddr(netip.AddrPortFrom(s, src.Port()))
			if err != nil {
				return err
			}
			if err := unix.Bind(fd, sa); err != nil {
				return fmt.Errorf("lab.SendUDP(%s): bind %s: %w", n.Name, src, err)
			}
		}
		sa, err := sockaddr(netip.AddrPortFrom(dstAddr, dst.Port()))
		if err != nil {
			return err
		}
		if err := unix.Sendto(fd, payload, 0, sa); err != nil {
			return fmt.Errorf("lab.SendUDP(%s): %s -> %s: %w", n.Name, src, dst, err)
		}
		return nil
	})
}

// DeliverUDP listens on dst inside n, sends payload to it from src inside
// the namespace from (SendUDP), and returns the datagram n's socket reads
// within timeout: what n's kernel takes of traffic addressed to it. When
// nothing comes the error wraps os.ErrDeadlineExceeded.
func (n *NS) DeliverUDP(from *NS, src, dst netip.AddrPort, payload []byte, timeout time.Duration) ([]byte, error) {
	network := "udp6"
	if dst.Addr().Unmap().Is4() {
		network = "udp4"
	}
	var got []byte
	err := n.Do(func() error {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := from.SendUDP(src, dst, payload); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 2048)
		k, _, err := c.ReadFromUDP(buf)
		got = buf[:k]
		return err
	})
	return got, err
}

// sockaddr converts ap; a zone is resolved in the calling thread's namespace.
func sockaddr(ap netip.AddrPort) (unix.Sockaddr, error) {
	a := ap.Addr()
	if a.Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return nil, fmt.Errorf("zone of %s: %w", a, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, nil
}

// UDPFrame builds an Ethernet/IPv4/UDP frame (TTL 60, ports 9 -> 40000,
// checksums complete) for tests that write frames with Link.SendFrame.
func UDPFrame(tb testing.TB, src, dst net.HardwareAddr, from, to string, payload []byte) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 60, Protocol: layers.IPProtocolUDP,
		SrcIP: netip.MustParseAddr(from).AsSlice(), DstIP: netip.MustParseAddr(to).AsSlice()}
	udp := &layers.UDP{SrcPort: 9, DstPort: 40000}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, udp, gopacket.Payload(payload)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}
