package xsk_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/forwarder/xsk/xsktest"
	"golang.org/x/sys/unix"
)

// pair is two ports of one UMEM, each on its own veth in the DUT's
// namespace, with the far ends in namespaces of their own.
type pair struct {
	u          *xsk.Umem
	a, b       *xsk.Port
	la, lb     *lab.Link // the DUT's ends
	farA, farB *lab.Link
}

func openPair(t *testing.T, opt xsk.Options) *pair {
	lab.RequireRoot(t)
	dut, na, nb := lab.NewNS(t, "xd"), lab.NewNS(t, "xa"), lab.NewNS(t, "xb")
	x := &pair{}
	x.la, x.farA = lab.Connect(t, dut, "pa", na, "fa", lab.VethOpts{})
	x.lb, x.farB = lab.Connect(t, dut, "pb", nb, "fb", lab.VethOpts{})
	x.u = xsktest.NewUmem(t, 2, opt)
	err := dut.Do(func() (err error) {
		if x.a, err = xsktest.Open(t, x.u, x.la.Name, x.la.Index); err != nil {
			return err
		}
		x.b, err = xsktest.Open(t, x.u, x.lb.Name, x.lb.Index)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// receive waits for one frame on p, refilling as a worker does.
func receive(t *testing.T, u *xsk.Umem, p *xsk.Port, frames [][]byte) int {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(p.FD()), Events: unix.POLLIN}}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		u.Refill()
		if n := p.Receive(frames); n > 0 {
			return n
		}
		unix.Poll(pfd, 100)
	}
	t.Fatalf("nothing received on %s", p.Name)
	return 0
}

// A frame received on one port leaves by the other as its descriptor:
// rewritten in place and resliced (as a removed VLAN tag is), it arrives as
// written, nothing is copied, and its frame comes back to the UMEM.
func TestForwardMovesTheFrame(t *testing.T) {
	x := openPair(t, xsk.Options{})
	if x.u.ZeroCopy() || x.u.Mode() != "copy" {
		t.Fatalf("veth bound in %s mode; AF_XDP on veth is copy mode, so the zero-copy attempt should have fallen back", x.u.Mode())
	}
	capB := x.farB.Capture(t)
	frames := make([][]byte, 8)
	for round := range 3 * x.u.Frames() / 8 { // every frame of the UMEM goes round more than once
		in := frametest.UDP(t, "198.18.0.7", "203.0.113.9", frametest.Opts{Src: [6]byte(x.farA.MAC), Dst: [6]byte(x.la.MAC), Payload: 10 + round%50})
		if err := x.farA.SendFrame(in); err != nil {
			t.Fatal(err)
		}
		if n := receive(t, x.u, x.a, frames); n != 1 || !bytes.Equal(frames[0], in) {
			t.Fatalf("round %d: received %d frames, first %x; want 1, %x", round, n, frames[0], in)
		}
		f := frames[0]
		copy(f[2:8], x.farB.MAC) // shift the MACs by 2: the frame leaves from offset 2
		copy(f[8:14], x.lb.MAC)
		f = f[2:]
		want := append([]byte(nil), f...)
		if sent, n := x.b.Send([][]byte{f}); sent != 1 || n != uint64(len(want)) {
			t.Fatalf("round %d: Send = %d, %d bytes; want 1, %d", round, sent, n, len(want))
		}
		got, err := capB.NextMatch(2*time.Second, func(g []byte) bool { return bytes.Equal(g, want) })
		if err != nil || got == nil {
			t.Fatalf("round %d: the frame never left %s: %v", round, x.lb.Name, err)
		}
	}
	for _, p := range []*xsk.Port{x.a, x.b} {
		if st, err := p.Stats(); err != nil || st.Copied != 0 || st.TxInvalid != 0 {
			t.Fatalf("%s: %+v, %v; want no copy and no invalid descriptor", p.Name, st, err)
		}
	}
	xsktest.AwaitCensus(t, x.u)
}

