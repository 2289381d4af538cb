//go:build linux

package topo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

// KernelRoute is one route for LoadKernelRoutes.
type KernelRoute struct {
	Prefix  netip.Prefix
	Gateway netip.Addr // same family as Prefix
	Ifindex int        // the gateway's interface
}

// LoadKernelRoutes adds (or replaces) routes in ns's main table and returns
// how long it took. It batches: hundreds of RTM_NEWROUTE messages per
// sendmsg, no acknowledgement asked per route (the kernel still answers an
// error), and one acknowledged message at the end to know the kernel has
// processed all before it. The full IPv4 table (902 k routes) loads in
// ~3 s here (TestKernelFullTable), against ~10 s for `ip -batch`
// (../shared/ENVIRONMENT.md), which waits for an answer to every route.
func LoadKernelRoutes(ns *lab.NS, routes []KernelRoute) (time.Duration, error) {
	start := time.Now()
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		const chunk = 64 << 10 // below the socket's send buffer: one sendmsg is one skb
		buf := make([]byte, 0, chunk+512)
		seq := uint32(0)
		flush := func() error {
			if len(buf) == 0 {
				return nil
			}
			if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
				return err
			}
			buf = buf[:0]
			return drainErrors(fd, routes, false)
		}
		for i, r := range routes {
			if r.Prefix.Addr().Is4() != r.Gateway.Is4() {
				return fmt.Errorf("route %v via %v: families differ", r.Prefix, r.Gateway)
			}
			seq = uint32(i + 1)
			buf = appendRouteMsg(buf, r, seq, false)
			if len(buf) >= chunk {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		// An acknowledged no-op (a get of the link table would do too): a
		// re-sent replace of the last route, whose ack follows every error.
		if len(routes) == 0 {
			return nil
		}
		buf = appendRouteMsg(buf[:0], routes[len(routes)-1], 0, true)
		if err := unix.Sendto(fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return err
		}
		return drainErrors(fd, routes, true)
	})
	return time.Since(start), err
}

// appendRouteMsg appends one RTM_NEWROUTE (create or replace) to b.
func appendRouteMsg(b []byte, r KernelRoute, seq uint32, ack bool) []byte {
	family, alen := byte(unix.AF_INET), 4
	if r.Prefix.Addr().Is6() {
		family, alen = unix.AF_INET6, 16
	}
	flags := uint16(unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_REPLACE)
	if ack {
		flags |= unix.NLM_F_ACK
	}
	attr := 4 + alen // RTA_DST and RTA_GATEWAY: header + address (4 or 16: aligned)
	total := unix.NLMSG_HDRLEN + unix.SizeofRtMsg + 2*attr + 8
	start := len(b)
	b = append(b, make([]byte, total)...)
	m := b[start:]
	ne := binary.NativeEndian
	ne.PutUint32(m[0:], uint32(total))
	ne.PutUint16(m[4:], unix.RTM_NEWROUTE)
	ne.PutUint16(m[6:], flags)
	ne.PutUint32(m[8:], seq)
	rt := m[unix.NLMSG_HDRLEN:]
	rt[0], rt[1] = family, byte(r.Prefix.Bits())
	rt[4], rt[5], rt[6], rt[7] = unix.RT_TABLE_MAIN, unix.RTPROT_STATIC, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST
	a := rt[unix.SizeofRtMsg:]
	putAttr := func(a []byte, typ uint16, data []byte) []byte {
		ne.PutUint16(a[0:], uint16(4+len(data)))
		ne.PutUint16(a[2:], typ)
		copy(a[4:], data)
		return a[(4+len(data)+3)&^3:]
	}
	a = putAttr(a, unix.RTA_DST, r.Prefix.Addr().AsSlice())
	a = putAttr(a, unix.RTA_GATEWAY, r.Gateway.AsSlice())
	var oif [4]byte
	ne.PutUint32(oif[:], uint32(r.Ifindex))
	putAttr(a, unix.RTA_OIF, oif[:])
	return b
}

// drainErrors reads the kernel's answers: without wait, whatever is queued;
// with wait, until the acknowledgement of sequence number 0 arrives. The
// first error is returned with the route it was about.
func drainErrors(fd int, routes []KernelRoute, wait bool) error {
	buf := make([]byte, 1<<16)
	flags := unix.MSG_DONTWAIT
	if wait {
		flags = 0
	}
	for {
		n, _, err := unix.Recvfrom(fd, buf, flags)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
				continue
			}
			errno := -int32(binary.NativeEndian.Uint32(m.Data[0:4]))
			seq := m.Header.Seq
			if errno != 0 {
				what := "the final route"
				if seq > 0 && int(seq) <= len(routes) {
					what = fmt.Sprintf("%v via %v", routes[seq-1].Prefix, routes[seq-1].Gateway)
				}
				return fmt.Errorf("kernel route %s: %w", what, unix.Errno(errno))
			}
			if seq == 0 && wait {
				return nil
			}
		}
	}
}
