package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Session is a BGP session with one peer. Make it with NewSession, run it
// with Run; its other methods may be called from any goroutine at any time.
type Session struct {
	opt      Options
	families familySet
	open     [2][]byte // this speaker's OPEN without and with the Restart State bit

	running  atomic.Bool
	incoming chan net.Conn // connections from the Listener
	kick     chan struct{} // the announced set changed

	mu        sync.Mutex
	state     State
	stats     Stats
	est       *conn     // the Established connection
	estPeer   *peerInfo // its peer
	restarted bool      // no session has been Established yet
	desired   map[netip.Prefix]Route
	dirty     map[netip.Prefix]struct{} // changed in desired since last sent
}

// NewSession checks opt and makes a Session. It starts nothing.
func NewSession(opt Options) (*Session, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Session{
		opt:       opt,
		families:  opt.families(),
		incoming:  make(chan net.Conn, 1),
		kick:      make(chan struct{}, 1),
		restarted: true,
		desired:   map[netip.Prefix]Route{},
		dirty:     map[netip.Prefix]struct{}{},
	}
	for i, restarted := range []bool{false, true} {
		if s.open[i], err = opt.openMessage(restarted); err != nil {
			return nil, fmt.Errorf("bgp: peer %v: OPEN: %w", opt.PeerAddr, err)
		}
	}
	s.opt.Log = opt.Log.With("peer", opt.PeerAddr.String())
	return s, nil
}

// State is the session's state now.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.State = s.state
	return st
}

// Refresh asks the peer to send its routes of f again (ROUTE-REFRESH,
// RFC 2918). It fails unless the session is Established with f and the
// peer's route refresh capability.
func (s *Session) Refresh(f Family) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.est == nil:
		return fmt.Errorf("bgp: peer %v: route refresh: session is %v, not Established", s.opt.PeerAddr, s.state)
	case !s.estPeer.refresh:
		return fmt.Errorf("bgp: peer %v: route refresh: the peer did not advertise the capability", s.opt.PeerAddr)
	case !s.estPeer.families.has(f):
		return fmt.Errorf("bgp: peer %v: route refresh: %v is not negotiated", s.opt.PeerAddr, f)
	}
	s.est.send(routeRefreshMessage(f))
	return nil
}

// offer hands the session a connection the peer made; false if it is not
// running or already has one waiting.
func (s *Session) offer(nc net.Conn) bool {
	s.mu.Lock() // against Run's return: it drains incoming after clearing running
	defer s.mu.Unlock()
	if !s.running.Load() {
		return false
	}
	select {
	case s.incoming <- nc:
		return true
	default:
		return false
	}
}

// Run runs the session until ctx ends: it connects (unless Passive) and
// accepts the connections the Listener hands over, exchanges OPENs, then
// UPDATEs, and after any failure starts again, ConnectRetry later. When ctx
// ends it sends a Cease NOTIFICATION, closes the connection and returns nil,
// once every goroutine it started has ended. Run may be called again after
// it returned, not while it runs.
func (s *Session) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return fmt.Errorf("bgp: peer %v: Run called while the session runs", s.opt.PeerAddr)
	}
	r := &runner{s: s, retry: time.NewTimer(0)}
	defer func() {
		r.retry.Stop()
		s.mu.Lock()
		s.running.Store(false)
		s.mu.Unlock()
		for len(s.incoming) > 0 { // nothing is offered any more
			(<-s.incoming).Close()
		}
		r.wg.Wait()
	}()
	if s.opt.Passive {
		r.retry.Stop()
		r.transition(Active, ReasonNone, nil, nil)
	}
	for {
		var curFrames, altFrames <-chan *frame
		if r.cur != nil {
			curFrames = r.cur.frames
		}
		if r.alt != nil {
			altFrames = r.alt.frames
		}
		var retry <-chan time.Time
		if r.cur == nil && !s.opt.Passive {
			retry = r.retry.C
		}
		select {
		case <-ctx.Done():
			r.close()
			return nil
		case nc := <-s.incoming:
			r.accept(nc)
		case <-retry:
			r.connect(ctx)
		case f, ok := <-curFrames:
			r.handle(r.cur, f, ok)
		case f, ok := <-altFrames:
			r.handle(r.alt, f, ok)
		case <-s.kick:
			if r.cur != nil && r.cur.state == Established {
				r.sendChanges(false)
			}
		}
	}
}

// runner is the state of one Run, owned by its goroutine.
type runner struct {
	s        *Session
	cur, alt *conn // alt: a second connection while cur is in OpenSent (RFC 4271 6.8)
	retry    *time.Timer
	wg       sync.WaitGroup
	dec      *decoder
	enc      *encoder
	sent     map[netip.Prefix]Route // what the peer has from this speaker
}

