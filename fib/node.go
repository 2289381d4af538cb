package fib

import (
	"math/bits"
	"unsafe"
)

// The lookup structure is a trie with a 16-bit stride at every level. Level 0
// is a direct table of 65536 entries (paged, so a change copies one 1 KiB
// page, not 256 KiB). Every deeper level is a range table over its 16-bit key:
// sorted range starts, each with a value, searched in two cache lines. This is
// DXR's idea (ranges instead of 2^16 slots) applied at every level, so an IPv4
// lookup touches the root page, one node's summary line and one group line;
// the full IPv4 table's ~1.0 M ranges take ~6.5 bytes each.
//
// An entry value is a RouteID (0: no route at this level) or, with childFlag
// set, the word offset of a child node in the arena.
//
// Node layout in the arena, in 64-byte lines:
//
//	line 0..s-1: uint16 nGroups, uint16 unused, uint32 def, uint16 summary[nGroups]
//	line s..:    nGroups groups of 10 ranges: uint16 start[10], uint32 val[10], 4 bytes pad
//
// summary[g] is the first start of group g. def is the route covering the whole
// node from its parent level (0 if none); a range value 0 means "no route at
// this level", and the lookup then answers the deepest def it passed. Keeping
// def per node means a change at one level re-emits only that node and its
// direct children, never a whole subtree.
const (
	childFlag  = 1 << 31
	groupSize  = 10
	lineWords  = 8 // uint64 words per 64-byte line
	hdrBytes   = 8
	rootFanout = 256
)

type group struct {
	start [groupSize]uint16
	val   [groupSize]uint32
	_     uint32
}

// rootPage is one 256-entry page of the level-0 direct table.
type rootPage [rootFanout]uint32

// rootDir is the level-0 direct table of one family: 256 pages.
type rootDir [rootFanout]*rootPage

var emptyPage rootPage

func newRootDir() *rootDir {
	d := new(rootDir)
	for i := range d {
		d[i] = &emptyPage
	}
	return d
}

func summaryLines(nGroups int) int { return (hdrBytes + 2*nGroups + 63) / 64 }

// nodeLines is the size in lines of a node with n ranges.
func nodeLines(n int) int {
	g := (n + groupSize - 1) / groupSize
	return summaryLines(g) + g
}

// search finds the value for key in the range node at word off, and the
// node's def.
// The arena layout is built only by emitNode; unsafe is used because bounds
// checks on every probe cost a measurable share of a lookup.
func search(words []uint64, off uint32, key uint16) (val, def uint32) {
	base := unsafe.Pointer(&words[off])
	n := int(*(*uint16)(base))
	def = *(*uint32)(unsafe.Add(base, 4))
	sum := unsafe.Slice((*uint16)(unsafe.Add(base, hdrBytes)), n)
	// summary[0] is always 0, so the answer is in [lo, hi).
	lo, hi := 0, n
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if sum[m] <= key {
			lo = m
		} else {
			hi = m
		}
	}
	g := (*group)(unsafe.Add(base, (summaryLines(n)+lo)*64))
	// Starts are ascending and g.start[0] <= key; unused slots hold 0xffff
	// with the last value repeated, so counting is exact without a length.
	i := 0
	for j := 1; j < groupSize; j++ {
		if g.start[j] <= key {
			i++
		}
	}
	return g.val[i], def
}

// rng is one range of a node under construction: from start to the next start.
type rng struct {
	start uint16
	val   uint32
}

// emitNode appends a range node for ranges r (r[0].start == 0, ascending)
// to words, aligned to a cache line so that each group is one line, and
// returns the new words and the node's word offset.
func emitNode(words []uint64, r []rng, def uint32) ([]uint64, uint32) {
	nGroups := (len(r) + groupSize - 1) / groupSize
	sl := summaryLines(nGroups)
	lines := sl + nGroups
	words = alignWords(words, lineWords)
	off := len(words)
	words = growWords(words, lines*lineWords)
	base := unsafe.Pointer(&words[off])
	*(*uint16)(base) = uint16(nGroups)
	*(*uint32)(unsafe.Add(base, 4)) = def
	sum := unsafe.Slice((*uint16)(unsafe.Add(base, hdrBytes)), nGroups)
	for g := 0; g < nGroups; g++ {
		sum[g] = r[g*groupSize].start
		gp := (*group)(unsafe.Add(base, (sl+g)*64))
		last := uint32(0)
		for j := 0; j < groupSize; j++ {
			k := g*groupSize + j
			if k < len(r) {
				gp.start[j] = r[k].start
				gp.val[j] = r[k].val
				last = r[k].val
			} else {
				gp.start[j] = 0xffff
				gp.val[j] = last
			}
		}
	}
	return words, uint32(off)
}

