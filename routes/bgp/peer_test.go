package bgp

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// testPeer is the other end of a session in unit tests: a BGP speaker made
// of GoBGP's codec and nothing else, driven step by step by the test.
type testPeer struct {
	t   testing.TB
	ln  *net.TCPListener
	c   net.Conn
	as  uint32
	id  netip.Addr
	opt *bgp.MarshallingOption // how to decode what the session sends
}

const testTimeout = 10 * time.Second

// newTestPeer listens on 127.0.0.1, a port of its own.
func newTestPeer(t testing.TB, as uint32, id string) *testPeer {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPeer{t: t, ln: ln, as: as, id: netip.MustParseAddr(id), opt: &bgp.MarshallingOption{}}
	t.Cleanup(func() {
		ln.Close()
		if p.c != nil {
			p.c.Close()
		}
	})
	return p
}

func (p *testPeer) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// accept takes the session's connection.
func (p *testPeer) accept() {
	p.t.Helper()
	p.ln.SetDeadline(time.Now().Add(testTimeout))
	c, err := p.ln.Accept()
	if err != nil {
		p.t.Fatalf("peer: accept: %v", err)
	}
	if p.c != nil {
		p.c.Close()
	}
	p.c = c
}

// recv reads one message.
func (p *testPeer) recv() *bgp.BGPMessage {
	p.t.Helper()
	m, err := p.tryRecv(testTimeout)
	if err != nil {
		p.t.Fatalf("peer: receive: %v", err)
	}
	return m
}

func (p *testPeer) tryRecv(timeout time.Duration) (*bgp.BGPMessage, error) {
	p.c.SetReadDeadline(time.Now().Add(timeout))
	hdr := make([]byte, headerLen)
	if _, err := io.ReadFull(p.c, hdr); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:]))
	if n < headerLen {
		return nil, errors.New("bad length")
	}
	b := make([]byte, n)
	copy(b, hdr)
	if _, err := io.ReadFull(p.c, b[headerLen:]); err != nil {
		return nil, err
	}
	return bgp.ParseBGPMessage(b, p.opt)
}

// recvType reads messages, skipping KEEPALIVEs, until one of type typ.
func (p *testPeer) recvType(typ uint8) *bgp.BGPMessage {
	p.t.Helper()
	for {
		m := p.recv()
		if m.Header.Type == typ {
			return m
		}
		if m.Header.Type != msgKeepalive {
			p.t.Fatalf("peer: got message type %d (%+v), want %d", m.Header.Type, m.Body, typ)
		}
	}
}

// recvUpdates reads UPDATEs, skipping KEEPALIVEs, until the End-of-RIB of
// every family in eors, and returns the others.
func (p *testPeer) recvUpdates(eors ...Family) []*bgp.BGPUpdate {
	p.t.Helper()
	var out []*bgp.BGPUpdate
	for len(eors) > 0 {
		u := p.recvType(msgUpdate).Body.(*bgp.BGPUpdate)
		if ok, f := u.IsEndOfRib(); ok {
			eors = slices.DeleteFunc(eors, func(e Family) bool { return gobgpFamily(e) == f })
			continue
		}
		out = append(out, u)
	}
	return out
}

func (p *testPeer) send(m *bgp.BGPMessage) {
	p.t.Helper()
	b, err := m.Serialize(p.opt)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(b)
}

func (p *testPeer) sendRaw(b []byte) {
	p.t.Helper()
	p.c.SetWriteDeadline(time.Now().Add(testTimeout))
	if _, err := p.c.Write(b); err != nil {
		p.t.Fatalf("peer: send: %v", err)
	}
}

// sendUpdate sends an UPDATE whose body is b.
func (p *testPeer) sendUpdate(b []byte) {
	p.t.Helper()
	msg := make([]byte, headerLen, headerLen+len(b))
	for i := range 16 {
		msg[i] = 0xff
	}
	binary.BigEndian.PutUint16(msg[16:], uint16(headerLen+len(b)))
	msg[18] = msgUpdate
	p.sendRaw(append(msg, b...))
}

// caps are a full-featured peer's capabilities: both unicast families,
// route refresh, 4-octet AS, graceful restart (120s, IPv4 preserved).
func (p *testPeer) caps() []bgp.ParameterCapabilityInterface {
	return []bgp.ParameterCapabilityInterface{
		bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC), bgp.NewCapMultiProtocol(bgp.RF_IPv6_UC),
		bgp.NewCapRouteRefresh(), bgp.NewCapFourOctetASNumber(p.as),
		bgp.NewCapGracefulRestart(false, false, 120, []*bgp.CapGracefulRestartTuple{bgp.NewCapGracefulRestartTuple(bgp.RF_IPv4_UC, true)}),
	}
}

