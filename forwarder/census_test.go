package forwarder_test

import (
	"testing"
	"time"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/internal/frametest"
	"github.com/pnap-project/pnap/forwarder/xsk/xsktest"
)

// Millions of frames through the Loop, forwarded, dropped, handed to the
// slow path, and sent to a backbone port that is down, leave every UMEM
// frame in exactly one place, none held and none copied.
func TestFrameCensusUnderLoad(t *testing.T) {
	x := newAFXDPLabCPU(t, 1)
	opts := frametest.Opts{Src: [6]byte(x.cl.MAC), Dst: [6]byte(x.pc0.MAC)}
	good := frametest.UDP(t, "198.18.0.7", "203.0.113.9", opts)
	gen := newLiveGenerator(t, x.cust, x.cl, good)
	expired := opts
	expired.TTL = 1
	notOurs := opts
	notOurs.Dst = [6]byte{0x02, 0, 0, 0, 0, 0x99}
	var total uint64
	send := func(frame []byte, n uint32) {
		t.Helper()
		prog, err := liveProgram(frame)
		if err != nil {
			t.Fatal(err)
		}
		defer prog.Close()
		runLive(t, x.cust, 0, prog, x.cl.Index, frame, n)
		total += uint64(n)
	}
	send(good, 1_000_000)
	send(frametest.UDP(t, "198.18.0.7", "203.0.113.9", expired), 200_000)
	send(frametest.UDP(t, "198.18.0.7", "203.0.113.9", notOurs), 200_000)
	if err := x.pb0.SetUp(false); err != nil {
		t.Fatal(err)
	}
	send(good, 500_000)
	if err := x.pb0.SetUp(true); err != nil {
		t.Fatal(err)
	}
	gen.send(t, x.cust, 0, good, 500_000)
	total += 500_000
	time.Sleep(100 * time.Millisecond) // let the rings drain through the loop
	if err := x.stopLoop(); err != nil {
		t.Fatal(err)
	}

	var in, out forwarder.PortStats
	x.worker.Stats(0, &in)
	x.worker.Stats(1, &out)
	t.Logf("offered %d; the loop received %d, forwarded %d, dropped: TTL %d, not ours %d, TX ring full %d",
		total, in.RxPackets, out.TxPackets, in.Drops[forwarder.ReasonTTL], in.Drops[forwarder.ReasonOtherHost], out.Drops[forwarder.ReasonTxRingFull])
	if out.TxPackets == 0 || in.Drops[forwarder.ReasonTTL] == 0 || in.Drops[forwarder.ReasonOtherHost] == 0 || out.Drops[forwarder.ReasonTxRingFull] == 0 {
		t.Fatalf("not every path was taken: %+v / %+v", in, out)
	}
	for _, p := range x.ports {
		st, _ := p.Stats()
		t.Logf("%s: %+v", p.Name, st)
	}
	flushPoolFrame(t, x, good)
	c := xsktest.AwaitCensus(t, x.ports[0].Umem())
	t.Logf("census: %+v", c)
	for _, p := range x.ports {
		if st, err := p.Stats(); err != nil || st.Copied != 0 {
			t.Fatalf("%s: %+v, %v; forwarding copied frames", p.Name, st, err)
		}
	}
}

// flushPoolFrame receives one frame on the customer port by hand (the loop
// is stopped) and gives it back. In copy mode the kernel keeps a frame it
// took from the fill ring when the RX ring was full on its own free list,
// and receives the next frame into it first: that frame is the kernel's,
// not lost, and this brings it back into view.
func flushPoolFrame(t *testing.T, x *afxdpLab, frame []byte) {
	t.Helper()
	u, p := x.ports[0].Umem(), x.ports[0]
	frames := make([][]byte, 64)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		if err := x.cl.SendFrame(frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		u.Refill()
		if n := p.Receive(frames); n > 0 {
			u.Recycle(frames[:n])
			return
		}
	}
	t.Fatal("no frame received on the customer port after the loop stopped")
}
