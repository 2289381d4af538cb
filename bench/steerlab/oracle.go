//go:build linux

package steerlab

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Oracle measures every backbone from outside pnap, in the same run as the
// customer's flows: UDP echoes to the served IPv4 destinations, written
// as frames straight onto each backbone port of the DUT (AF_PACKET, which
// pnap's XDP program does not see: it acts on what ports receive), so that
// each goes out through that backbone's emulator whatever pnap selects. The
// answers come back as the flows' do, through backbone 0, to the DUT's own
// address there, which pnap hands to the kernel. What the flows would have
// seen on each backbone at each moment is then a measurement, not the
// emulator's settings.
type Oracle struct {
	l     *Lab
	every time.Duration
	start time.Time
	recv  net.PacketConn
	fds   []int
	stop  chan struct{}
	wg    sync.WaitGroup

	mu   sync.Mutex
	sent []oracleProbe // indexed by sequence number
	// byDest is sent by destination, made by the first AtDest.
	byDest [][]oracleProbe
}

type oracleProbe struct {
	at       time.Time
	backbone int
	dest     int           // in Lab.OracleDests
	rtt      time.Duration // 0: no answer (yet)
}

// oraclePort is the UDP port the oracle's probes come from.
const oraclePort = 5002

// oracleMagic starts every probe's payload.
const oracleMagic = 0x6f72636c // "orcl"

// StartOracle sends a probe through every backbone every interval, to the
// served IPv4 destinations in turn, until Stop.
func StartOracle(tb testing.TB, l *Lab, every time.Duration) *Oracle {
	tb.Helper()
	o := &Oracle{l: l, every: every, start: time.Now(), stop: make(chan struct{})}
	src := l.X.Backbones[0].Addr4.Addr()
	err := l.X.DUT.Do(func() error {
		var err error
		if o.recv, err = net.ListenPacket("udp4", netip.AddrPortFrom(src, oraclePort).String()); err != nil {
			return err
		}
		for _, bb := range l.X.Backbones {
			fd, err := packetSocket(bb.Port.Name)
			if err != nil {
				return err
			}
			o.fds = append(o.fds, fd)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("oracle: %v", err)
	}
	o.wg.Add(2)
	go func() { defer o.wg.Done(); o.receive() }()
	go func() { defer o.wg.Done(); o.send(tb, src) }()
	tb.Cleanup(o.Stop)
	return o
}

// packetSocket is an AF_PACKET socket that sends on the named interface.
func packetSocket(ifname string) (int, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("binding AF_PACKET to %s: %w", ifname, err)
	}
	return fd, nil
}

// Stop ends the probes, waiting a second for the last answers.
func (o *Oracle) Stop() {
	select {
	case <-o.stop:
		return
	default:
	}
	close(o.stop)
	time.Sleep(time.Second)
	o.recv.Close()
	o.wg.Wait()
	for _, fd := range o.fds {
		unix.Close(fd)
	}
}

func (o *Oracle) send(tb testing.TB, src netip.Addr) {
	dests := o.l.OracleDests
	t := time.NewTicker(o.every)
	defer t.Stop()
	frame := make([]byte, 14+20+8+16)
	for round := 0; ; round++ {
		select {
		case <-o.stop:
			return
		case <-t.C:
		}
		di := round % len(dests)
		dst := dests[di]
		for b, bb := range o.l.X.Backbones {
			o.mu.Lock()
			seq := len(o.sent)
			o.sent = append(o.sent, oracleProbe{at: time.Now(), backbone: b, dest: di})
			o.mu.Unlock()
			echoFrame(frame, bb.Port.MAC, bb.Far.MAC, src, dst, uint64(seq))
			if _, err := unix.Write(o.fds[b], frame); err != nil {
				// A probe that never left is lost, not measured.
				o.mu.Lock()
				o.sent[seq].rtt = -1
				o.mu.Unlock()
			}
		}
	}
}

// echoFrame writes an Ethernet, IPv4 and UDP frame from src to dst's echo
// port carrying the probe's sequence number into f.
func echoFrame(f []byte, srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, seq uint64) {
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	binary.BigEndian.PutUint32(ip[4:], 0) // ID, flags: DF not needed
	ip[8], ip[9] = 64, 17
	ip[10], ip[11] = 0, 0
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], oraclePort)
	binary.BigEndian.PutUint16(udp[2:], echoPort)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(f)-34))
	binary.BigEndian.PutUint16(udp[6:], 0) // no checksum: allowed over IPv4
	binary.BigEndian.PutUint32(f[42:], oracleMagic)
	binary.BigEndian.PutUint64(f[46:], seq)
	binary.BigEndian.PutUint32(f[54:], 0)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func (o *Oracle) receive() {
	buf := make([]byte, 64)
	for {
		n, _, err := o.recv.ReadFrom(buf)
		if err != nil {
			return
		}
		now := time.Now()
		if n < 12 || binary.BigEndian.Uint32(buf) != oracleMagic {
			continue
		}
		seq := binary.BigEndian.Uint64(buf[4:])
		o.mu.Lock()
		if seq < uint64(len(o.sent)) && o.sent[seq].rtt == 0 {
			o.sent[seq].rtt = now.Sub(o.sent[seq].at)
		}
		o.mu.Unlock()
	}
}

