//go:build linux

package emu

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// TestBothWays gives A and B addresses in one subnet and lets their kernels
// talk through the emulator, 5 ms each way: ARP and neighbour discovery
// cross it like any frame. Raw frames cross it unchanged both ways.
func TestBothWays(t *testing.T) {
	w := newWire(t)
	w.a.Sysctl(t, "net/ipv6/conf/va/disable_ipv6", "0")
	w.b.Sysctl(t, "net/ipv6/conf/vb/disable_ipv6", "0")
	w.la.AddAddr(t, "198.18.0.1/24", "2001:2::1/64")
	w.lb.AddAddr(t, "198.18.0.2/24", "2001:2::2/64")
	e := New(t, w.e, w.ea, w.eb, Params{Delay: 5 * time.Millisecond}, Params{Delay: 5 * time.Millisecond})

	for _, c := range []struct {
		from, to *lab.Link
		src, dst string
	}{
		{w.la, w.lb, "198.18.0.1:40000", "198.18.0.2:9"},
		{w.lb, w.la, "198.18.0.2:40000", "198.18.0.1:9"},
		{w.la, w.lb, "[2001:2::1]:40000", "[2001:2::2]:9"},
		{w.lb, w.la, "[2001:2::2]:40000", "[2001:2::1]:9"},
	} {
		cap := c.to.Capture(t)
		dst := netip.MustParseAddrPort(c.dst)
		payload := []byte("pnap emu " + c.src)
		start := time.Now()
		if err := c.from.NS.SendUDP(netip.MustParseAddrPort(c.src), dst, payload); err != nil {
			t.Fatal(err)
		}
		f, err := cap.NextMatch(3*time.Second, func(f []byte) bool { return bytes.Contains(f, payload) })
		if err != nil {
			t.Fatalf("%s -> %s: %v", c.src, c.dst, err)
		}
		// The first datagram waits for address resolution: a round trip.
		took := time.Since(start)
		t.Logf("%s -> %s: %d bytes after %v", c.src, c.dst, len(f), took.Round(100*time.Microsecond))
		if took < 5*time.Millisecond {
			t.Errorf("%s -> %s arrived after %v, before the 5 ms delay", c.src, c.dst, took)
		}
		if !bytes.Equal(f[0:6], c.to.MAC) || !bytes.Equal(f[6:12], c.from.MAC) {
			t.Errorf("%s -> %s: Ethernet %x -> %x, want %s -> %s", c.src, c.dst, f[6:12], f[0:6], c.from.MAC, c.to.MAC)
		}
		cap.Close()
	}

	for _, c := range []struct{ from, to *lab.Link }{{w.la, w.lb}, {w.lb, w.la}} {
		cap := c.to.Capture(t)
		f := append(append(append([]byte{}, c.to.MAC...), c.from.MAC...), 0x88, 0xb5)
		f = append(f, bytes.Repeat([]byte{0xa5, 0x5a}, 700)...)
		if err := c.from.SendFrame(f); err != nil {
			t.Fatal(err)
		}
		got, err := cap.NextMatch(3*time.Second, func(g []byte) bool { return len(g) > 14 && g[12] == 0x88 && g[13] == 0xb5 })
		if err != nil {
			t.Fatalf("%s -> %s: %v", c.from, c.to, err)
		}
		if !bytes.Equal(got, f) {
			t.Errorf("%s -> %s: frame changed:\n% x\nwant\n% x", c.from, c.to, got, f)
		}
		cap.Close()
	}
	st := e.Stats()
	t.Logf("stats %+v", st)
	for _, c := range []Counters{st.AB, st.BA} {
		if c.Forwarded < 4 || c.Failed > 0 || c.Lost > 0 || c.QueueFull > 0 {
			t.Errorf("counters %+v: want several forwarded, none dropped", c)
		}
	}
}

// TestOffloads runs TCP from A to B with A's checksum and segmentation
// offloads on: frames with partial checksums and 64 KiB TSO frames cross the
// emulator with their offload metadata (PACKET_VNET_HDR), as over a veth,
// and B's kernel accepts them.
func TestOffloads(t *testing.T) {
	w := newWire(t)
	w.la.AddAddr(t, "198.18.0.1/24")
	w.lb.AddAddr(t, "198.18.0.2/24")
	if err := w.la.SetTxChecksum(true); err != nil {
		t.Fatal(err)
	}
	e := New(t, w.e, w.ea, w.eb, Params{Delay: time.Millisecond}, Params{Delay: time.Millisecond})

	const size = 4 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var ln net.Listener
	if err := w.b.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", "198.18.0.2:7000")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	recv := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			recv <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		recv <- b
	}()
	var conn net.Conn
	if err := w.a.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", "198.18.0.2:7000", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(data); err != nil {
		t.Fatalf("%v; stats %+v", err, e.Stats())
	}
	conn.Close()
	got := <-recv
	st := e.Stats()
	t.Logf("stats %+v", st)
	if !bytes.Equal(got, data) {
		t.Fatalf("B got %d bytes, want the %d sent", len(got), len(data))
	}
	// Fewer frames than 1448-byte segments: the kernel sent TSO frames.
	if segs := uint64(size / 1448); st.AB.Forwarded >= segs {
		t.Logf("note: %d frames for %d segments: no TSO frames crossed", st.AB.Forwarded, segs)
	}
	if st.AB.Failed > 0 || st.BA.Failed > 0 {
		t.Errorf("failed frames: %+v", st)
	}
}

