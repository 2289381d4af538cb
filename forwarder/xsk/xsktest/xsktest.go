// Package xsktest opens an AF_XDP port the way pnapd does, for the
// forwarder's tests and the benchmark harness: a Port on queue 0 of an
// interface, fed by a steering program of its own. It is for tests and
// bench only: pnapd never imports it, and everything it opens is closed at
// the test's cleanup.
package xsktest

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf/link"
	"github.com/pnap-project/pnap/forwarder/steering"
	"github.com/pnap-project/pnap/forwarder/xsk"
)

// Open opens a port on queue 0 of interface name (ifindex) and attaches to
// the interface a new steering program that sends its transit traffic to
// the port, and traffic for locals, the box's own addresses, to the
// kernel. Call it in the interface's namespace. The port, the attachment
// and the program are closed at tb's cleanup, in that order.
func Open(tb testing.TB, name string, ifindex int, locals ...netip.Addr) (*xsk.Port, error) {
	st, err := steering.New(steering.Options{Queues: 1})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { st.Close() })
	for _, a := range locals {
		if err := st.AddLocal(a); err != nil {
			return nil, err
		}
	}
	lk, err := link.AttachXDP(link.XDPOptions{Program: st.XDP, Interface: ifindex})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { lk.Close() })
	p, err := xsk.Open(name, ifindex, 0, xsk.Options{})
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { p.Close() })
	if err := st.SetSocket(0, p.FD()); err != nil {
		return nil, err
	}
	return p, nil
}
