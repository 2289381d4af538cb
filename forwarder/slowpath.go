package forwarder

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// SlowPath answers the frames the loops hand over (ActSlow) with ICMP
// errors, rate-limited as RFC 1812 4.3.2.8 asks, and sends them out of the
// receiving port with an AF_PACKET socket: the kernel's transmit path, since
// the port's AF_XDP TX ring belongs to its loop.
type SlowPath struct {
	Ports []SlowPort
	// Limit is the ICMP errors sent per second in all; default 100, burst
	// of the same.
	Limit   rate.Limit
	limiter *rate.Limiter
	// Resolve, when set, is asked to resolve a connected host that a packet
	// found no MAC for (ReasonNoNeighbour): port is the egress port.
	Resolve func(port uint8, host netip.Addr)

	// Suppressed counts packets owed no ICMP error (errors about errors,
	// non-first fragments, sources that are not one host).
	Sent, Limited, Suppressed, Failed atomic.Uint64
}

// SlowPort is what the slow path needs of a port: its MAC, its addresses
// (the source of its ICMP errors), its MTU and a socket to send on.
type SlowPort struct {
	MAC          MAC
	Addr4, Addr6 netip.Addr
	MTU          int // reported in fragmentation-needed / packet-too-big
	fd           int
}

// OpenSender opens the AF_PACKET socket of port ifindex, in the calling
// thread's network namespace.
func (p *SlowPort) OpenSender(ifindex int) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return fmt.Errorf("binding AF_PACKET to interface %d: %w", ifindex, err)
	}
	p.fd = fd
	return nil
}

// Close closes the port's sender.
func (p *SlowPort) Close() error {
	if p.fd <= 0 {
		return nil
	}
	return unix.Close(p.fd)
}

// Run serves in until it is closed.
func (s *SlowPath) Run(in <-chan SlowFrame) {
	if s.Limit == 0 {
		s.Limit = 100
	}
	s.limiter = rate.NewLimiter(s.Limit, int(s.Limit))
	for f := range in {
		if f.Decision.Reason == ReasonNoNeighbour {
			if s.Resolve != nil {
				if a, ok := dstAddr(f.Frame(), int(f.Decision.L3)); ok {
					s.Resolve(f.Decision.Port, a)
				}
			}
			continue
		}
		if !s.limiter.Allow() {
			s.Limited.Add(1)
			continue
		}
		if err := s.answer(f); err != nil {
			if errors.Is(err, ErrNoICMP) {
				s.Suppressed.Add(1)
			} else {
				s.Failed.Add(1)
			}
			continue
		}
		s.Sent.Add(1)
	}
}

func (s *SlowPath) answer(f SlowFrame) error {
	if int(f.Port) >= len(s.Ports) {
		return fmt.Errorf("no port %d", f.Port)
	}
	p := &s.Ports[f.Port]
	src := p.Addr4
	frame := f.Frame()
	if len(frame) > int(f.Decision.L3) && frame[f.Decision.L3]>>4 == 6 {
		src = p.Addr6
	}
	if !src.IsValid() {
		return fmt.Errorf("port %d has no address to send ICMP errors from", f.Port)
	}
	mtu := p.MTU
	if f.Decision.Reason == ReasonMTU && int(f.Decision.Port) < len(s.Ports) {
		mtu = s.Ports[f.Decision.Port].MTU // the egress port's: what the path can carry
	}
	reply, err := ICMPError(frame, f.Decision, p.MAC, src, mtu)
	if err != nil {
		return err
	}
	if p.fd <= 0 {
		return fmt.Errorf("port %d has no sender", f.Port)
	}
	_, err = unix.Write(p.fd, reply)
	return err
}

// dstAddr is the IP destination of a frame whose IP header is at l3.
func dstAddr(f []byte, l3 int) (netip.Addr, bool) {
	switch {
	case len(f) >= l3+ipv4MinHdr && f[l3]>>4 == 4:
		return netip.AddrFrom4([4]byte(f[l3+16 : l3+20])), true
	case len(f) >= l3+ipv6HdrLen && f[l3]>>4 == 6:
		return netip.AddrFrom16([16]byte(f[l3+24 : l3+40])), true
	}
	return netip.Addr{}, false
}
