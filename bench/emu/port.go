//go:build linux

package emu

import (
	"fmt"
	"time"
	"unsafe"

	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

// Why AF_PACKET with recvmmsg/sendmmsg and not TPACKET_V3 rings or AF_XDP:
// the emulator holds every frame for up to seconds, so it copies frames out of
// whatever ring it reads anyway, and AF_XDP on veth copies too (no zero-copy
// there). At 100 kpps the loop turns ~10k times a second with a few batched
// system calls each, ~60 % of a CPU here, most of it the kernel's veth and
// the receiving stack, which a ring would not save. A plain socket needs no
// ring bookkeeping, no UMEM and no XDP program to detach, and gives what the
// others do not for free: the kernel's receive time of each frame
// (SO_TIMESTAMPNS) and, with PACKET_VNET_HDR, its checksum-offload and GSO
// metadata, so that a frame with a partial checksum or a 64 KiB TSO frame
// leaves as it came, as over a veth.

const (
	vnetHdrLen = 10 // struct virtio_net_hdr, prefixed to every frame by PACKET_VNET_HDR
	// slotLen holds the largest GSO frame veth makes (64 KiB of IP plus the
	// Ethernet and VLAN headers). Only the bytes written are ever touched, so
	// big slots cost address space, not memory.
	slotLen = vnetHdrLen + 18 + 64<<10
	// batch is the most frames per recvmmsg/sendmmsg: at 100 kpps a loop
	// iteration rarely sees more than a few dozen.
	batch   = 32
	sockBuf = 4 << 20 // 4 MiB socket buffers: ~5k small frames, 50 ms at 100 kpps
)

const (
	vnetNeedsCsum = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM: the only flag valid on transmit
)

// mmsghdr is struct mmsghdr; Go pads it to the C layout on every arch.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// port is one AF_PACKET socket bound to one interface, with preallocated
// batches for recvmmsg and sendmmsg. It is used by one goroutine at a time.
type port struct {
	link *lab.Link
	fd   int

	rx    []mmsghdr
	rxIov []unix.Iovec
	rxBuf []byte // batch slots of slotLen bytes
	rxCtl []byte // batch control buffers of ctlLen bytes
	tx    []mmsghdr
	txIov []unix.Iovec

	kernelDrops uint64 // PACKET_STATISTICS tp_drops so far (the kernel resets it on read)
}

// ctlLen fits one SCM_TIMESTAMPNS message, with room to spare.
const ctlLen = 64

// openPort opens a raw socket on l inside l's namespace. The socket is
// created with protocol 0 and bound with ETH_P_ALL afterwards so it never
// queues frames of other interfaces.
func openPort(l *lab.Link) (*port, error) {
	p := &port{link: l, fd: -1}
	err := l.NS.Do(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		for _, o := range []struct {
			level, opt, v int
			name          string
		}{
			// Not read back our own transmits (nor the namespace's).
			{unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1, "PACKET_IGNORE_OUTGOING"},
			// Not PACKET_QDISC_BYPASS: a veth has no qdisc to bypass, and
			// the bypass drops (ENOBUFS) a GSO frame that the link cannot
			// take as is instead of segmenting it.
			{unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"},
			{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS"},
			{unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, sockBuf, "SO_RCVBUFFORCE"},
			{unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sockBuf, "SO_SNDBUFFORCE"},
		} {
			if err := unix.SetsockoptInt(fd, o.level, o.opt, o.v); err != nil {
				unix.Close(fd)
				return fmt.Errorf("%s: %w", o.name, err)
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind: %w", err)
		}
		p.fd = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("packet socket on %s: %w", l, err)
	}
	p.rx = make([]mmsghdr, batch)
	p.rxIov = make([]unix.Iovec, batch)
	p.rxBuf = make([]byte, batch*slotLen)
	p.rxCtl = make([]byte, batch*ctlLen)
	p.tx = make([]mmsghdr, batch)
	p.txIov = make([]unix.Iovec, batch)
	for i := range p.rx {
		p.rxIov[i].Base = &p.rxBuf[i*slotLen]
		p.rxIov[i].SetLen(slotLen)
		p.rx[i].hdr.Iov = &p.rxIov[i]
		p.rx[i].hdr.SetIovlen(1)
		p.tx[i].hdr.Iov = &p.txIov[i]
		p.tx[i].hdr.SetIovlen(1)
	}
	return p, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// recv reads up to batch frames without blocking. It returns how many it
// read (0 when none is waiting); frame i is p.frame(i), vnet header first,
// received at p.stamp(i).
func (p *port) recv() (int, error) {
	for i := range p.rx {
		h := &p.rx[i].hdr
		h.Control = &p.rxCtl[i*ctlLen]
		h.SetControllen(ctlLen)
		h.Flags = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.rx[0])), uintptr(len(p.rx)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return 0, nil
		}
		return 0, fmt.Errorf("recvmmsg on %s: %w", p.link, errno)
	}
}

// frame returns received frame i (vnet header included) and whether it was
// truncated (larger than a slot).
func (p *port) frame(i int) ([]byte, bool) {
	n := min(int(p.rx[i].n), slotLen)
	return p.rxBuf[i*slotLen : i*slotLen+n], p.rx[i].hdr.Flags&unix.MSG_TRUNC != 0
}

// stamp returns the kernel's receive time (CLOCK_REALTIME, Unix ns) of frame
// i, or 0 if it carries none.
func (p *port) stamp(i int) int64 {
	ctl := p.rxCtl[i*ctlLen : i*ctlLen+int(p.rx[i].hdr.Controllen)]
	for len(ctl) >= unix.SizeofCmsghdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		if c.Len < unix.SizeofCmsghdr || int(c.Len) > len(ctl) {
			return 0
		}
		if c.Level == unix.SOL_SOCKET && c.Type == unix.SCM_TIMESTAMPNS && int(c.Len) >= unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
			ts := (*unix.Timespec)(unsafe.Pointer(&ctl[unix.CmsgLen(0)]))
			return ts.Nano()
		}
		ctl = ctl[min(unix.CmsgSpace(int(c.Len)-unix.CmsgLen(0)), len(ctl)):]
	}
	return 0
}

// send transmits frames (each vnet header first) with one sendmmsg and
// returns how many the kernel took, or an error about frames[0].
func (p *port) send(frames [][]byte) (int, error) {
	n := min(len(frames), len(p.tx))
	for i, f := range frames[:n] {
		p.txIov[i].Base = &f[0]
		p.txIov[i].SetLen(len(f))
	}
	for {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.tx[0])), uintptr(n), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			// Fewer than n: the kernel stopped at a failing message and
			// dropped its error; sending from that one again reports it.
			return int(r), nil
		case unix.EINTR:
			continue
		}
		return 0, fmt.Errorf("sendmmsg on %s: %w", p.link, errno)
	}
}

// drops returns the frames the kernel dropped because the socket's receive
// buffer was full, since the port was opened.
func (p *port) drops() uint64 {
	if s, err := unix.GetsockoptTpacketStats(p.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		p.kernelDrops += uint64(s.Drops)
	}
	return p.kernelDrops
}

func (p *port) close() error {
	if p.fd < 0 {
		return nil
	}
	err := unix.Close(p.fd)
	p.fd = -1
	return err
}

// monoSince converts a CLOCK_REALTIME stamp (Unix ns) into the monotonic
// clock of epoch, using now (which carries both readings).
func monoSince(epoch, now time.Time, realNs int64) int64 {
	return realNs - now.UnixNano() + int64(now.Sub(epoch))
}
