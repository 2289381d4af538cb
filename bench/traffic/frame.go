//go:build linux

package traffic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// Spec describes the frames a Generator sends.
type Spec struct {
	SrcMAC, DstMAC net.HardwareAddr
	// Src is the source address; its family (IPv4 or IPv6) is the frames'.
	Src netip.Addr
	// Dsts are the destinations, of Src's family, 1 to 65536 of them. Frame
	// number n goes to Dsts[hash(n)*len/2^32], a multiplicative hash: spread
	// evenly, the same on every Run.
	Dsts []netip.Addr
	// FrameBytes is the Ethernet frame size including the 4-byte FCS, as
	// RFC 2544 counts it: 64 means 60 bytes handed to the kernel. It is at
	// least MinFrameBytes and at most MaxFrameBytes; 0 with IMIX.
	FrameBytes int
	// IMIX sends the simple IMIX, frame sizes 7:4:1 (see IMIXSizes),
	// interleaved in a fixed cycle of 12 so every 12 frames are exact.
	IMIX             bool
	SrcPort, DstPort uint16
	TTL              uint8 // IPv4 TTL or IPv6 hop limit; 0 means 64
	// Paths, when set, has one entry per destination: the path (backbone
	// index, 0 to MaxPath) that frames to Dsts[i] must arrive by. Each frame
	// carries its destination's path in the tag, and a Receiver attached
	// to a link with AttachPath counts frames meant for another path as
	// WrongPath. Without Paths frames carry no expectation.
	Paths []int
}

// Family numbers for MinFrameBytes and IMIXSizes: 4 or 6.
const (
	IPv4 = 4
	IPv6 = 6
)

// The tag is the first tagBytes of the UDP payload: magic, sequence number
// and a 64-bit word holding the send time (low 48 bits) and the expected path
// (top 16 bits, 0 for none, else the path + 1), in host byte order (generator
// and receiver share the host). 16 bytes is what fits a 64-byte IPv4 frame
// (60 - 14 - 20 - 8 = 18) and all that fits the smallest IPv6 frame, so the
// path takes the send time's top bits rather than growing the tag (which
// would raise MinFrameBytes for IPv6): 48 bits of ns wrap every 78 hours,
// and latencies are taken modulo 2^48. A 32-bit sequence number is why a
// Run sends at most MaxRunPackets.
const (
	tagMagic   uint32 = 0x70616e70 // "pnap" in memory on little-endian hosts
	tagBytes          = 16
	tagSeq            = 4 // offsets inside the tag
	tagTime           = 8
	timeBits          = 48 // of the tag's time word; the path has the rest
	fcsBytes          = 4
	ethBytes          = 14
	udpBytes          = 8
	ipv4Bytes         = 20
	ipv6Bytes         = 40
	defaultTTL        = 64
	maxDsts           = 1 << 16

	// MaxFrameBytes is the largest frame live-frames mode can send, FCS
	// included: its frames live in one page, less the XDP headroom, the
	// kernel's page head and skb_shared_info (3408 bytes of data, measured
	// on 6.18). Beyond 1518 the links' MTU must be raised too.
	MaxFrameBytes = 3408 + fcsBytes
	// MaxRunPackets bounds one Run: sequence numbers are 32 bits and the
	// receiver keeps seq+1 in its duplicate slots.
	MaxRunPackets = 1<<32 - 1
	// MaxPath is the highest path a Spec's Paths or AttachPath takes: the
	// tag keeps path+1 in 16 bits.
	MaxPath = 1<<(64-timeBits) - 2
)

// tagWord is the tag's time word: send time ts modulo 2^48 and path (0 for
// none, else the path + 1) above it.
func tagWord(ts uint64, path uint16) uint64 {
	return ts&(1<<timeBits-1) | uint64(path)<<timeBits
}

// MinFrameBytes returns the smallest FrameBytes the family (IPv4 or IPv6)
// allows with the tag: 64 for IPv4 (the Ethernet minimum), 82 for IPv6
// (14 + 40 + 8 + 16 + 4, rounded up to an even size).
func MinFrameBytes(family int) int {
	n := ethBytes + udpBytes + tagBytes + fcsBytes
	if family == IPv6 {
		n += ipv6Bytes
	} else {
		n += ipv4Bytes
	}
	return max(64, (n+1)&^1)
}

// IMIXSizes returns the frame sizes (with FCS) of the simple IMIX, sent
// 7:4:1: for IPv4 64, 594 and 1518 bytes (IP packets of 40, 576 and 1500
// bytes); for IPv6 the smallest frame that carries the tag (82), 614 (the
// 576-byte packet with IPv6's 20 extra header bytes) and 1518.
func IMIXSizes(family int) [3]int {
	if family == IPv6 {
		return [3]int{MinFrameBytes(IPv6), 614, 1518}
	}
	return [3]int{64, 594, 1518}
}

