//go:build linux

package steerlab

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// Flows is the customer's traffic: a TCP connection to every destination
// exchanging a small message every 100 ms (each exchange's time is the RTT
// the customer sees), and UDP datagrams echoed by every destination (what
// does not come back is lost).
type Flows struct {
	mu      sync.Mutex
	rtts    []FlowRTT
	broken  atomic.Int64 // TCP connections that failed after being established
	udpSent atomic.Int64
	udpBack atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
}

// FlowRTT is one exchange: when and how long, to which destination.
// Failed: it got no answer within 5 s (its connection broke), and RTT is
// how long it waited.
type FlowRTT struct {
	At     time.Time
	Dest   netip.Addr
	RTT    time.Duration
	Failed bool
}

// StartFlows starts the traffic from ns to dests until Stop.
func StartFlows(tb testing.TB, ns *lab.NS, dests []netip.Addr) *Flows {
	f := &Flows{stop: make(chan struct{})}
	for _, d := range dests {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.tcp(ns, d) }()
	}
	for _, v6 := range []bool{false, true} {
		var ds []netip.Addr
		for _, d := range dests {
			if d.Is6() == v6 {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			continue
		}
		var c net.PacketConn
		network := map[bool]string{false: "udp4", true: "udp6"}[v6]
		if err := ns.Do(func() error {
			var err error
			c, err = net.ListenPacket(network, ":0")
			return err
		}); err != nil {
			tb.Fatal(err)
		}
		f.wg.Add(2)
		go func() { defer f.wg.Done(); f.udpSend(c, ds) }()
		go func() { defer f.wg.Done(); f.udpRecv(c) }()
	}
	return f
}

// StartBulk adds bulk traffic from ns: UDP datagrams of 1200 bytes to
// every destination's discard port at mbps each, until Stop. It is what
// fills a commit.
func (f *Flows) StartBulk(tb testing.TB, ns *lab.NS, dests []netip.Addr, mbps float64) {
	var c net.PacketConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp", ":0")
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	const size = 1200
	every := time.Duration(float64(time.Second) * size * 8 / (mbps * 1e6))
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer c.Close()
		buf := make([]byte, size)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-f.stop:
				return
			case <-t.C:
			}
			for _, d := range dests {
				c.WriteTo(buf, net.UDPAddrFromAddrPort(netip.AddrPortFrom(d, 9)))
			}
		}
	}()
}

// Stop ends the traffic, waiting a second for the last answers.
func (f *Flows) Stop() {
	close(f.stop)
	f.wg.Wait()
}

func (f *Flows) tcp(ns *lab.NS, d netip.Addr) {
	buf := make([]byte, 64)
	for {
		var c net.Conn
		err := ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp", netip.AddrPortFrom(d, echoPort).String(), 3*time.Second)
			return err
		})
		if err != nil {
			select {
			case <-f.stop:
				return
			case <-time.After(200 * time.Millisecond):
				continue
			}
		}
		t := time.NewTicker(100 * time.Millisecond)
		for ok := true; ok; {
			select {
			case <-f.stop:
				t.Stop()
				c.Close()
				return
			case <-t.C:
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			start := time.Now()
			_, err := c.Write(buf)
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			if err != nil {
				// What the customer waited before giving up counts: an
				// exchange that never came back is the worst of all, not
				// one left out.
				f.mu.Lock()
				f.rtts = append(f.rtts, FlowRTT{At: start, Dest: d, RTT: time.Since(start), Failed: true})
				f.mu.Unlock()
				ok = false
				break
			}
			f.mu.Lock()
			f.rtts = append(f.rtts, FlowRTT{At: start, Dest: d, RTT: time.Since(start)})
			f.mu.Unlock()
		}
		t.Stop()
		c.Close()
		f.broken.Add(1)
	}
}

func (f *Flows) udpSend(c net.PacketConn, ds []netip.Addr) {
	buf := make([]byte, 32)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for seq := uint64(0); ; seq++ {
		select {
		case <-f.stop:
			time.Sleep(time.Second) // the last answers
			c.Close()
			return
		case <-t.C:
		}
		binary.BigEndian.PutUint64(buf, seq)
		for _, d := range ds {
			if _, err := c.WriteTo(buf, net.UDPAddrFromAddrPort(netip.AddrPortFrom(d, echoPort))); err == nil {
				f.udpSent.Add(1)
			}
		}
	}
}

func (f *Flows) udpRecv(c net.PacketConn) {
	buf := make([]byte, 64)
	for {
		if _, _, err := c.ReadFrom(buf); err != nil {
			return
		}
		f.udpBack.Add(1)
	}
}

// RTTs returns the exchanges measured so far.
func (f *Flows) RTTs() []FlowRTT {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]FlowRTT(nil), f.rtts...)
}

// MeanRTT is the mean RTT of exchanges started in [from, to).
func (f *Flows) MeanRTT(from, to time.Time) (time.Duration, int) {
	var sum time.Duration
	n := 0
	for _, r := range f.RTTs() {
		if !r.At.Before(from) && r.At.Before(to) {
			sum += r.RTT
			n++
		}
	}
	if n == 0 {
		return 0, 0
	}
	return sum / time.Duration(n), n
}

// Broken is how many TCP connections broke; UDPLost how many datagrams
// never came back (after Stop).
func (f *Flows) Broken() int64 { return f.broken.Load() }

func (f *Flows) UDPLost() (lost, sent int64) {
	return f.udpSent.Load() - f.udpBack.Load(), f.udpSent.Load()
}