// A frame from outside the UMEM (a probe) is copied into a free frame, and
// counted as copied.
func TestSendCopiesForeignFrames(t *testing.T) {
	x := openPair(t, xsk.Options{})
	capB := x.farB.Capture(t)
	f := frametest.UDP(t, "198.18.0.7", "203.0.113.9", frametest.Opts{Src: [6]byte(x.lb.MAC), Dst: [6]byte(x.farB.MAC), Payload: 33})
	if sent, _ := x.b.Send([][]byte{f}); sent != 1 {
		t.Fatalf("Send = %d", sent)
	}
	if got, err := capB.NextMatch(2*time.Second, func(g []byte) bool { return bytes.Equal(g, f) }); err != nil || got == nil {
		t.Fatalf("the copied frame never left: %v", err)
	}
	if st, _ := x.b.Stats(); st.Copied != 1 {
		t.Fatalf("Copied = %d, want 1", st.Copied)
	}
	xsktest.AwaitCensus(t, x.u)
}

// The census sees a frame given back twice: it can fail.
func TestCensusFindsADoubleRecycle(t *testing.T) {
	x := openPair(t, xsk.Options{})
	if err := x.farA.SendFrame(frametest.UDP(t, "198.18.0.7", "203.0.113.9", frametest.Opts{Src: [6]byte(x.farA.MAC), Dst: [6]byte(x.la.MAC)})); err != nil {
		t.Fatal(err)
	}
	frames := make([][]byte, 1)
	receive(t, x.u, x.a, frames)
	x.u.Recycle(frames)
	x.u.Recycle(frames)
	if _, err := x.u.Census(); err == nil || !strings.Contains(err.Error(), "both in the free list and in the free list") {
		t.Fatalf("census after a double recycle: %v", err)
	}
}

// Closing releases the queue at once: a new socket binds to it in the same
// process and receives.
func TestRebindSameQueue(t *testing.T) {
	lab.RequireRoot(t)
	dut, far := lab.NewNS(t, "xr"), lab.NewNS(t, "xf")
	l, peer := lab.Connect(t, dut, "p0", far, "p1", lab.VethOpts{})
	for round := range 3 {
		u, err := xsk.NewUmem(1, xsk.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var p *xsk.Port
		err = dut.Do(func() (err error) {
			p, err = u.Open(l.Name, l.Index, 0)
			return err
		})
		if err != nil {
			u.Close()
			t.Fatalf("round %d: %v", round, err)
		}
		if err := u.Close(); err != nil {
			t.Fatalf("round %d: close: %v", round, err)
		}
		_ = p
	}
	// And the last one receives, through a steering program.
	u := xsktest.NewUmem(t, 1, xsk.Options{})
	var p *xsk.Port
	err := dut.Do(func() (err error) {
		p, err = xsktest.Open(t, u, l.Name, l.Index)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.SendFrame(frametest.UDP(t, "198.18.0.7", "203.0.113.9", frametest.Opts{Src: [6]byte(peer.MAC), Dst: [6]byte(l.MAC)})); err != nil {
		t.Fatal(err)
	}
	receive(t, u, p, make([][]byte, 4))
}

// Copy forces copy mode; sizes the kernel refuses come back as errors.
func TestOpenErrors(t *testing.T) {
	lab.RequireRoot(t)
	dut, far := lab.NewNS(t, "xe"), lab.NewNS(t, "xg")
	l, _ := lab.Connect(t, dut, "p0", far, "p1", lab.VethOpts{})
	u := xsktest.NewUmem(t, 1, xsk.Options{Copy: true})
	err := dut.Do(func() error {
		if _, err := u.Open(l.Name, l.Index, 5); err == nil || !strings.Contains(err.Error(), "queue 5") {
			t.Errorf("binding a queue the veth lacks: %v", err)
		}
		_, err := u.Open(l.Name, l.Index, 0)
		return err
	})
	if err != nil || u.Mode() != "copy" {
		t.Fatalf("after a failed bind, the port opens in copy mode: %v, %s", err, u.Mode())
	}
}

func TestPreferBusyPollSetsSocketOptions(t *testing.T) {
	x := openPair(t, xsk.Options{})
	if err := x.a.PreferBusyPoll(20, 64); err != nil {
		t.Fatal(err)
	}
	// SO_BUSY_POLL_BUDGET can be set but not read back (ENOPROTOOPT).
	for opt, want := range map[int]int{unix.SO_PREFER_BUSY_POLL: 1, unix.SO_BUSY_POLL: 20} {
		got, err := unix.GetsockoptInt(x.a.FD(), unix.SOL_SOCKET, opt)
		if err != nil || got != want {
			t.Fatalf("socket option %d = %d (%v), want %d", opt, got, err, want)
		}
	}
}