// imixCycle is the position of each size (0 small, 1 medium, 2 large) in
// the cycle of 12 frames: interleaved so large frames never come in runs.
var imixCycle = [12]uint8{0, 0, 1, 0, 0, 1, 2, 0, 1, 0, 0, 1}

// imixMask returns a bit mask over the cycle positions holding size class c.
func imixMask(c uint8) int32 {
	var m int32
	for i, x := range imixCycle {
		if x == c {
			m |= 1 << i
		}
	}
	return m
}

// frameLayout is what the programs need to know about the frames' shape.
type frameLayout struct {
	family int
	l3     int // offset of the IP header
	l4     int // offset of the UDP header
	tag    int // offset of the tag
	minLen int // bytes the program writes (and checks are there)
}

func layoutOf(family int) frameLayout {
	ipLen := ipv4Bytes
	if family == IPv6 {
		ipLen = ipv6Bytes
	}
	l4 := ethBytes + ipLen
	return frameLayout{family: family, l3: ethBytes, l4: l4, tag: l4 + udpBytes, minLen: l4 + udpBytes + tagBytes}
}

// spec is a validated Spec with its derived values.
type spec struct {
	Spec
	frameLayout
	sizes []int // frame sizes with FCS: one, or the three IMIX sizes
}

func (s Spec) check() (spec, error) {
	v := spec{Spec: s}
	if len(s.SrcMAC) != 6 || len(s.DstMAC) != 6 {
		return v, fmt.Errorf("traffic: SrcMAC %q and DstMAC %q must be 6-byte Ethernet addresses", s.SrcMAC, s.DstMAC)
	}
	src := s.Src.Unmap()
	if !src.IsValid() || src.Zone() != "" {
		return v, fmt.Errorf("traffic: Src %v must be an IPv4 or IPv6 address without zone", s.Src)
	}
	v.Src = src
	family := IPv6
	if src.Is4() {
		family = IPv4
	}
	v.frameLayout = layoutOf(family)
	if len(s.Dsts) == 0 || len(s.Dsts) > maxDsts {
		return v, fmt.Errorf("traffic: %d destinations, want 1 to %d", len(s.Dsts), maxDsts)
	}
	v.Dsts = make([]netip.Addr, len(s.Dsts))
	for i, d := range s.Dsts {
		d = d.Unmap()
		if !d.IsValid() || d.Is4() != src.Is4() || d.Zone() != "" {
			return v, fmt.Errorf("traffic: Dsts[%d] = %v is not an IPv%d address like Src %v", i, s.Dsts[i], family, src)
		}
		v.Dsts[i] = d
	}
	switch {
	case s.IMIX && s.FrameBytes != 0:
		return v, errors.New("traffic: set FrameBytes or IMIX, not both")
	case s.IMIX:
		sz := IMIXSizes(family)
		v.sizes = sz[:]
	case s.FrameBytes < MinFrameBytes(family) || s.FrameBytes > MaxFrameBytes:
		return v, fmt.Errorf("traffic: FrameBytes %d out of range for IPv%d: %d to %d", s.FrameBytes, family, MinFrameBytes(family), MaxFrameBytes)
	default:
		v.sizes = []int{s.FrameBytes}
	}
	if len(s.Paths) != 0 && len(s.Paths) != len(s.Dsts) {
		return v, fmt.Errorf("traffic: %d Paths for %d Dsts: give one per destination, or none", len(s.Paths), len(s.Dsts))
	}
	for i, p := range s.Paths {
		if p < 0 || p > MaxPath {
			return v, fmt.Errorf("traffic: Paths[%d] = %d out of range 0 to %d", i, p, MaxPath)
		}
	}
	v.Paths = slices.Clone(s.Paths)
	if v.TTL == 0 {
		v.TTL = defaultTTL
	}
	return v, nil
}

// pathTag is what the tag carries for destination i: 0 without Paths, else
// its path + 1.
func (s spec) pathTag(i int) uint16 {
	if len(s.Paths) == 0 {
		return 0
	}
	return uint16(s.Paths[i] + 1)
}

// maxLen is the longest frame without FCS: the template's length.
func (s spec) maxLen() int { return s.sizes[len(s.sizes)-1] - fcsBytes }

