package fib

// Writers never change what a published Version reads. A route change marks
// the control-plane nodes it touched (markPrefix); commit re-emits them,
// deepest first, at the arena's end, copies the root pages whose keys
// changed, and publishes a new Version with one atomic store. Compaction
// copies the live nodes into a fresh arena and leaves the old one to the
// Versions that still read it.

func (f *FIB) publish() {
	f.generation++
	f.cur.Store(&Version{words: f.words, root4: f.fam[0].dir, root6: f.fam[1].dir, state: f.state, sel: f.sel, gen: f.generation})
}

// markNode queues n for re-emission.
func (fam *family) markNode(n *cnode) {
	if n.depth == 0 || n.dirty {
		return
	}
	n.dirty = true
	fam.dirty[n.depth] = append(fam.dirty[n.depth], n)
}

func (fam *family) markKey(k uint16) {
	if fam.keyMarked[k>>6]&(1<<(k&63)) != 0 {
		return
	}
	fam.keyMarked[k>>6] |= 1 << (k & 63)
	fam.dirtyKeys = append(fam.dirtyKeys, k)
}

// markPrefix records that a prefix covering [start, start+2^(16-rlen)) at
// node n appeared or went: n is re-emitted (or, at the root, the covered keys
// rewritten), and n's children in that span get a new def.
func (fam *family) markPrefix(n *cnode, start uint16, rlen uint8) {
	end := uint32(start) + 1<<(n.kb-rlen)
	if n.depth == 0 {
		for k := uint32(start); k < end; k++ {
			fam.markKey(uint16(k))
		}
	} else {
		fam.markNode(n)
	}
	i, _ := n.findKid(start)
	for ; i < len(n.kids) && uint32(n.kidKeys[i]) < end; i++ {
		fam.markNode(n.kids[i])
	}
}

// commit re-emits every dirty node, deepest first, then rewrites dirty root
// keys on copied pages, and publishes one new Version.
func (f *FIB) commit() {
	for fi := range f.fam {
		fam := &f.fam[fi]
		for d := fam.maxDepth; d >= 1; d-- {
			for j := 0; j < len(fam.dirty[d]); j++ {
				n := fam.dirty[d][j]
				n.dirty = false
				if n.removed {
					continue
				}
				if len(n.pfx) == 0 && len(n.kids) == 0 {
					f.liveWords -= int(n.size) + int(n.pad)
					f.coreWords -= int(n.size)
					f.nodes--
					n.removed = true
					par := n.parent
					if i, ok := par.findKid(n.key); ok {
						par.removeKid(i)
					}
					fam.parentChanged(n)
					continue
				}
				f.emit(n)
				fam.parentChanged(n)
			}
			fam.dirty[d] = fam.dirty[d][:0]
		}
		if len(fam.dirtyKeys) > 0 {
			f.rewriteRoot(fam)
		}
	}
	// Compact when garbage outweighs live nodes, and always before offsets
	// could outgrow a value's 23 bits.
	garbage := len(f.words) - f.liveWords
	if garbage > f.liveWords && garbage > f.compactMin || f.compactAlways || len(f.words) > f.maxWords/2 {
		f.compact(nil)
	}
	f.pendingWords = 0
	f.publish()
	f.startGrace()
}

func (fam *family) parentChanged(n *cnode) {
	if n.parent.depth == 0 {
		fam.markKey(n.key)
	} else {
		fam.markNode(n.parent)
	}
}

// emit builds n's ranges and appends the node to the arena.
func (f *FIB) emit(n *cnode) {
	r := n.sweep(f.scratch[0])
	f.scratch[0] = r
	if len(n.kids) > 0 {
		r = n.overlay(r, f.scratch[1])
		f.scratch[1] = r
	}
	def := uint32(n.parent.cover(n.key))
	f.roomFor(bitmapWords(len(r)), n)
	var off uint32
	size := len(f.words)
	// Every level below the root has 8-bit keys (see geometry).
	f.words, off = emitBitmap(f.words, r, def)
	pad := int(off) - size
	size = len(f.words) - int(off)
	f.liveWords += size + pad - int(n.size) - int(n.pad)
	f.coreWords += size - int(n.size)
	n.off, n.size, n.pad = off, uint32(size), uint32(pad)
}

func (f *FIB) rewriteRoot(fam *family) {
	dir := new(rootDir)
	*dir = *fam.dir
	clear(fam.pageCopied[:])
	root := fam.root
	for _, k := range fam.dirtyKeys {
		pg := k >> 8
		if !fam.pageCopied[pg] {
			np := new(rootPage)
			*np = *dir[pg]
			dir[pg] = np
			fam.pageCopied[pg] = true
		}
		var v uint32
		if i, ok := root.findKid(k); ok {
			v = childFlag | root.kids[i].off
		} else {
			v = uint32(root.cover(k))
		}
		dir[pg][k&0xff] = v
		fam.keyMarked[k>>6] = 0
	}
	fam.dirtyKeys = fam.dirtyKeys[:0]
	fam.dir = dir
}

// compact copies the live nodes into a fresh arena. Versions already
// published keep the old arena, so no reader is disturbed. Nodes for which
// skip is true are about to be re-emitted in this commit: they are left
// out, and the values that point at them are rewritten when they are (their
// parents, or root keys, are marked as they are emitted).
func (f *FIB) compact(skip func(*cnode) bool) {
	nw := make([]uint64, 0, f.liveWords*5/4+lineWords)
	remap := make(map[uint32]uint32)
	var walk func(n *cnode)
	walk = func(n *cnode) {
		for _, k := range n.kids {
			walk(k)
		}
		if n.depth == 0 {
			return
		}
		if skip != nil && skip(n) {
			f.coreWords -= int(n.size)
			n.size, n.pad = 0, 0
			return
		}
		var noff uint32
		before := len(nw)
		nw, noff = copyBitmap(nw, f.words, n.off, int(n.size))
		n.pad = noff - uint32(before)
		fix := func(v uint32) uint32 {
			if v&childFlag != 0 {
				return childFlag | remap[v&^childFlag]
			}
			return v
		}
		bitmapValues(nw, noff, fix)
		remap[n.off] = noff
		n.off = noff
	}
	for fi := range f.fam {
		fam := &f.fam[fi]
		walk(fam.root)
		dir := new(rootDir)
		for pg := range dir {
			old := fam.dir[pg]
			if old == &emptyPage {
				dir[pg] = old
				continue
			}
			np := new(rootPage)
			for i, v := range old {
				if v&childFlag != 0 {
					v = childFlag | remap[v&^childFlag]
				}
				np[i] = v
			}
			dir[pg] = np
		}
		fam.dir = dir
	}
	f.words = nw
	f.compactions++
	f.liveWords = 0
	for fi := range f.fam {
		var sum func(n *cnode)
		sum = func(n *cnode) {
			f.liveWords += int(n.size) + int(n.pad)
			for _, k := range n.kids {
				sum(k)
			}
		}
		sum(f.fam[fi].root)
	}
}
