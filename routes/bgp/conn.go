package bgp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

const (
	// framesInFlight is how many read messages a connection's reader may
	// hold ahead of the session goroutine, to overlap reading with
	// decoding. A full feed (1.06 M prefixes in 1855 UPDATEs) over loopback
	// was decoded in ~40 ms with 1, ~33 ms with 4, ~31 ms with 16 (median
	// of 5 runs each, this package's test peer as sender): 4 frames, 16 KiB.
	framesInFlight = 4
	// linger bounds how long a connection closed after a NOTIFICATION
	// waits for the peer to close its side, reading and discarding: closing
	// a socket with unread data makes the kernel send a reset, which can
	// destroy the NOTIFICATION before the peer reads it.
	linger = time.Second
	// openHoldTime is the hold timer while waiting for the peer's OPEN
	// (RFC 4271 8.2.2: "a large value", 4 minutes suggested).
	openHoldTime = 4 * time.Minute
	// minWriteTimeout bounds one write when the hold time is 0 or short: a
	// peer that reads nothing for this long is gone.
	minWriteTimeout = 30 * time.Second
)

// frame is one message as read: its type and its body (after the header).
type frame struct {
	typ uint8
	n   int
	buf [maxMessage - headerLen]byte
}

func (f *frame) body() []byte { return f.buf[:f.n] }

// conn is one TCP connection to the peer. A reader goroutine hands its
// messages, checked against RFC 4271 6.1, to the session goroutine through
// frames; a writer goroutine sends what the session queues, and keepalives.
// Only the session goroutine uses the FSM fields.
type conn struct {
	nc            net.Conn
	incoming      bool // the peer connected (through the Listener)
	local, remote netip.AddrPort

	frames  chan *frame // closed when the reader stops; readErr says why
	free    chan *frame
	readErr error
	rdone   chan struct{} // the reader has stopped
	hold    atomic.Int64  // hold time (ns) the reader waits for a message; 0: forever

	wmu       sync.Mutex
	queue     [][]byte
	keepalive time.Duration
	closing   bool
	wake      chan struct{}

	done      chan struct{} // closed by shutdown or abort
	closeOnce sync.Once

	// FSM state, session goroutine only.
	state State
	peer  *peerInfo // from the peer's OPEN, once received
}

