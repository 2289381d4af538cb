package forwarder

import (
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Frames to the probe source are consumed as probe replies, counted, and
// never forwarded, from any port and either family.
func TestProbeRepliesAreConsumed(t *testing.T) {
	pl := testPlane(t)
	pl.SetProbeSources(netip.MustParseAddr("198.18.0.200"), netip.MustParseAddr("2001:2:0:1::200"))
	w := NewWorker(pl)
	for _, f := range [][]byte{
		icmpEcho(t, "203.0.113.9", "198.18.0.200", false, 1, 1),
		udpFrame(t, "2001:db8::1", "2001:2:0:1::200", frameOpts{}),
	} {
		if d := process(t, w, 1, f); d.Action != ActProbe || d.Reason != ReasonProbeReply {
			t.Fatalf("reply to the probe source: %+v", d)
		}
	}
	// Other addresses of the subnet are still forwarded to the customer.
	if d := process(t, w, 1, icmpEcho(t, "203.0.113.9", "198.18.0.7", false, 1, 1)); d.Action != ActForward || d.Port != 0 {
		t.Fatalf("reply to a customer host: %+v", d)
	}
	var st PortStats
	w.Stats(1, &st)
	if st.Drops[ReasonProbeReply] != 2 {
		t.Fatalf("probe replies counted %d, want 2", st.Drops[ReasonProbeReply])
	}
	pl.SetProbeSources(netip.Addr{}, netip.Addr{})
	if d := process(t, w, 1, icmpEcho(t, "203.0.113.9", "198.18.0.200", false, 1, 1)); d.Action == ActProbe {
		t.Fatal("probe source still consumed after clearing it")
	}
}

// The inject ring takes frames from several goroutines, refuses beyond
// its size, and signals its eventfd.
func TestInjectRing(t *testing.T) {
	r, err := NewInjectRing(8)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				r.Send(uint8(g), []byte{byte(g)})
			}
		}()
	}
	wg.Wait()
	if r.tail.Load()-r.head.Load() != 8 || r.Refused() != 8 {
		t.Fatalf("queued %d, refused %d; want 8 and 8", r.tail.Load()-r.head.Load(), r.Refused())
	}
	if r.Send(0, make([]byte, 300)) || r.Refused() != 9 {
		t.Fatal("an oversized frame was queued")
	}
	var b [8]byte
	if n, err := unixRead(r.efd, b[:]); n != 8 || err != nil || b[0] == 0 {
		t.Fatalf("eventfd not signalled: %d %v %v", n, err, b)
	}
}

func unixRead(fd int, b []byte) (int, error) { return unix.Read(fd, b) }
