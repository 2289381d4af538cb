//go:build linux

package steerlab

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Pings is the scale lab's customer traffic: ICMP echoes to many
// destinations, each echo's time the RTT the customer sees. Destinations
// are drawn by a Zipf law over a shuffled ranking, so a few prefixes carry
// most of the traffic and the many others a trickle, as on the Internet;
// pnap's in-band sampler pairs the echoes with their replies as it does a
// customer's. TCP connections to 10,000 destinations would cost this VM
// more than pnap: echoes carry the same per-prefix RTT at a packet each.
type Pings struct {
	c     *icmp.PacketConn
	dests []netip.Addr
	start time.Time
	sent  atomic.Int64
	back  atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	rtts []PingRTT
	// Weight is each destination's share of the echoes, as drawn.
	Weight []float64
}

// PingRTT is one echo answered: when it was sent (since Pings started), to
// which of the destinations, how long it took.
type PingRTT struct {
	At   time.Duration
	Dest int32
	RTT  time.Duration
}

// zipfS is the Zipf law's exponent: the busiest tenth of 10,000
// destinations gets 84 % of the echoes, the busiest one 15 %.
const zipfS = 1.1

// pingMagic starts every echo's payload; pingID is the echoes' identifier.
const (
	pingMagic = 0x70696e67 // "ping"
	pingID    = 0x7a7a
)

// StartPings sends rate echoes a second from ns to dests until Stop, the
// k-th busiest destination (by a shuffle drawn from seed) getting a share
// proportional to 1/k^s (Zipf, s = 1.1).
func StartPings(tb testing.TB, ns *lab.NS, dests []netip.Addr, rate int, seed uint64) *Pings {
	tb.Helper()
	p := &Pings{dests: dests, start: time.Now(), stop: make(chan struct{})}
	if err := ns.Do(func() error {
		var err error
		p.c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	}); err != nil {
		tb.Fatalf("pings: %v", err)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	rank := rng.Perm(len(dests))
	zipf := zipfDraw(rng, zipfS, len(dests))
	p.Weight = make([]float64, len(dests))
	sum := 0.0
	for k := range dests {
		sum += 1 / math.Pow(float64(k+1), zipfS)
	}
	for k, d := range rank {
		p.Weight[d] = 1 / math.Pow(float64(k+1), zipfS) / sum
	}
	p.wg.Add(2)
	go func() { defer p.wg.Done(); p.send(rate, func() int { return rank[zipf()] }) }()
	go func() { defer p.wg.Done(); p.receive() }()
	tb.Cleanup(p.Stop)
	return p
}

// zipfDraw returns a function drawing ranks 0..n-1 with P(k) ∝ 1/(k+1)^s,
// by inverting the cumulative weights (a binary search per draw).
func zipfDraw(rng *rand.Rand, s float64, n int) func() int {
	cum := make([]float64, n)
	sum := 0.0
	for k := range n {
		sum += 1 / math.Pow(float64(k+1), s)
		cum[k] = sum
	}
	return func() int {
		x := rng.Float64() * sum
		lo, hi := 0, n-1
		for lo < hi {
			mid := (lo + hi) / 2
			if cum[mid] < x {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return lo
	}
}

func (p *Pings) send(rate int, next func() int) {
	const tick = 10 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	per := max(1, rate*int(tick)/int(time.Second))
	payload := make([]byte, 16)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: pingID, Data: payload}}
	for seq := 0; ; {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		for range per {
			k := next()
			binary.BigEndian.PutUint32(payload, pingMagic)
			binary.BigEndian.PutUint32(payload[4:], uint32(k))
			binary.BigEndian.PutUint64(payload[8:], uint64(time.Since(p.start)))
			msg.Body.(*icmp.Echo).Seq = seq & 0xffff
			seq++
			b, err := msg.Marshal(nil)
			if err != nil {
				continue
			}
			if _, err := p.c.WriteTo(b, &net.IPAddr{IP: p.dests[k].AsSlice()}); err == nil {
				p.sent.Add(1)
			}
		}
	}
}

func (p *Pings) receive() {
	buf := make([]byte, 1500)
	for {
		n, _, err := p.c.ReadFrom(buf)
		if err != nil {
			return
		}
		now := time.Since(p.start)
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		e, ok := m.Body.(*icmp.Echo)
		if !ok || e.ID != pingID || len(e.Data) < 16 || binary.BigEndian.Uint32(e.Data) != pingMagic {
			continue
		}
		k := int32(binary.BigEndian.Uint32(e.Data[4:]))
		at := time.Duration(binary.BigEndian.Uint64(e.Data[8:]))
		if k < 0 || int(k) >= len(p.dests) {
			continue
		}
		p.back.Add(1)
		p.mu.Lock()
		p.rtts = append(p.rtts, PingRTT{At: at, Dest: k, RTT: now - at})
		p.mu.Unlock()
	}
}

// Stop ends the echoes, waiting a second for the last replies.
func (p *Pings) Stop() {
	select {
	case <-p.stop:
		return
	default:
	}
	close(p.stop)
	time.Sleep(time.Second)
	p.c.Close()
	p.wg.Wait()
}

// RTTs returns the answered echoes so far.
func (p *Pings) RTTs() []PingRTT {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PingRTT(nil), p.rtts...)
}

// Lost is how many echoes got no reply (after Stop), of how many sent.
func (p *Pings) Lost() (lost, sent int64) {
	return p.sent.Load() - p.back.Load(), p.sent.Load()
}