// transition records and reports the session's move to state to.
func (r *runner) transition(to State, why Reason, err error, n *Notification) {
	r.event(StateEvent{To: to, Reason: why, Err: err, Notification: deref(n)})
}

func deref(n *Notification) Notification {
	if n == nil {
		return Notification{}
	}
	return *n
}

func (r *runner) event(ev StateEvent) {
	s := r.s
	s.mu.Lock()
	ev.From = s.state
	if ev.From == ev.To {
		s.mu.Unlock()
		return
	}
	s.state = ev.To
	if ev.Err != nil {
		s.stats.LastError = ev.Err.Error()
	}
	s.mu.Unlock()
	lvl := slog.LevelDebug
	if ev.To == Established || ev.From == Established {
		lvl = slog.LevelInfo
	}
	attrs := []any{"from", ev.From.String(), "to", ev.To.String()}
	if ev.Reason != ReasonNone {
		attrs = append(attrs, "reason", ev.Reason.String())
	}
	if ev.Err != nil {
		attrs = append(attrs, "err", ev.Err.Error())
	}
	if ev.Notification.Code != 0 {
		attrs = append(attrs, "notification", ev.Notification.String())
	}
	if ev.KeepStale {
		attrs = append(attrs, "keep_stale", ev.PeerGR.Time.String())
	}
	s.opt.Log.Log(context.Background(), lvl, "bgp session", attrs...)
	if s.opt.OnState != nil {
		s.opt.OnState(ev)
	}
}

// connect dials the peer (on Run's goroutine, so that the socket is made in
// the network namespace Run was started in).
func (r *runner) connect(ctx context.Context) {
	s := r.s
	r.transition(Connect, ReasonNone, nil, nil)
	nc, err := s.dial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return // Run's loop sees ctx and closes
		}
		r.transition(Active, ReasonTCPError, fmt.Errorf("connect to %v: %w", s.opt.PeerAddr, err), nil)
		r.retry.Reset(s.opt.ConnectRetry)
		return
	}
	r.cur = newConn(nc, false, &r.wg)
	r.start(r.cur)
	r.transition(OpenSent, ReasonNone, nil, nil)
}

// dial makes a TCP connection to the peer, signed when a password is set.
// It gives up after ConnectRetry, within [2s, 10s]: while it dials, the
// session's goroutine serves nothing else (a connection from the peer
// waits).
func (s *Session) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: min(max(s.opt.ConnectRetry, 2*time.Second), 10*time.Second)}
	if s.opt.LocalAddr.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(s.opt.LocalAddr, 0))
	}
	if s.opt.Password != "" {
		d.Control = md5Control(map[netip.Addr]string{s.opt.PeerAddr: s.opt.Password})
	}
	return d.DialContext(ctx, "tcp", netip.AddrPortFrom(s.opt.PeerAddr, uint16(s.opt.PeerPort)).String())
}

// start sends this speaker's OPEN on c: OpenSent. The caller reports the
// transition.
func (r *runner) start(c *conn) {
	s := r.s
	s.mu.Lock()
	restarted := s.restarted
	s.mu.Unlock()
	open := s.open[0]
	if restarted {
		open = s.open[1]
	}
	c.send(open)
	c.state = OpenSent
}

// accept takes a connection the peer made (RFC 4271 6.8 for collisions).
func (r *runner) accept(nc net.Conn) {
	c := newConn(nc, true, &r.wg)
	switch {
	case r.cur == nil:
		r.cur = c
		r.start(c)
		r.transition(OpenSent, ReasonNone, nil, nil)
	case r.cur.state == Established:
		if !r.cur.peer.gr.Advertised {
			c.shutdown(&Notification{Code: bgp.BGP_ERROR_CEASE, Subcode: bgp.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION})
			r.s.opt.Log.Info("bgp: refused a second connection while Established", "remote", c.remote.String())
			return
		}
		// RFC 4724 4.2: a restarting peer's new connection replaces the old
		// one, whose routes are kept as stale.
		r.start(c)
		r.alt = c
		r.fail(r.cur, ReasonPeerReconnected, errors.New("the peer connected again"), nil)
	default:
		if r.alt != nil {
			r.alt.abort()
		}
		r.alt = c
		r.start(c)
		r.resolveCollision()
	}
}

