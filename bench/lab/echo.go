//go:build linux

package lab

import (
	"fmt"
	"io"
	"net"
	"testing"
)

// Loopback is n's lo, to put host addresses on (AddAddr).
func (n *NS) Loopback(tb testing.TB) *Link {
	tb.Helper()
	l, err := n.h.LinkByName("lo")
	if err != nil {
		tb.Fatalf("lab: lo in %s: %v", n.Name, err)
	}
	return &Link{NS: n, Name: "lo", Index: l.Attrs().Index}
}

// ServeEcho runs, in n, a TCP and a UDP echo server on port for every
// address of the namespace, both families, until tb ends. The TCP server
// writes back what it reads at once, so each segment's ACK rides the answer
// and no delayed ACK inflates an RTT measured over it.
func (n *NS) ServeEcho(tb testing.TB, port int) {
	tb.Helper()
	var tl net.Listener
	var ul net.PacketConn
	err := n.Do(func() error {
		var err error
		if tl, err = net.Listen("tcp", fmt.Sprintf("[::]:%d", port)); err != nil {
			return err
		}
		ul, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
		return err
	})
	if err != nil {
		tb.Fatalf("lab: echo servers in %s: %v", n.Name, err)
	}
	tb.Cleanup(func() { tl.Close(); ul.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			k, from, err := ul.ReadFrom(buf)
			if err != nil {
				return
			}
			ul.WriteTo(buf[:k], from)
		}
	}()
}
