//go:build linux

package bgpbench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// speaker is the flapping peer: a BGP speaker made of GoBGP's message
// codec and nothing else, so that it can push UPDATEs faster than any
// receiver takes them. It listens in a lab namespace; each receiver
// connects to it (one at a time), and it replays pre-encoded UPDATEs that
// withdraw and re-announce a fixed set of IPv4 prefixes, paced or as fast
// as the receiver reads.
type speaker struct {
	as       uint32
	id       netip.Addr
	prefixes []netip.Prefix
	ln       net.Listener

	mu       sync.Mutex
	sessions map[netip.Addr]*speakerSession // by the receiver's address
	changed  chan struct{}                  // closed and replaced when sessions changes
}

// speakerHold is the hold time the speaker offers; it sends keepalives a
// third of it apart.
const speakerHold = 90 * time.Second

// newSpeaker serves receivers on ln until close.
func newSpeaker(ln net.Listener, as uint32, id netip.Addr, prefixes []netip.Prefix) *speaker {
	s := &speaker{as: as, id: id, prefixes: prefixes, ln: ln, sessions: map[netip.Addr]*speakerSession{}, changed: make(chan struct{})}
	go s.serve()
	return s
}

// close stops listening and ends every session.
func (s *speaker) close() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		ss.c.Close()
	}
}

func (s *speaker) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			ss, err := s.handshake(c)
			if err != nil {
				c.Close()
				return
			}
			s.mu.Lock()
			if old := s.sessions[ss.peer]; old != nil {
				old.c.Close()
			}
			s.sessions[ss.peer] = ss
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}()
	}
}