// resolveCollision keeps one of cur and alt once the peer's BGP Identifier
// is known (RFC 4271 6.8): the connection the peer made if this speaker's
// identifier is the lower, else the one this speaker made; of two the peer
// made, the newer.
func (r *runner) resolveCollision() {
	if r.cur == nil || r.alt == nil {
		return
	}
	p := r.cur.peer
	if p == nil {
		p = r.alt.peer
	}
	if p == nil {
		return
	}
	keep := r.alt
	if r.cur.incoming != r.alt.incoming {
		local, remote := r.s.opt.RouterID.As4(), p.id.As4()
		peerWins := slices.Compare(local[:], remote[:]) < 0
		if r.cur.incoming == peerWins {
			keep = r.cur
		}
	}
	lose := r.cur
	if keep == r.cur {
		lose = r.alt
	}
	r.alt = nil
	r.cur = keep
	lose.shutdown(&Notification{Code: bgp.BGP_ERROR_CEASE, Subcode: bgp.BGP_ERROR_SUB_CONNECTION_COLLISION_RESOLUTION})
	r.s.opt.Log.Info("bgp: connection collision", "kept", keep.remote.String(), "kept_incoming", keep.incoming)
	r.transition(keep.state, ReasonNone, nil, nil)
}

// handle processes one message from c, or c's end.
func (r *runner) handle(c *conn, f *frame, ok bool) {
	if !ok {
		why, n, err := c.readFailure()
		r.fail(c, why, err, n)
		return
	}
	defer func() { c.free <- f }()
	body := f.body()
	switch f.typ {
	case msgNotification:
		n := Notification{Code: body[0], Subcode: body[1], Data: slices.Clone(body[2:])}
		r.fail(c, ReasonNotificationReceived, fmt.Errorf("NOTIFICATION received: %v", n), &n)
		return
	case msgOpen:
		if c.state == OpenSent {
			r.onOpen(c, body)
			return
		}
	case msgKeepalive:
		switch c.state {
		case OpenConfirm:
			r.establish(c)
			return
		case Established:
			return
		}
	case msgUpdate:
		if c.state == Established {
			r.onUpdate(c, body)
			return
		}
	case msgRouteRefresh:
		if c.state == Established {
			r.onRouteRefresh(body)
			return
		}
	}
	// RFC 6608: unexpected message in OpenSent, OpenConfirm or Established.
	sub := map[State]uint8{
		OpenSent:    bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENSENT_STATE,
		OpenConfirm: bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_OPENCONFIRM_STATE,
		Established: bgp.BGP_ERROR_SUB_RECEIVE_UNEXPECTED_MESSAGE_IN_ESTABLISHED_STATE,
	}[c.state]
	r.failNotify(c, notifyf(bgp.BGP_ERROR_FSM_ERROR, sub, nil, "message type %d in %v", f.typ, c.state))
}

// failNotify ends c with the NOTIFICATION of e.
func (r *runner) failNotify(c *conn, e *notifyError) {
	r.fail(c, ReasonNotificationSent, e, &e.n)
}

// onOpen handles the peer's OPEN: OpenConfirm.
func (r *runner) onOpen(c *conn, body []byte) {
	p, err := r.s.opt.checkOpen(body)
	if err != nil {
		var ne *notifyError
		errors.As(err, &ne)
		r.failNotify(c, ne)
		return
	}
	c.peer = p
	c.setHold(p.hold)
	c.send(keepaliveMessage)
	c.state = OpenConfirm
	if c == r.cur {
		r.transition(OpenConfirm, ReasonNone, nil, nil)
	}
	r.resolveCollision()
}

// establish moves c, the peer's KEEPALIVE received in OpenConfirm, to
// Established and sends it this speaker's routes.
func (r *runner) establish(c *conn) {
	s := r.s
	if c != r.cur { // cannot happen: collisions are resolved in OpenConfirm
		c.abort()
		r.alt = nil
		return
	}
	p := c.peer
	r.dec = newDecoder(p.families, !s.opt.internal(), p.as4, c.local.Addr())
	r.enc = &encoder{localAS: s.opt.LocalAS, external: !s.opt.internal(), peerAS4: p.as4}
	r.sent = map[netip.Prefix]Route{}
	s.mu.Lock()
	s.est, s.estPeer, s.restarted = c, p, false
	s.stats.EstablishedSince = time.Now()
	s.stats.HoldTime = p.hold
	s.stats.Families = slices.Collect(p.families.each)
	s.mu.Unlock()
	c.state = Established
	r.event(StateEvent{To: Established, PeerGR: p.gr})
	r.sendChanges(true)
	for f := range p.families.each {
		c.send(endOfRIB(f))
		r.countOut(1)
	}
}

