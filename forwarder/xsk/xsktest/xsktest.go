// Package xsktest opens AF_XDP ports the way pnapd does, for the
// forwarder's tests and the benchmark harness: a Umem shared by a worker's
// ports, and ports on queue 0 of an interface, each fed by a steering
// program of its own. It is for tests and bench only: pnapd never imports
// it, and everything it opens is closed at the test's cleanup.
package xsktest

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/pnap-project/pnap/forwarder/steering"
	"github.com/pnap-project/pnap/forwarder/xsk"
)

// NewUmem makes the frame memory of a worker serving ports ports, closed
// (with its ports) at tb's cleanup.
func NewUmem(tb testing.TB, ports int, opt xsk.Options) *xsk.Umem {
	tb.Helper()
	u, err := xsk.NewUmem(ports, opt)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { u.Close() })
	return u
}

// Open opens a port in u on queue 0 of interface name (ifindex) and
// attaches to the interface a new steering program that sends its transit
// traffic to the port, and traffic for locals, the box's own addresses, to
// the kernel. Call it in the interface's namespace. The attachment and the
// program are closed at tb's cleanup, before u's.
func Open(tb testing.TB, u *xsk.Umem, name string, ifindex int, locals ...netip.Addr) (*xsk.Port, error) {
	return OpenQueues(tb, []*xsk.Umem{u}, name, ifindex, locals...)
}

// OpenQueues is Open for an interface with one queue per UMEM: queue q's
// port is opened in umems[q], and the steering program spreads traffic
// over them by the queue it arrived on. It returns queue 0's port.
func OpenQueues(tb testing.TB, umems []*xsk.Umem, name string, ifindex int, locals ...netip.Addr) (*xsk.Port, error) {
	st, err := steering.New(steering.Options{Queues: len(umems)})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { st.Close() })
	for _, a := range locals {
		if err := st.AddLocal(a); err != nil {
			return nil, err
		}
	}
	var first *xsk.Port
	for q, u := range umems {
		p, err := u.Open(name, ifindex, q)
		if err != nil {
			return nil, err
		}
		if err := st.SetSocket(q, p.FD()); err != nil {
			return nil, err
		}
		if first == nil {
			first = p
		}
	}
	lk, err := link.AttachXDP(link.XDPOptions{Program: st.XDP, Interface: ifindex})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { lk.Close() })
	return first, nil
}

// AwaitCensus waits for frames in flight in the kernel to land in a ring
// (a completion comes once the peer consumed the frame), then fails tb
// unless every frame of u is in exactly one place and none is held.
func AwaitCensus(tb testing.TB, u *xsk.Umem) xsk.Census {
	tb.Helper()
	var c xsk.Census
	var err error
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err = u.Census()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || c.Held != 0 {
		tb.Fatalf("census %+v: %v", c, err)
	}
	return c
}
