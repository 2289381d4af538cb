package forwarder

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
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

// End to end on AF_XDP: a frame put on a Loop's inject ring leaves by the
// port it names at once (the Loop is idle in poll), and a reply to the probe
// source reaches ProbeReply and not the customer.
func TestInjectAndProbeReplyThroughAFXDP(t *testing.T) {
	inj, err := NewInjectRing(64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inj.Close() })
	replies := make(chan []byte, 8)
	x := newAFXDPLabWith(t, -1, func(pl *Plane, l *Loop) {
		pl.SetProbeSources(netip.MustParseAddr("198.18.0.200"), netip.Addr{})
		l.Inject = inj
		l.ProbeReply = func(f []byte, at int64) {
			select {
			case replies <- append([]byte(nil), f...):
			default:
			}
		}
	})
	atA := x.al.Capture(t)
	probe := icmpEcho(t, "198.18.0.200", "203.0.113.9", true, 4242, 1)
	copy(probe[0:6], x.al.MAC)
	copy(probe[6:12], x.pb0.MAC)
	time.Sleep(300 * time.Millisecond) // the Loop is now asleep in poll
	start := time.Now()
	if !inj.Send(1, probe) {
		t.Fatal("inject refused")
	}
	awaitFrame(t, atA, "injected probe", func(p gopacket.Packet) bool {
		e, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && e.Id == 4242
	})
	if lat := time.Since(start); lat > 50*time.Millisecond {
		t.Errorf("injected frame took %v to leave: the Loop was not woken", lat)
	}

	// The backbone answers the probe source; the customer must not see it.
	atCust := x.cl.Capture(t)
	x.bbA.AddRoute(t, "198.18.0.0/24", "198.18.100.2")
	reply := icmpEcho(t, "203.0.113.9", "198.18.0.200", false, 4242, 1)
	copy(reply[0:6], x.pb0.MAC)
	copy(reply[6:12], x.al.MAC)
	if err := x.al.SendFrame(reply); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-replies:
		if !bytes.Equal(f[14:], reply[14:]) {
			t.Fatal("ProbeReply got a different frame")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the probe reply never reached ProbeReply")
	}
	if f, err := atCust.NextMatch(300*time.Millisecond, func(f []byte) bool { return bytes.Contains(f, reply[34:42]) }); err == nil && f != nil {
		t.Fatal("the probe reply reached the customer")
	}
}

func unixRead(fd int, b []byte) (int, error) { return unix.Read(fd, b) }