// fail ends c for why. When c was the session's connection, the session
// moves on: to alt if there is one, else to Active (retrying later).
func (r *runner) fail(c *conn, why Reason, err error, n *Notification) {
	s := r.s
	if why == ReasonNotificationSent || why == ReasonHoldTimerExpired || why == ReasonClosed {
		c.shutdown(n)
	} else {
		c.abort()
	}
	if c == r.alt {
		r.alt = nil
		s.opt.Log.Debug("bgp: second connection ended", "reason", why.String(), "err", err)
		return
	}
	if c != r.cur {
		return
	}
	r.cur, r.alt = r.alt, nil
	ev := StateEvent{To: Active, Reason: why, Err: err, Notification: deref(n)}
	if c.state == Established {
		ev.PeerGR = c.peer.gr
		switch why {
		case ReasonTCPError, ReasonHoldTimerExpired, ReasonPeerReconnected:
			ev.KeepStale = c.peer.gr.Advertised
		}
		r.dec, r.enc, r.sent = nil, nil, nil
		s.mu.Lock()
		s.est, s.estPeer = nil, nil
		s.stats.Flaps++
		s.stats.EstablishedSince, s.stats.HoldTime, s.stats.Families = time.Time{}, 0, nil
		s.stats.IPv4.Announced, s.stats.IPv6.Announced = 0, 0
		s.mu.Unlock()
	}
	switch {
	case why == ReasonClosed:
		ev.To = Idle
	case r.cur != nil:
		ev.To = r.cur.state
	default:
		r.retry.Reset(s.opt.ConnectRetry)
	}
	r.event(ev)
}

// close ends the session for Run's return: Cease, Administrative Shutdown
// (RFC 4486 3).
func (r *runner) close() {
	n := &Notification{Code: bgp.BGP_ERROR_CEASE, Subcode: bgp.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN}
	if r.alt != nil {
		r.fail(r.alt, ReasonClosed, nil, n)
	}
	if r.cur != nil {
		r.fail(r.cur, ReasonClosed, errors.New("closed"), n)
	}
	r.transition(Idle, ReasonClosed, nil, nil)
}

// onUpdate decodes an UPDATE and hands its changes on.
func (r *runner) onUpdate(c *conn, body []byte) {
	s := r.s
	u, err := r.dec.decode(body)
	if err != nil {
		var ne *notifyError
		errors.As(err, &ne)
		s.mu.Lock()
		s.stats.UpdatesIn++
		s.mu.Unlock()
		r.failNotify(c, ne)
		return
	}
	s.mu.Lock()
	s.stats.UpdatesIn++
	if u.withdrawn != nil {
		s.stats.TreatedAsWithdraw++
	}
	if u.discarded != nil {
		s.stats.AttributesDiscarded++
	}
	for _, ch := range u.changes {
		fs := s.stats.family(familyOf(ch.Prefix.Addr()))
		if ch.Withdraw {
			fs.Withdrawn++
		} else {
			fs.Received++
		}
	}
	s.mu.Unlock()
	if u.withdrawn != nil {
		s.opt.Log.Warn("bgp: UPDATE treated as withdraw (RFC 7606)", "err", u.withdrawn.Error(), "prefixes", len(u.changes))
	}
	if u.discarded != nil {
		s.opt.Log.Warn("bgp: UPDATE attributes discarded (RFC 7606)", "err", u.discarded.Error())
	}
	if u.ignored > 0 {
		s.opt.Log.Debug("bgp: UPDATE parts of families not negotiated ignored", "count", u.ignored)
	}
	if len(u.changes) > 0 && s.opt.OnChanges != nil {
		s.opt.OnChanges(u.changes)
	}
	if u.eor != 0 && s.opt.OnEndOfRIB != nil {
		s.opt.OnEndOfRIB(u.eor)
	}
}

// onRouteRefresh answers a ROUTE-REFRESH: everything announced of its
// family again (RFC 2918 4). Families not negotiated are ignored.
func (r *runner) onRouteRefresh(body []byte) {
	f, ok := afiSAFI(uint16(body[0])<<8|uint16(body[1]), body[3])
	if !ok || !r.cur.peer.families.has(f) {
		r.s.opt.Log.Debug("bgp: ROUTE-REFRESH for a family not negotiated ignored")
		return
	}
	byKey := map[attrKey][]netip.Prefix{}
	for p, rt := range r.sent {
		if familyOf(p.Addr()) == f {
			k := keyOf(rt)
			byKey[k] = append(byKey[k], p)
		}
	}
	r.sendAnnouncements(f, byKey)
}

func (r *runner) countOut(n int) {
	r.s.mu.Lock()
	r.s.stats.UpdatesOut += uint64(n)
	r.s.mu.Unlock()
}
