package probes

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/internal/monotime"
)

// echoDP answers every probe from another goroutine after 2 ms of real
// time, through OfferReply, as a forwarder worker would.
type echoDP struct {
	t  *testing.T
	p  *Probes
	mu sync.Mutex
	n  int
	wg sync.WaitGroup
}

func (d *echoDP) Path(b fib.BackboneID, family int) Path {
	return Path{SrcMAC: mac(byte(b), 1), DstMAC: mac(byte(b), 2), OK: true}
}

func (d *echoDP) Transmit(b fib.BackboneID, frame []byte) bool {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
	reply := answer(d.t, decodeProbe(d.t, frame), false)
	d.wg.Add(1)
	time.AfterFunc(2*time.Millisecond, func() {
		defer d.wg.Done()
		d.p.OfferReply(reply, monotime.Now())
	})
	return true
}

// Run with the real clock: rings drained, replies handed over from other
// goroutines, snapshots read concurrently. Run with -race.
func TestRun(t *testing.T) {
	f := newFIB(t, 2, map[string][]fib.BackboneID{"198.51.100.0/24": nil})
	r := routeOf(t, f, "198.51.100.0/24")
	dp := &echoDP{t: t}
	ring := &fakeRing{}
	o := DefaultOptions()
	o.Interval, o.Timeout, o.SourceV4 = 300*time.Millisecond, 200*time.Millisecond, probeSrc4
	p, err := New(o, f, nil, dp)
	if err != nil {
		t.Fatal(err)
	}
	p.rings = []sampleSource{ring}
	dp.p = p

	now := monotime.Now()
	syn := outS(forwarder.SampleSYN, now, r, 1)
	syn.Seq = 1
	sa := inS(forwarder.SampleSYNACK, now+ms(25))
	sa.Ack = 2
	tr := forwarder.Sample{Time: now, Kind: forwarder.SampleTraffic, Route: r, Proto: 6, Src: cust, Dst: remote, DstPort: 443}
	ring.put(tr, syn, sa)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	var snap Snapshot
	for time.Now().Before(deadline) {
		snap = p.Snapshot()
		_ = p.Counters()
		if len(snap.Prefixes) == 1 && len(snap.Prefixes[0].Backbones) == 2 &&
			snap.Prefixes[0].Backbones[0].Samples[Active] >= 4 && snap.Prefixes[0].Backbones[1].Samples[Active] >= 4 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dp.wg.Wait()
	ps := snap.Prefixes
	if len(ps) != 1 || ps[0].Prefix != pfx("198.51.100.0/24") || ps[0].Traffic <= 0 {
		t.Fatalf("snapshot %+v", snap)
	}
	s0, s1 := ps[0].Backbones[0], ps[0].Backbones[1]
	if s0.Samples[Active] < 4 || s1.Samples[Active] < 4 || s1.Samples[Passive] != 1 {
		t.Fatalf("samples %v %v, counters %+v", s0.Samples, s1.Samples, p.Counters())
	}
	// Replies are handed over within a tick or two of arriving, and the
	// scheduler may be slow under -race: bound the RTT loosely.
	if s0.Min < 2*time.Millisecond || s0.P50 > 100*time.Millisecond {
		t.Errorf("RTT %v..%v for a 2 ms network", s0.Min, s0.P50)
	}
	c := p.Counters()
	if c.Samples != 3 || c.MatchedSYN != 1 || c.TrafficSamples != 1 || c.Replies == 0 || c.ProbesAnswered == 0 {
		t.Errorf("counters %+v", c)
	}
}

func TestOfferReplyFull(t *testing.T) {
	f := newFIB(t, 1, nil)
	o := DefaultOptions()
	o.ReplyQueue = 2
	p, err := New(o, f, []*forwarder.SampleRing{forwarder.NewSampleRing(16)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 1500) // longer than a slot: cut, not refused
	for i, want := range []bool{true, true, false} {
		if got := p.OfferReply(frame, 0); got != want {
			t.Fatalf("offer %d: %v, want %v", i, got, want)
		}
	}
	p.step(0) // passive only: the replies are taken and dropped
	if !p.OfferReply(frame, 0) {
		t.Fatal("queue still full after a step")
	}
	if c := p.Counters(); c.RepliesDropped != 1 || c.RingDrops != 0 {
		t.Fatalf("counters %+v", c)
	}
}