func (p *testPeer) open(hold uint16, caps []bgp.ParameterCapabilityInterface) *bgp.BGPMessage {
	p.t.Helper()
	as := uint16(bgp.AS_TRANS)
	if p.as <= 0xffff {
		as = uint16(p.as)
	}
	m, err := bgp.NewBGPOpenMessage(as, hold, p.id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		p.t.Fatal(err)
	}
	return m
}

// handshake accepts the session's connection and brings it to
// Established: it returns the session's OPEN.
func (p *testPeer) handshake(hold uint16, caps []bgp.ParameterCapabilityInterface) *bgp.BGPOpen {
	p.t.Helper()
	p.accept()
	return p.exchangeOpens(hold, caps)
}

func (p *testPeer) exchangeOpens(hold uint16, caps []bgp.ParameterCapabilityInterface) *bgp.BGPOpen {
	p.t.Helper()
	open := p.recvType(msgOpen).Body.(*bgp.BGPOpen)
	p.send(p.open(hold, caps))
	p.send(bgp.NewBGPKeepAliveMessage())
	p.recvType(msgKeepalive)
	as4 := slices.ContainsFunc(caps, func(c bgp.ParameterCapabilityInterface) bool { return c.Code() == bgp.BGP_CAP_FOUR_OCTET_AS_NUMBER })
	p.opt.Use2ByteAS = !as4
	return open
}

// expectNotification reads until a NOTIFICATION, skipping UPDATEs and
// KEEPALIVEs, and checks its code.
func (p *testPeer) expectNotification(code, sub uint8) {
	p.t.Helper()
	n := p.recvNotification()
	if n.ErrorCode != code || n.ErrorSubcode != sub {
		p.t.Fatalf("peer: NOTIFICATION %d/%d, want %d/%d", n.ErrorCode, n.ErrorSubcode, code, sub)
	}
}

func (p *testPeer) recvNotification() *bgp.BGPNotification {
	p.t.Helper()
	for {
		m := p.recv()
		switch m.Header.Type {
		case msgNotification:
			return m.Body.(*bgp.BGPNotification)
		case msgKeepalive, msgUpdate:
		default:
			p.t.Fatalf("peer: got message type %d (%+v), want a NOTIFICATION", m.Header.Type, m.Body)
		}
	}
}

// recorder collects what a session reports.
type recorder struct {
	changes chan Change
	eors    chan Family
	events  chan StateEvent
}

func newRecorder() *recorder {
	return &recorder{changes: make(chan Change, 100000), eors: make(chan Family, 100), events: make(chan StateEvent, 1000)}
}

func (r *recorder) hook(o *Options) {
	o.OnChanges = func(ch []Change) {
		for _, c := range ch {
			c.Communities = slices.Clone(c.Communities)
			r.changes <- c
		}
	}
	o.OnEndOfRIB = func(f Family) { r.eors <- f }
	o.OnState = func(ev StateEvent) { r.events <- ev }
}

// waitState returns the first event into state to.
func (r *recorder) waitState(t testing.TB, to State) StateEvent {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case ev := <-r.events:
			if ev.To == to {
				return ev
			}
		case <-deadline:
			t.Fatalf("no transition to %v in %v", to, testTimeout)
		}
	}
}

func (r *recorder) takeChanges(t testing.TB, n int) []Change {
	t.Helper()
	out := make([]Change, 0, n)
	deadline := time.After(testTimeout)
	for len(out) < n {
		select {
		case c := <-r.changes:
			out = append(out, c)
		case <-deadline:
			t.Fatalf("%d changes, want %d: %+v", len(out), n, out)
		}
	}
	return out
}

func (r *recorder) waitEOR(t testing.TB, f Family) {
	t.Helper()
	select {
	case got := <-r.eors:
		if got != f {
			t.Fatalf("End-of-RIB %v, want %v", got, f)
		}
	case <-time.After(testTimeout):
		t.Fatalf("no End-of-RIB for %v", f)
	}
}

// noChanges checks that nothing more arrives for a moment.
func (r *recorder) noChanges(t testing.TB) {
	t.Helper()
	select {
	case c := <-r.changes:
		t.Fatalf("unexpected change %+v", c)
	case <-time.After(100 * time.Millisecond):
	}
}

// testOptions are a session's options towards p: eBGP 64500 -> p.as.
func testOptions(p *testPeer) Options {
	return Options{
		LocalAS:      64500,
		RouterID:     netip.MustParseAddr("192.0.2.1"),
		PeerAS:       p.as,
		PeerAddr:     netip.MustParseAddr("127.0.0.1"),
		PeerPort:     p.port(),
		ConnectRetry: 50 * time.Millisecond,
		RestartTime:  90 * time.Second,
	}
}

// run starts s.Run until the test ends.
func run(t testing.TB, s *Session) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("Run did not return")
		}
	})
}

// newTestSession makes a session with opt, recorded by a new recorder,
// and runs it.
func newTestSession(t testing.TB, opt Options) (*Session, *recorder) {
	t.Helper()
	r := newRecorder()
	r.hook(&opt)
	s, err := NewSession(opt)
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	return s, r
}
