package slowpath

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/pnap-project/pnap/forwarder"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// Port is what the slow path needs of a port: its interface (to send on),
// its MAC, its addresses (the source of its ICMP errors) and its MTU.
type Port struct {
	Name         string // for errors
	Ifindex      int
	MAC          forwarder.MAC
	Addr4, Addr6 netip.Addr
	MTU          int // reported in fragmentation-needed / packet-too-big
}

// Options tune a Responder. The zero value is usable.
type Options struct {
	// Limit is the ICMP errors sent per second in all; default 100, burst
	// of the same.
	Limit rate.Limit
	// Resolve, when set, is asked to resolve a connected host that a packet
	// found no MAC for (ReasonNoNeighbour): port is the egress port. It is
	// called on Run's goroutine and must not block.
	Resolve func(port uint8, host netip.Addr)
}

// Responder answers the frames the loops hand over (ActSlow) with ICMP
// errors, rate-limited as RFC 1812 4.3.2.8 asks, and sends them out of the
// receiving port with an AF_PACKET socket: the kernel's transmit path,
// since the port's AF_XDP TX ring belongs to its loop. It owns those
// sockets.
type Responder struct {
	ports   []Port
	fds     []int // by port; -1: none
	opt     Options
	limiter *rate.Limiter

	// Suppressed counts packets owed no ICMP error (errors about errors,
	// non-first fragments, sources that are not one host).
	Sent, Limited, Suppressed, Failed atomic.Uint64
}

// New opens an AF_PACKET socket on each port's interface, in the calling
// thread's network namespace. Ports are indexed as in the forwarder's
// Plane.
func New(ports []Port, opt Options) (*Responder, error) {
	r := newResponder(ports, opt)
	for i, p := range r.ports {
		fd, err := openSender(p.Ifindex)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("slow path: port %s: %w", p.Name, err)
		}
		r.fds[i] = fd
	}
	return r, nil
}

func newResponder(ports []Port, opt Options) *Responder {
	if opt.Limit == 0 {
		opt.Limit = 100
	}
	r := &Responder{ports: append([]Port(nil), ports...), fds: make([]int, len(ports)), opt: opt}
	for i := range r.fds {
		r.fds[i] = -1
	}
	r.limiter = rate.NewLimiter(opt.Limit, int(opt.Limit))
	return r
}

// openSender opens an AF_PACKET socket bound to interface ifindex.
func openSender(ifindex int) (int, error) {
	if ifindex <= 0 {
		return -1, fmt.Errorf("no interface index (%d)", ifindex)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding AF_PACKET to interface %d: %w", ifindex, err)
	}
	return fd, nil
}

// Close closes the ports' sockets; Run must have returned.
func (r *Responder) Close() error {
	var errs []error
	for i, fd := range r.fds {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
			r.fds[i] = -1
		}
	}
	return errors.Join(errs...)
}

// Run serves in until it is closed.
func (r *Responder) Run(in <-chan forwarder.SlowFrame) {
	for f := range in {
		if f.Decision.Reason == forwarder.ReasonNoNeighbour {
			if r.opt.Resolve != nil {
				if a, ok := dstAddr(f.Frame(), int(f.Decision.L3)); ok {
					r.opt.Resolve(f.Decision.Port, a)
				}
			}
			continue
		}
		if !r.limiter.Allow() {
			r.Limited.Add(1)
			continue
		}
		if err := r.answer(f); err != nil {
			if errors.Is(err, ErrNoICMP) {
				r.Suppressed.Add(1)
			} else {
				r.Failed.Add(1)
			}
			continue
		}
		r.Sent.Add(1)
	}
}

func (r *Responder) answer(f forwarder.SlowFrame) error {
	if int(f.Port) >= len(r.ports) {
		return fmt.Errorf("no port %d", f.Port)
	}
	p := &r.ports[f.Port]
	src := p.Addr4
	frame := f.Frame()
	if len(frame) > int(f.Decision.L3) && frame[f.Decision.L3]>>4 == 6 {
		src = p.Addr6
	}
	if !src.IsValid() {
		return fmt.Errorf("port %d has no address to send ICMP errors from", f.Port)
	}
	mtu := p.MTU
	if f.Decision.Reason == forwarder.ReasonMTU && int(f.Decision.Port) < len(r.ports) {
		mtu = r.ports[f.Decision.Port].MTU // the egress port's: what the path can carry
	}
	reply, err := ICMPError(frame, f.Decision, p.MAC, src, mtu)
	if err != nil {
		return err
	}
	if r.fds[f.Port] < 0 {
		return fmt.Errorf("port %d has no sender", f.Port)
	}
	_, err = unix.Write(r.fds[f.Port], reply)
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
