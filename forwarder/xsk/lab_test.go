package xsk_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/forwarder/xsk/xsktest"
	"golang.org/x/sys/unix"
)

// openLab opens a port on queue 0 of a fresh veth in its own namespace,
// with pnap's steering program sending transit traffic to it, and returns
// it and both ends of the veth.
func openLab(t *testing.T) (p *xsk.Port, l, peer *lab.Link) {
	lab.RequireRoot(t)
	ns, other := lab.NewNS(t, "xa"), lab.NewNS(t, "xb")
	l, peer = lab.Connect(t, ns, "p0", other, "p1", lab.VethOpts{})
	err := ns.Do(func() (err error) {
		p, err = xsktest.Open(t, l.Name, l.Index)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, l, peer
}

// A frame sent to the port is received whole and writable; sent back, it
// leaves the port as written, and its frame is reusable after Release.
func TestReceiveReleaseSend(t *testing.T) {
	p, l, peer := openLab(t)
	capPeer := peer.Capture(t)
	frames := make([][]byte, 8)
	for round := range 3 { // more rounds than one Release would need to be right
		in := frametest.UDP(t, "198.18.0.7", "203.0.113.9", frametest.Opts{Src: [6]byte(peer.MAC), Dst: [6]byte(l.MAC), Payload: 10 + round})
		if err := peer.SendFrame(in); err != nil {
			t.Fatal(err)
		}
		n := 0
		pfd := []unix.PollFd{{Fd: int32(p.FD()), Events: unix.POLLIN}}
		for deadline := time.Now().Add(2 * time.Second); n == 0 && time.Now().Before(deadline); {
			unix.Poll(pfd, 100)
			n = p.Receive(frames)
		}
		if n != 1 || !bytes.Equal(frames[0], in) {
			t.Fatalf("round %d: received %d frames, first %x; want 1, %x", round, n, frames[0], in)
		}
		// Back to the peer, addressed to it.
		f := frames[0]
		copy(f[0:6], peer.MAC)
		copy(f[6:12], l.MAC)
		if sent, b := p.Send(frames[:1]); sent != 1 || b != uint64(len(in)) {
			t.Fatalf("round %d: Send = %d, %d bytes; want 1, %d", round, sent, b, len(in))
		}
		want := append([]byte(nil), f...)
		p.Release()
		got, err := capPeer.NextMatch(2*time.Second, func(g []byte) bool { return bytes.Equal(g, want) })
		if err != nil || got == nil {
			t.Fatalf("round %d: the frame sent never reached the peer: %v", round, err)
		}
	}
}

func TestPreferBusyPollSetsSocketOptions(t *testing.T) {
	p, _, _ := openLab(t)
	if err := p.PreferBusyPoll(20, 64); err != nil {
		t.Fatal(err)
	}
	// SO_BUSY_POLL_BUDGET can be set but not read back (ENOPROTOOPT).
	for opt, want := range map[int]int{unix.SO_PREFER_BUSY_POLL: 1, unix.SO_BUSY_POLL: 20} {
		got, err := unix.GetsockoptInt(p.FD(), unix.SOL_SOCKET, opt)
		if err != nil || got != want {
			t.Fatalf("socket option %d = %d (%v), want %d", opt, got, err, want)
		}
	}
}