// newConn starts the reader and writer of nc; wg tracks them.
func newConn(nc net.Conn, incoming bool, wg *sync.WaitGroup) *conn {
	c := &conn{
		nc:       nc,
		incoming: incoming,
		local:    addrPort(nc.LocalAddr()),
		remote:   addrPort(nc.RemoteAddr()),
		frames:   make(chan *frame, framesInFlight),
		free:     make(chan *frame, framesInFlight),
		rdone:    make(chan struct{}),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	for range framesInFlight {
		c.free <- new(frame)
	}
	c.hold.Store(int64(openHoldTime))
	wg.Go(c.read)
	wg.Go(c.write)
	return c
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// send queues messages for the writer.
func (c *conn) send(msgs ...[]byte) {
	c.wmu.Lock()
	if !c.closing {
		c.queue = append(c.queue, msgs...)
	}
	c.wmu.Unlock()
	c.poke()
}

func (c *conn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// setHold sets the hold time: the reader's limit on the wait for a message,
// and a third of it between the writer's keepalives (RFC 4271 4.4, 10).
// It applies to the read under way too.
func (c *conn) setHold(d time.Duration) {
	c.hold.Store(int64(d))
	c.nc.SetReadDeadline(deadline(d))
	c.wmu.Lock()
	c.keepalive = d / 3
	c.wmu.Unlock()
	c.poke()
}

// shutdown sends n (if not nil) after what is queued, then closes the
// connection, lingering for the peer to read it; it does not wait.
func (c *conn) shutdown(n *Notification) {
	c.wmu.Lock()
	if !c.closing {
		if n != nil {
			c.queue = append(c.queue, notificationMessage(*n))
		}
		c.closing = true
	}
	c.wmu.Unlock()
	c.poke()
	c.closeOnce.Do(func() { close(c.done) })
}

// abort closes the connection now, dropping what is queued.
func (c *conn) abort() {
	c.wmu.Lock()
	c.closing = true
	c.queue = nil
	c.wmu.Unlock()
	c.closeOnce.Do(func() { close(c.done) })
	c.nc.Close()
	c.poke()
}

// read is the reader goroutine.
func (c *conn) read() {
	defer close(c.rdone)
	defer close(c.frames)
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var hdr [headerLen]byte
	for {
		var f *frame
		select {
		case f = <-c.free:
		case <-c.done:
			drain(c.nc, br)
			return
		}
		// The hold timer restarts with each message (RFC 4271 10). Check
		// the hold time again after setting the deadline: setHold may have
		// changed it in between, and the deadline set last wins.
		for h := c.hold.Load(); ; {
			c.nc.SetReadDeadline(deadline(time.Duration(h)))
			if h2 := c.hold.Load(); h2 != h {
				h = h2
				continue
			}
			break
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.readErr = err
			return
		}
		typ, n, err := checkHeader(&hdr)
		if err != nil {
			c.readErr = err
			return
		}
		f.typ, f.n = typ, n
		if _, err := io.ReadFull(br, f.buf[:n]); err != nil {
			c.readErr = err
			return
		}
		select {
		case c.frames <- f:
		case <-c.done:
			drain(c.nc, br)
			return
		}
	}
}

// deadline is a read deadline d from now; none when d is 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// drain reads and discards until the peer closes or linger passes.
func drain(nc net.Conn, br *bufio.Reader) {
	nc.SetReadDeadline(time.Now().Add(linger))
	io.Copy(io.Discard, br)
}

// write is the writer goroutine.
func (c *conn) write() {
	defer c.nc.Close()
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	var (
		ticker   *time.Ticker
		tick     <-chan time.Time
		interval time.Duration
		spare    [][]byte
	)
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		c.wmu.Lock()
		q, closing, ka := c.queue, c.closing, c.keepalive
		c.queue = spare[:0]
		c.wmu.Unlock()
		if ka != interval {
			interval = ka
			if ticker != nil {
				ticker.Stop()
				ticker, tick = nil, nil
			}
			if ka > 0 {
				ticker = time.NewTicker(ka)
				tick = ticker.C
			}
		}
		if len(q) > 0 {
			if err := c.flush(bw, q); err != nil {
				return
			}
			clear(q)
		}
		spare = q
		if closing {
			c.lingerClose()
			return
		}
		select {
		case <-c.wake:
		case <-tick:
			if err := c.flush(bw, [][]byte{keepaliveMessage}); err != nil {
				return
			}
		}
	}
}

// flush writes msgs within the write timeout.
func (c *conn) flush(bw *bufio.Writer, msgs [][]byte) error {
	timeout := max(time.Duration(c.hold.Load()), minWriteTimeout)
	c.nc.SetWriteDeadline(time.Now().Add(timeout))
	for _, m := range msgs {
		if _, err := bw.Write(m); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// lingerClose half-closes the connection and waits, at most linger, for
// the reader to see the peer close its side.
func (c *conn) lingerClose() {
	if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	}
	select {
	case <-c.rdone:
	case <-time.After(linger):
	}
}

// readFailure classifies the reader's error.
func (c *conn) readFailure() (Reason, *Notification, error) {
	err := c.readErr
	var ne *notifyError
	switch {
	case errors.As(err, &ne):
		return ReasonNotificationSent, &ne.n, err
	case errors.Is(err, os.ErrDeadlineExceeded):
		n := Notification{Code: bgp.BGP_ERROR_HOLD_TIMER_EXPIRED}
		return ReasonHoldTimerExpired, &n, errors.New("hold timer expired")
	case err == nil:
		err = io.EOF
	}
	return ReasonTCPError, nil, err
}