// session waits up to timeout for an established session from peer.
func (s *speaker) session(peer netip.Addr, timeout time.Duration) (*speakerSession, error) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		ss, changed := s.sessions[peer], s.changed
		s.mu.Unlock()
		if ss != nil && ss.alive() {
			return ss, nil
		}
		select {
		case <-changed:
		case <-deadline:
			return nil, fmt.Errorf("speaker: no session from %v within %v", peer, timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// speakerSession is one established session.
type speakerSession struct {
	s       *speaker
	c       net.Conn
	peer    netip.Addr
	nextHop netip.Addr // the speaker's address on the connection
	wmu     sync.Mutex
	done    chan struct{} // the receiver closed or the read failed
	err     error         // why, once done is closed
}

func (ss *speakerSession) alive() bool {
	select {
	case <-ss.done:
		return false
	default:
		return true
	}
}

// handshake exchanges OPENs and KEEPALIVEs on c (RFC 4271 8.2.2), then
// starts the session's reader and keepalives.
func (s *speaker) handshake(c net.Conn) (*speakerSession, error) {
	local, remote := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	ss := &speakerSession{s: s, c: c, peer: remote, nextHop: local, done: make(chan struct{})}
	caps := []bgp.ParameterCapabilityInterface{bgp.NewCapMultiProtocol(bgp.RF_IPv4_UC), bgp.NewCapFourOctetASNumber(s.as)}
	open, err := bgp.NewBGPOpenMessage(uint16(s.as), uint16(speakerHold/time.Second), s.id, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		return nil, err
	}
	b, err := open.Serialize()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	for _, want := range []uint8{bgp.BGP_MSG_OPEN, bgp.BGP_MSG_KEEPALIVE} {
		typ, body, err := readMessage(c)
		if err != nil {
			return nil, err
		}
		if typ != want {
			if typ == bgp.BGP_MSG_NOTIFICATION && len(body) >= 2 {
				return nil, fmt.Errorf("speaker: NOTIFICATION %d/%d from %v", body[0], body[1], remote)
			}
			return nil, fmt.Errorf("speaker: message type %d from %v, want %d", typ, remote, want)
		}
		if want == bgp.BGP_MSG_OPEN {
			if _, err := c.Write(keepalive()); err != nil {
				return nil, err
			}
		}
	}
	c.SetDeadline(time.Time{})
	go ss.read()
	go ss.keepalives()
	return ss, nil
}

// read discards what the receiver sends (its keepalives) until the
// connection ends.
func (ss *speakerSession) read() {
	var err error
	for {
		var typ uint8
		if typ, _, err = readMessage(ss.c); err != nil {
			break
		}
		if typ == bgp.BGP_MSG_NOTIFICATION {
			err = errors.New("NOTIFICATION received")
			break
		}
	}
	ss.err = err
	close(ss.done)
	ss.c.Close()
}

func (ss *speakerSession) keepalives() {
	t := time.NewTicker(speakerHold / 3)
	defer t.Stop()
	for {
		select {
		case <-ss.done:
			return
		case <-t.C:
			ss.wmu.Lock()
			ss.c.SetWriteDeadline(time.Now().Add(speakerHold))
			_, err := ss.c.Write(keepalive())
			ss.wmu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// readMessage reads one BGP message and returns its type and body.
func readMessage(r io.Reader) (uint8, []byte, error) {
	var hdr [bgp.BGP_HEADER_LENGTH]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[16:]))
	if n < bgp.BGP_HEADER_LENGTH || n > bgp.BGP_MAX_MESSAGE_LENGTH {
		return 0, nil, fmt.Errorf("speaker: message length %d", n)
	}
	body := make([]byte, n-bgp.BGP_HEADER_LENGTH)
	_, err := io.ReadFull(r, body)
	return hdr[18], body, err
}

func keepalive() []byte {
	b, _ := bgp.NewBGPKeepAliveMessage().Serialize() // fixed content: cannot fail
	return b
}

// flapCycle is one cycle of UPDATEs, ready to send: every prefix withdrawn,
// then every prefix announced again. Message i is cycle[ends[i-1]:ends[i]]
// and carries changes[i] prefix changes.
type flapCycle struct {
	cycle   []byte
	ends    []int
	changes []int
	total   int // prefix changes in a cycle
}

// encodeCycle encodes the cycle with at most perUpdate prefixes in an
// UPDATE, or as many as fit (4096-byte messages) when perUpdate is 0.
func (ss *speakerSession) encodeCycle(perUpdate int) (*flapCycle, error) {
	nh, err := bgp.NewPathAttributeNextHop(ss.nextHop)
	if err != nil {
		return nil, err
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath([]bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{ss.s.as})}),
		nh,
	}
	attrLen := 0
	for _, a := range attrs {
		attrLen += a.Len()
	}
	fc := &flapCycle{}
	for _, withdraw := range []bool{true, false} {
		budget := bgp.BGP_MAX_MESSAGE_LENGTH - bgp.BGP_HEADER_LENGTH - 4
		if !withdraw {
			budget -= attrLen
		}
		ps := ss.s.prefixes
		for len(ps) > 0 {
			n, size := 0, 0
			for n < len(ps) && (perUpdate == 0 || n < perUpdate) && size+1+(ps[n].Bits()+7)/8 <= budget {
				size += 1 + (ps[n].Bits()+7)/8
				n++
			}
			nlri := make([]bgp.PathNLRI, n)
			for i, p := range ps[:n] {
				a, err := bgp.NewIPAddrPrefix(p)
				if err != nil {
					return nil, fmt.Errorf("%v: %w", p, err)
				}
				nlri[i] = bgp.PathNLRI{NLRI: a}
			}
			m := bgp.NewBGPUpdateMessage(nlri, nil, nil)
			if !withdraw {
				m = bgp.NewBGPUpdateMessage(nil, attrs, nlri)
			}
			b, err := m.Serialize()
			if err != nil {
				return nil, err
			}
			fc.cycle = append(fc.cycle, b...)
			fc.ends = append(fc.ends, len(fc.cycle))
			fc.changes = append(fc.changes, n)
			fc.total += n
			ps = ps[n:]
		}
	}
	return fc, nil
}

// flap sends whole cycles until d has passed: at rate prefix changes per
// second (paced every millisecond), or as fast as the receiver reads when
// rate is 0. It returns the prefix changes sent and when the last was
// written.
func (ss *speakerSession) flap(fc *flapCycle, rate float64, d time.Duration) (sent uint64, last time.Time, err error) {
	start := time.Now()
	write := func(b []byte) error {
		ss.wmu.Lock()
		defer ss.wmu.Unlock()
		ss.c.SetWriteDeadline(time.Now().Add(speakerHold))
		_, err := ss.c.Write(b)
		return err
	}
	for time.Since(start) < d {
		if rate == 0 {
			if err := write(fc.cycle); err != nil {
				return sent, last, err
			}
			sent += uint64(fc.total)
			last = time.Now()
			continue
		}
		// Paced: each millisecond, the messages that bring the changes
		// sent up to rate × time elapsed (catching up after a late tick).
		from, i := 0, 0
		for i < len(fc.ends) {
			due := uint64(rate * time.Since(start).Seconds())
			j := i
			for s := sent; j < len(fc.ends) && s < due; j++ {
				s += uint64(fc.changes[j])
			}
			if j == i {
				time.Sleep(time.Millisecond)
				continue
			}
			if err := write(fc.cycle[from:fc.ends[j-1]]); err != nil {
				return sent, last, err
			}
			for ; i < j; i++ {
				sent += uint64(fc.changes[i])
			}
			from = fc.ends[j-1]
			last = time.Now()
		}
	}
	return sent, last, nil
}