// growWords extends words by n zero words. When capacity runs out it copies to
// a new array: older Versions keep the old one, so nothing they read changes.
func growWords(words []uint64, n int) []uint64 {
	if len(words)+n <= cap(words) {
		words = words[:len(words)+n]
		clear(words[len(words)-n:])
		return words
	}
	c := 2 * cap(words)
	if c < len(words)+n {
		c = len(words) + n
	}
	if c < 1<<16 {
		c = 1 << 16
	}
	nw := make([]uint64, len(words)+n, c)
	copy(nw, words)
	return nw
}

// alignWords pads words to a multiple of n.
func alignWords(words []uint64, n int) []uint64 {
	if r := len(words) % n; r != 0 {
		words = growWords(words, n-r)
	}
	return words
}

// nodeValues calls fn for every entry of the range node at off, for
// rewriting child offsets during compaction.
func nodeValues(words []uint64, off uint32, fn func(v *uint32)) {
	base := unsafe.Pointer(&words[off])
	n := int(*(*uint16)(base))
	sl := summaryLines(n)
	for g := 0; g < n; g++ {
		gp := (*group)(unsafe.Add(base, (sl+g)*64))
		for j := range gp.val {
			fn(&gp.val[j])
		}
	}
}

// A bitmap node serves an 8-bit key (IPv4 levels 1 and 2): a 256-bit map
// marks where a range starts, and the value of key k is the value of the
// range counted by popcount, as in Poptrie. It costs 40 bytes plus 4 per
// range, against 6.4 per range plus a summary line for a range node, which
// is what keeps the full IPv4 table small enough to stay in cache.
//
//	word 0:    uint32 def | uint8 popcount before bitmap word 0,1,2,3 (<<32,40,48,56)
//	word 1..4: bitmap
//	bytes 40..: uint32 values, one per set bit
const bitmapHdrBytes = 40

func searchBitmap(words []uint64, off uint32, key uint8) (val, def uint32) {
	base := unsafe.Pointer(&words[off])
	w0 := *(*uint64)(base)
	wi := uint(key) >> 6
	bm := *(*uint64)(unsafe.Add(base, 8+8*wi))
	// Bits 0..key%64 inclusive; bit 0 of word 0 is always set.
	cnt := uint(uint8(w0>>(32+8*wi))) + uint(bits.OnesCount64(bm&(uint64(2)<<(key&63)-1)))
	return *(*uint32)(unsafe.Add(base, bitmapHdrBytes+4*(cnt-1))), uint32(w0)
}

func bitmapWords(nVals int) int { return (bitmapHdrBytes + 4*nVals + 7) / 8 }

// emitBitmap appends a bitmap node for ranges r over 8-bit keys.
func emitBitmap(words []uint64, r []rng, def uint32) ([]uint64, uint32) {
	// Keep the 40-byte head within one cache line.
	if len(words)%lineWords > lineWords-bitmapHdrBytes/8 {
		words = alignWords(words, lineWords)
	}
	off := len(words)
	words = growWords(words, bitmapWords(len(r)))
	base := unsafe.Pointer(&words[off])
	var bm [4]uint64
	for _, x := range r {
		bm[x.start>>6] |= 1 << (x.start & 63)
	}
	w0 := uint64(def)
	c := 0
	for i := 0; i < 4; i++ {
		w0 |= uint64(c) << (32 + 8*i)
		c += bits.OnesCount64(bm[i])
		*(*uint64)(unsafe.Add(base, 8+8*i)) = bm[i]
	}
	*(*uint64)(base) = w0
	for i, x := range r {
		*(*uint32)(unsafe.Add(base, bitmapHdrBytes+4*i)) = x.val
	}
	return words, uint32(off)
}

// bitmapValues calls fn for every value of the bitmap node at off.
func bitmapValues(words []uint64, off uint32, fn func(v *uint32)) {
	base := unsafe.Pointer(&words[off])
	n := 0
	for i := 0; i < 4; i++ {
		n += bits.OnesCount64(*(*uint64)(unsafe.Add(base, 8+8*i)))
	}
	for i := 0; i < n; i++ {
		fn((*uint32)(unsafe.Add(base, bitmapHdrBytes+4*i)))
	}
}

// copyWords appends src[off:off+size] to dst, keeping the alignment rule of
// the node's format, and returns the copy's offset.
func copyWords(dst, src []uint64, off uint32, size int, bitmap bool) ([]uint64, uint32) {
	if !bitmap {
		dst = alignWords(dst, lineWords)
	} else if len(dst)%lineWords > lineWords-bitmapHdrBytes/8 {
		dst = alignWords(dst, lineWords)
	}
	noff := len(dst)
	dst = growWords(dst, size)
	copy(dst[noff:], src[off:int(off)+size])
	return dst, uint32(noff)
}
