package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Listener accepts BGP connections and hands each to the Session whose
// PeerAddr it comes from; it closes connections from anyone else.
type Listener struct {
	ln       net.Listener
	sessions map[netip.Addr]*Session
	log      *slog.Logger
	done     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
}

// Listen listens on addr (port 0 picks one; an unspecified IPv6 address
// takes IPv4 peers too) for the peers of sessions, with their TCP MD5
// passwords installed on the listening socket. The socket belongs to the
// network namespace of the calling thread. Sessions must be running (Run)
// to take a connection; until then it is closed.
func Listen(addr netip.AddrPort, sessions []*Session) (*Listener, error) {
	l := &Listener{sessions: map[netip.Addr]*Session{}, log: slog.New(slog.DiscardHandler), done: make(chan struct{})}
	keys := map[netip.Addr]string{}
	network := "tcp"
	if addr.Addr().Is4() {
		network = "tcp4"
	} else if !addr.Addr().IsUnspecified() {
		network = "tcp6"
	}
	for i, s := range sessions {
		if s == nil {
			return nil, fmt.Errorf("bgp: listen on %v: session %d is nil", addr, i)
		}
		p := s.opt.PeerAddr
		if _, dup := l.sessions[p]; dup {
			return nil, fmt.Errorf("bgp: listen on %v: two sessions with peer %v", addr, p)
		}
		l.sessions[p] = s
		if i == 0 {
			l.log = s.opt.Log
		}
		if s.opt.Password != "" && (network == "tcp" || p.Is4() == (network == "tcp4")) {
			keys[p] = s.opt.Password
		}
	}
	lc := net.ListenConfig{}
	if len(keys) > 0 {
		lc.Control = md5Control(keys)
	}
	ln, err := lc.Listen(context.Background(), network, addr.String())
	if err != nil {
		return nil, fmt.Errorf("bgp: listen on %v: %w", addr, err)
	}
	l.ln = ln
	l.wg.Go(l.serve)
	return l, nil
}

// Addr is the address listened on.
func (l *Listener) Addr() netip.AddrPort { return addrPort(l.ln.Addr()) }

// Close stops listening; connections already handed over are the
// sessions'.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.wg.Wait()
	})
	return err
}

func (l *Listener) serve() {
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait a little rather than spin.
			l.log.Warn("bgp: accept", "err", err)
			select {
			case <-l.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		remote := addrPort(nc.RemoteAddr()).Addr()
		s := l.sessions[remote]
		if s == nil {
			l.log.Warn("bgp: connection from an unknown peer refused", "remote", remote.String())
			nc.Close()
			continue
		}
		if !s.offer(nc) {
			s.opt.Log.Info("bgp: incoming connection refused: session not running or busy")
			nc.Close()
		}
	}
}
