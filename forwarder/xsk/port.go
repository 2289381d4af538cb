package xsk

import (
	"cmp"
	"fmt"

	"github.com/asavie/xdp"
	"github.com/pnap-project/pnap/internal/setting"
	"golang.org/x/sys/unix"
)

// Options size one AF_XDP socket. The zero value is usable.
type Options struct {
	// Frames is the UMEM size in frames, half for receiving and half for
	// sending (asavie/xdp splits it so). Default 512.
	Frames int
	// FrameSize in bytes: 2048 or 4096. Default 2048.
	FrameSize int
	// RingSize is the number of descriptors of each ring; a power of two,
	// at most Frames/2. Default 256.
	//
	// Defaults from ../shared/ENVIRONMENT.md's measurements on veth: 512
	// frames and 256-entry rings beat 4096/2048 (the UMEM falls out of
	// cache, and asavie's GetDescs scans every frame).
	RingSize int
}

// DefaultOptions are the sizes a zero Options stands for.
func DefaultOptions() Options { return Options{Frames: 512, FrameSize: 2048, RingSize: 256} }

// fill replaces zero sizes with the defaults.
func (o *Options) fill() {
	d := DefaultOptions()
	o.Frames = cmp.Or(o.Frames, d.Frames)
	o.FrameSize = cmp.Or(o.FrameSize, d.FrameSize)
	o.RingSize = cmp.Or(o.RingSize, d.RingSize)
}

// Validate says which size the kernel or the ring split would refuse. It
// checks the sizes as they are: Open takes zero for a default, a
// configuration that writes 0 is refused. Errors name the setting as
// pnapd's [forwarder] table does.
func (o Options) Validate() error {
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return setting.Errorf("frame_size", "frame_size = %d is not supported; use 2048 or 4096", o.FrameSize)
	}
	if err := setting.First(setting.PowerOfTwo("frames", o.Frames, 64, 1<<20), setting.PowerOfTwo("ring_size", o.RingSize, 1, 1<<20)); err != nil {
		return err
	}
	if 2*o.RingSize > o.Frames {
		// Half the UMEM receives, half sends; each half must hold a ring.
		return &setting.Error{Keys: []string{"ring_size", "frames"}, Msg: fmt.Sprintf("ring_size = %d needs frames >= %d (half the frames receive, half send); lower ring_size or raise frames", o.RingSize, 2*o.RingSize)}
	}
	return nil
}

// Port is one AF_XDP socket, bound to one queue of one interface. It owns
// the socket's UMEM and rings; only one goroutine (the loop serving it) may
// receive and send on it.
type Port struct {
	// Name, Ifindex and Queue say where the socket is bound; read only.
	Name    string
	Ifindex int
	Queue   int
	sock    *xdp.Socket
	// rx are the descriptors of the frames handed out by Receive, given
	// back by Release.
	rx []xdp.Desc
}

// Open binds an AF_XDP socket to queue of the interface ifindex (in the
// calling thread's network namespace) and fills its fill ring. name is for
// errors and logs.
func Open(name string, ifindex, queue int, opt Options) (*Port, error) {
	opt.fill()
	if err := opt.Validate(); err != nil {
		return nil, fmt.Errorf("port %s: %w", name, err)
	}
	sock, err := xdp.NewSocket(ifindex, queue, &xdp.SocketOptions{
		NumFrames:              opt.Frames,
		FrameSize:              opt.FrameSize,
		FillRingNumDescs:       opt.RingSize,
		CompletionRingNumDescs: opt.RingSize,
		RxRingNumDescs:         opt.RingSize,
		TxRingNumDescs:         opt.RingSize,
	})
	if err != nil {
		return nil, fmt.Errorf("port %s queue %d: AF_XDP socket: %w (does the interface have this queue? is the locked-memory limit high enough?)", name, queue, err)
	}
	p := &Port{Name: name, Ifindex: ifindex, Queue: queue, sock: sock}
	p.sock.Fill(p.sock.GetDescs(p.sock.NumFreeFillSlots(), true))
	return p, nil
}