// lostAfter is how long an unanswered probe is waited for before it
// counts as lost.
const lostAfter = time.Second

// OracleSample is one backbone's measurement at a moment: its mean RTT
// over the probes around it (the mean, as the flows are judged by theirs)
// and the share of them lost.
type OracleSample struct {
	RTT  time.Duration // 0: nothing answered
	Loss float64
	N    int
}

// At is every backbone's measurement over the probes sent within span of
// t (before and after: this is hindsight), among those old enough to have
// been answered or lost by end.
func (o *Oracle) At(t time.Time, span time.Duration, end time.Time) []OracleSample {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.at(o.sent, t, span, end)
}

// AtDest is At for one of Lab.OracleDests. It needs the oracle stopped
// (it reads every probe to that destination, sorted out once then).
func (o *Oracle) AtDest(dest int, t time.Time, span time.Duration, end time.Time) []OracleSample {
	if o.byDest == nil {
		o.byDest = make([][]oracleProbe, len(o.l.OracleDests))
		for _, p := range o.sent {
			o.byDest[p.dest] = append(o.byDest[p.dest], p)
		}
	}
	return o.at(o.byDest[dest], t, span, end)
}

// at is At over sent, probes in the order sent.
func (o *Oracle) at(sent []oracleProbe, t time.Time, span time.Duration, end time.Time) []OracleSample {
	out := make([]OracleSample, len(o.l.X.Backbones))
	rtts := make([][]time.Duration, len(out))
	lo := sort.Search(len(sent), func(i int) bool { return !sent[i].at.Before(t.Add(-span)) })
	for i := lo; i < len(sent) && sent[i].at.Before(t.Add(span)); i++ {
		p := sent[i]
		if p.rtt == 0 && end.Sub(p.at) < lostAfter {
			continue
		}
		s := &out[p.backbone]
		s.N++
		if p.rtt > 0 {
			rtts[p.backbone] = append(rtts[p.backbone], p.rtt)
		} else {
			s.Loss++
		}
	}
	for b := range out {
		if out[b].N > 0 {
			out[b].Loss /= float64(out[b].N)
		}
		if r := rtts[b]; len(r) > 0 {
			var sum time.Duration
			for _, x := range r {
				sum += x
			}
			out[b].RTT = sum / time.Duration(len(r))
		}
	}
	return out
}

// retransmitCost is what a lost segment costs a TCP exchange: Linux's
// minimum retransmission timeout. The oracle charges a backbone's loss at
// that price, so a 20 ms path that loses 5 % (20 + 0.05 × 200 = 30 ms) is
// worse than a clean 26 ms one, as the flows find.
const retransmitCost = 200 * time.Millisecond

// Cost is what a flow's exchange is expected to take on a backbone so
// measured: its RTT plus its loss at retransmitCost. Nothing answered
// (a blackout) costs the most there is.
func (s OracleSample) Cost() time.Duration {
	if s.RTT == 0 {
		return 1<<63 - 1
	}
	return s.RTT + time.Duration(s.Loss*float64(retransmitCost))
}