// TestQueueFull fills a 100-frame queue: the rest is dropped and counted,
// and reading never blocks.
func TestQueueFull(t *testing.T) {
	w := newWire(t)
	e, err := Start(w.e, w.ea, w.eb, Params{Delay: 300 * time.Millisecond}, Params{}, Options{QueueFrames: 100})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s := newSender(t, w.la, -1)
	if err := s.run(10_000, 1000); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	st := e.Stats().AB
	t.Logf("after 1000 frames in 100 ms: %+v", st)
	if st.Received != 1000 || st.QueueFull != 900 || st.Forwarded != 0 || st.Overrun > 0 {
		t.Errorf("stats %+v, want 1000 received, 900 dropped for a full queue, none forwarded yet", st)
	}
	time.Sleep(400 * time.Millisecond)
	if st := e.Stats().AB; st.Forwarded != 100 {
		t.Errorf("stats %+v, want the 100 queued forwarded", st)
	}
}

// TestRefuses checks that the emulator's namespace may not talk or route.
func TestRefuses(t *testing.T) {
	w := newWire(t)
	w.ea.AddAddr(t, "198.18.0.3/24")
	if _, err := Start(w.e, w.ea, w.eb, Params{}, Params{}, Options{}); err == nil || !strings.Contains(err.Error(), "198.18.0.3") {
		t.Errorf("Start with an address on %s: %v, want an error naming it", w.ea, err)
	}
	w2 := newWire(t)
	w2.e.Sysctl(t, "net/ipv4/ip_forward", "1")
	if _, err := Start(w2.e, w2.ea, w2.eb, Params{}, Params{}, Options{}); err == nil || !strings.Contains(err.Error(), "ip_forward") {
		t.Errorf("Start in a routing namespace: %v, want an error", err)
	}
	if _, err := Start(w2.e, w2.ea, w2.la, Params{}, Params{}, Options{}); err == nil {
		t.Error("Start with a link of another namespace succeeded")
	}
	if _, err := Start(w2.e, w2.ea, w2.eb, Params{Delay: -1}, Params{}, Options{}); err == nil {
		t.Error("Start with a negative delay succeeded")
	}
}

// TestClose checks that Close leaves nothing running or open, restores
// GOMAXPROCS, and that an idle emulator costs no CPU.
func TestClose(t *testing.T) {
	w := newWire(t)
	procs0 := runtime.GOMAXPROCS(0)
	fds0 := openFDs(t)
	g0 := runtime.NumGoroutine()

	e, err := Start(w.e, w.ea, w.eb, Params{Delay: 50 * time.Millisecond}, Params{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p := runtime.GOMAXPROCS(0); p != procs0+1 {
		t.Errorf("GOMAXPROCS %d while running, want %d", p, procs0+1)
	}
	// Idle: nothing queued, nothing arriving.
	cpu0, _ := schedstat(t, e.tid.Load())
	time.Sleep(500 * time.Millisecond)
	cpu1, _ := schedstat(t, e.tid.Load())
	idle := cpu1 - cpu0
	t.Logf("idle for 500 ms: %v of CPU", idle)
	if idle > 5*time.Millisecond {
		t.Errorf("idle emulator used %v of CPU in 500 ms, want (almost) none", idle)
	}
	// Frames still queued when it closes are dropped.
	s := newSender(t, w.la, -1)
	if err := s.run(10_000, 100); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	st := e.Stats()
	t.Logf("stats after Close: %+v", st)
	if st.AB.Received != 100 {
		t.Errorf("received %d frames, want 100", st.AB.Received)
	}
	s.p.close()
	if p := runtime.GOMAXPROCS(0); p != procs0 {
		t.Errorf("GOMAXPROCS %d after Close, want %d", p, procs0)
	}
	if fds := openFDs(t); fds != fds0 {
		t.Errorf("%d open files after Close, want %d as before Start", fds, fds0)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > g0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > g0 {
		t.Errorf("%d goroutines after Close, want %d as before Start", g, g0)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// schedstat returns the CPU time a thread of this process has used and how
// long it has waited for a CPU while runnable.
func schedstat(t *testing.T, tid int64) (cpu, wait time.Duration) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.FormatInt(tid, 10) + "/schedstat")
	if err != nil {
		t.Fatal(err)
	}
	var ns [2]int64
	for i, f := range strings.Fields(string(b))[:2] {
		if ns[i], err = strconv.ParseInt(f, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	return time.Duration(ns[0]), time.Duration(ns[1])
}
