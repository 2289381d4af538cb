package fib

import (
	"net/netip"
)

// The control plane mirrors the lookup trie with plain Go values that the
// writer owns: one cnode per emitted node, holding the prefixes that end at
// its level and its children. Lookups never read it.

// cpfx is a prefix stored at a level with kb-bit keys: it covers the keys
// [start, start + 1<<(kb-rlen)).
type cpfx struct {
	start uint16
	rlen  uint8
	route RouteID
}

func (p cpfx) end(kb uint8) uint32 { return uint32(p.start) + 1<<(kb-p.rlen) }

type cnode struct {
	depth   uint8
	kb      uint8 // key bits at this level: 16, or 8 for IPv4 below the root
	key     uint16
	parent  *cnode
	pfx     []cpfx     // sorted by (start, rlen): a container sorts before what it contains
	lens    [17]uint32 // prefixes per rlen, so cover tries only lengths present
	kids    []*cnode   // sorted by key
	kidKeys []uint16   // the kids' keys, searched without touching the kids
	off     uint32     // word offset of the emitted node (depth >= 1)
	size    uint32     // words; 0 until emitted
	pad     uint32     // alignment words before the node, counted as live
	dirty   bool
	removed bool
}

func pfxLess(a cpfx, start uint16, rlen uint8) bool {
	return a.start < start || a.start == start && a.rlen < rlen
}

// findPfx and findKid are hand-written binary searches: sort.Search's
// closure calls were a tenth of the time of a single-route update.
func (n *cnode) findPfx(start uint16, rlen uint8) (int, bool) {
	lo, hi := 0, len(n.pfx)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if pfxLess(n.pfx[m], start, rlen) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(n.pfx) && n.pfx[lo].start == start && n.pfx[lo].rlen == rlen
}

func (n *cnode) findKid(key uint16) (int, bool) {
	keys := n.kidKeys
	lo, hi := 0, len(keys)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if keys[m] < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(keys) && keys[lo] == key
}

func lenMask(rlen, kb uint8) uint16 {
	if rlen == 0 {
		return 0
	}
	return uint16((1<<kb - 1) &^ (1<<(kb-rlen) - 1))
}

// cover is the most specific route of this level covering key (0 if none).
func (n *cnode) cover(key uint16) RouteID {
	for rlen := int(n.kb); rlen >= 0; rlen-- {
		if n.lens[rlen] == 0 {
			continue
		}
		if i, ok := n.findPfx(key&lenMask(uint8(rlen), n.kb), uint8(rlen)); ok {
			return n.pfx[i].route
		}
	}
	return 0
}

// coverAll lists the routes of this level covering key, most specific first.
func (n *cnode) coverAll(key uint16, out []RouteID) []RouteID {
	for rlen := int(n.kb); rlen >= 0; rlen-- {
		if i, ok := n.findPfx(key&lenMask(uint8(rlen), n.kb), uint8(rlen)); ok {
			out = append(out, n.pfx[i].route)
		}
	}
	return out
}

// sweep turns the level's prefixes into ranges over the 16-bit key space,
// each range valued with its most specific prefix (0 where none), adjacent
// equal ranges merged.
func (n *cnode) sweep(out []rng) []rng {
	out = out[:0]
	emit := func(pos uint32, val uint32) {
		if pos >= 1<<n.kb {
			return
		}
		if k := len(out); k > 0 && uint32(out[k-1].start) == pos {
			out[k-1].val = val
			if k > 1 && out[k-2].val == val {
				out = out[:k-1]
			}
			return
		}
		if k := len(out); k > 0 && out[k-1].val == val {
			return
		}
		out = append(out, rng{uint16(pos), val})
	}
	type open struct{ end, val uint32 }
	var stack [17]open
	sp := 0
	pop := func() {
		sp--
		var pv uint32
		if sp > 0 {
			pv = stack[sp-1].val
		}
		emit(stack[sp].end, pv)
	}
	emit(0, 0)
	for _, p := range n.pfx {
		s := uint32(p.start)
		for sp > 0 && stack[sp-1].end <= s {
			pop()
		}
		emit(s, uint32(p.route))
		stack[sp] = open{p.end(n.kb), uint32(p.route)}
		sp++
	}
	for sp > 0 {
		pop()
	}
	return out
}

// overlay splits ranges r at every child key, giving the child's key its own
// range pointing at the child node.
func (n *cnode) overlay(r []rng, out []rng) []rng {
	out = out[:0]
	add := func(start uint32, val uint32) {
		if k := len(out); k > 0 && out[k-1].val == val && val&childFlag == 0 {
			return
		}
		out = append(out, rng{uint16(start), val})
	}
	ki := 0
	for i, x := range r {
		end := uint32(1) << n.kb
		if i+1 < len(r) {
			end = uint32(r[i+1].start)
		}
		pos := uint32(x.start)
		for ki < len(n.kids) && uint32(n.kidKeys[ki]) < end {
			k := uint32(n.kidKeys[ki])
			if pos < k {
				add(pos, x.val)
			}
			add(k, childFlag|n.kids[ki].off)
			pos = k + 1
			ki++
		}
		if pos < end {
			add(pos, x.val)
		}
	}
	return out
}

// addrWords holds an address as 128 bits, IPv4 in the top 32.
type addrWords struct{ hi, lo uint64 }

func wordsOf(a netip.Addr) addrWords {
	if a.Is4() {
		b := a.As4()
		return addrWords{hi: uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32}
	}
	b := a.As16()
	var w addrWords
	for i := 0; i < 8; i++ {
		w.hi = w.hi<<8 | uint64(b[i])
		w.lo = w.lo<<8 | uint64(b[8+i])
	}
	return w
}

// geometry is a family's trie shape: the first address bit and the key
// width of each depth: a 16-bit root, then 8-bit bitmap levels.
type geometry struct {
	start []uint8
	width []uint8
}

var (
	geo4 = geometry{start: []uint8{0, 16, 24}, width: []uint8{16, 8, 8}}
	geo6 = geometry{
		start: []uint8{0, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120},
		width: []uint8{16, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8},
	}
)

// key is the address's key at depth d.
func (g *geometry) key(w addrWords, d int) uint16 {
	s, kb := uint(g.start[d]), uint(g.width[d])
	mask := uint64(1)<<kb - 1
	if s+kb <= 64 {
		return uint16(w.hi >> (64 - s - kb) & mask)
	}
	return uint16(w.lo >> (128 - s - kb) & mask)
}

// placement is where a prefix of the given length lives: its depth and its
// length relative to that depth's first bit.
func (g *geometry) placement(bits int) (depth int, rlen uint8) {
	for d := len(g.start) - 1; d > 0; d-- {
		if bits > int(g.start[d]) {
			return d, uint8(bits - int(g.start[d]))
		}
	}
	return 0, uint8(bits)
}

func (n *cnode) insertKid(i int, kid *cnode) {
	n.kids = append(n.kids, nil)
	copy(n.kids[i+1:], n.kids[i:])
	n.kids[i] = kid
	n.kidKeys = append(n.kidKeys, 0)
	copy(n.kidKeys[i+1:], n.kidKeys[i:])
	n.kidKeys[i] = kid.key
}

func (n *cnode) removeKid(i int) {
	n.kids = append(n.kids[:i], n.kids[i+1:]...)
	n.kidKeys = append(n.kidKeys[:i], n.kidKeys[i+1:]...)
}