// template returns the frame the programs start from, its longest size, with
// every header filled in for Dsts[0] and a zero tag. The programs rewrite all
// headers on every send anyway (pages are recycled, and forwarders on the same
// host rewrite frames in place), so the template matters for the payload
// padding and for the tests.
func (s spec) template() []byte {
	f := make([]byte, s.maxLen())
	s.writeHeaders(f, s.Dsts[0], 0, 0, 0)
	return f
}

// writeHeaders fills f's headers for a frame of len(f) bytes to dst, with
// tag seq, send time ts and path (as pathTag gives it): the reference the
// programs' output is tested against.
func (s spec) writeHeaders(f []byte, dst netip.Addr, seq uint32, ts uint64, path uint16) {
	copy(f[0:6], s.DstMAC)
	copy(f[6:12], s.SrcMAC)
	ip := f[s.l3:s.l4]
	udpLen := len(f) - s.l4
	if s.family == IPv4 {
		binary.BigEndian.PutUint16(f[12:14], 0x0800)
		copy(ip, s.ipv4Header(dst, len(f)-s.l3))
	} else {
		binary.BigEndian.PutUint16(f[12:14], 0x86dd)
		binary.BigEndian.PutUint32(ip[0:4], 6<<28)
		binary.BigEndian.PutUint16(ip[4:6], uint16(udpLen))
		ip[6], ip[7] = 17, s.TTL
		a, b := s.Src.As16(), dst.As16()
		copy(ip[8:24], a[:])
		copy(ip[24:40], b[:])
	}
	udp := f[s.l4:s.tag]
	binary.BigEndian.PutUint16(udp[0:2], s.SrcPort)
	binary.BigEndian.PutUint16(udp[2:4], s.DstPort)
	binary.BigEndian.PutUint16(udp[4:6], uint16(udpLen))
	// UDP checksum 0: nothing on the path checks it (forwarders check the
	// IPv4 header only, the Receiver drops the frames in XDP before any
	// socket), and a correct one would cost a pass over the payload per send.
	// For IPv6 a zero UDP checksum is strictly invalid (RFC 8200 8.1); it is
	// acceptable here only because no host stack ever receives these frames.
	binary.BigEndian.PutUint16(udp[6:8], 0)
	tag := f[s.tag : s.tag+tagBytes]
	binary.NativeEndian.PutUint32(tag[0:4], tagMagic)
	binary.NativeEndian.PutUint32(tag[tagSeq:], seq)
	binary.NativeEndian.PutUint64(tag[tagTime:], tagWord(ts, path))
}

// ipv4Header returns the 20-byte IPv4 header to dst for a packet of totLen
// bytes, checksum included. ID 0 and DF: the frames are never fragmented.
func (s spec) ipv4Header(dst netip.Addr, totLen int) []byte {
	h := make([]byte, ipv4Bytes)
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:4], uint16(totLen))
	binary.BigEndian.PutUint16(h[6:8], 0x4000)
	h[8], h[9] = s.TTL, 17
	a, b := s.Src.As4(), dst.As4()
	copy(h[12:16], a[:])
	copy(h[16:20], b[:])
	binary.BigEndian.PutUint16(h[10:12], ^fold(sum16(h)))
	return h
}

// ipv4Partial is the one's-complement sum of the IPv4 header to dst without
// its total length and checksum: the program adds the length and folds.
func (s spec) ipv4Partial(dst netip.Addr) uint32 {
	h := s.ipv4Header(dst, 0)
	h[10], h[11] = 0, 0
	return sum16(h)
}

func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	return s
}

func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// dstIndex is the destination of frame seq among n: the top bits of a
// multiplicative (Fibonacci) hash, scaled to n. The generator program
// computes the same.
func dstIndex(seq uint32, n int) int {
	h := uint64(seq) * dstHashMul >> 32
	return int(h * uint64(n) >> 32)
}

const dstHashMul = 0x9E3779B97F4A7C15 // 2^64 / golden ratio

// frameSize returns the size (with FCS) of frame seq.
func (s spec) frameSize(seq uint64) int {
	if len(s.sizes) == 1 {
		return s.sizes[0]
	}
	return s.sizes[imixCycle[seq%12]]
}

// bytesFor returns the bytes (with FCS) of frames 0..n-1.
func (s spec) bytesFor(n uint64) uint64 {
	if len(s.sizes) == 1 {
		return n * uint64(s.sizes[0])
	}
	var cycle uint64
	for _, c := range imixCycle {
		cycle += uint64(s.sizes[c])
	}
	b := n / 12 * cycle
	for i := uint64(0); i < n%12; i++ {
		b += uint64(s.sizes[imixCycle[i]])
	}
	return b
}