// FD is the socket's file descriptor, for the XSK map and poll.
func (p *Port) FD() int { return p.sock.FD() }

// Close closes the socket and unmaps its memory.
func (p *Port) Close() error { return p.sock.Close() }

// Receive takes up to len(frames) received frames off the RX ring and puts
// them in frames, returning how many. The frames are the UMEM's own memory:
// they may be rewritten in place, and stay valid until Release, which must
// come before the next Receive.
func (p *Port) Receive(frames [][]byte) int {
	n := p.sock.NumReceived()
	if n == 0 {
		return 0
	}
	p.rx = p.sock.Receive(min(n, len(frames)))
	for i, d := range p.rx {
		frames[i] = p.sock.GetFrame(d)
	}
	return len(p.rx)
}

// Release gives the frames of the last Receive back to the kernel to
// receive into.
func (p *Port) Release() {
	p.sock.Fill(p.rx)
	p.rx = p.rx[:0]
}

// Send copies frames into free frames of the UMEM, puts them on the TX ring
// and asks the kernel to send them. It returns how many went on the ring
// and their bytes; the rest (at the end of frames) found no room and are
// not sent. asavie/xdp gives each socket its own UMEM, so a frame received
// on one port is always copied to leave by another.
func (p *Port) Send(frames [][]byte) (sent int, bytes uint64) {
	if c := p.sock.NumCompleted(); c > 0 {
		p.sock.Complete(c)
	}
	txd := p.sock.GetDescs(len(frames), false)
	for k := range txd {
		txd[k].Len = uint32(copy(p.sock.GetFrame(txd[k]), frames[k]))
	}
	sent = transmit(p.sock, txd)
	for k := range sent {
		bytes += uint64(txd[k].Len)
	}
	p.kick()
	return sent, bytes
}

// transmit puts descs on the TX ring. asavie/xdp's Transmit also makes one
// sendto and panics on an errno it does not expect (ENOBUFS, ENXIO when the
// link goes down); a data plane must not die of that, so the panic is caught
// here, once per batch, and the frames count as not sent.
func transmit(s *xdp.Socket, descs []xdp.Desc) (sent int) {
	free := s.NumFreeTxSlots()
	if len(descs) > free {
		descs = descs[:free]
	}
	if len(descs) == 0 {
		return 0
	}
	defer func() {
		if recover() != nil {
			sent = 0
		}
	}()
	return s.Transmit(descs)
}

// kick asks the kernel to send what is on the TX ring. In copy mode one
// sendto sends at most 32 frames, so it kicks until the ring drains.
// asavie/xdp's Transmit makes exactly one sendto and panics on unexpected
// errors, which is why this is done here.
func (p *Port) kick() {
	for i := 0; i < 16 && p.sock.NumTransmitted() > p.sock.NumCompleted(); i++ {
		_, _, errno := unix.Syscall6(unix.SYS_SENDTO, uintptr(p.sock.FD()), 0, 0, uintptr(unix.MSG_DONTWAIT), 0, 0)
		if errno != 0 && errno != unix.EAGAIN && errno != unix.EBUSY && errno != unix.EINTR {
			return
		}
		if c := p.sock.NumCompleted(); c > 0 {
			p.sock.Complete(c)
		}
	}
}

// PreferBusyPoll makes the socket's poll(2) run the interface's NAPI
// receive loop in the caller's thread (SO_PREFER_BUSY_POLL, kernel >= 5.11),
// for up to usecs and budget frames, so receive work is done only as fast
// as the worker consumes it. The interface also needs napi_defer_hard_irqs
// and gro_flush_timeout set, or interrupts keep scheduling NAPI elsewhere.
func (p *Port) PreferBusyPoll(usecs, budget int) error {
	fd := p.sock.FD()
	for _, o := range []struct{ opt, val int }{
		{unix.SO_PREFER_BUSY_POLL, 1}, {unix.SO_BUSY_POLL, usecs}, {unix.SO_BUSY_POLL_BUDGET, budget},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, o.val); err != nil {
			return fmt.Errorf("port %s: busy poll option %d: %w", p.Name, o.opt, err)
		}
	}
	return nil
}
