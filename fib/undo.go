package fib

// An Update whose fn fails is undone: a refused reload or a table that does
// not fit leaves the routes as they were, not half applied. The writer logs
// each change that did something (8 bytes; a withdrawn prefix also keeps
// its address) and, on failure, reverses them newest first before the
// commit. An Update that starts on an empty FIB logs nothing: undoing it is
// withdrawing everything, which is what a failed first load needs.
//
// Holder and selection changes are compare-and-swaps that lookups see at
// once, so a reader may forward by an undone change during the Update; the
// trie, which changes only at commit, never shows one.

type changeKind uint8

const (
	addedRoute    changeKind = iota // the route was new
	addedHolder                     // an existing route gained a holder
	changedPath                     // a holder's AS-path length changed
	droppedHolder                   // a holder went, others remain
	droppedRoute                    // the last holder went
)

type change struct {
	route   RouteID
	b       BackboneID
	kind    changeKind
	pathLen uint8 // before the change
	// pinned: b was the route's explicit selection before the change.
	pinned bool
}

type undoLog struct {
	changes []change
	gone    []storedPrefix // for each droppedRoute, in order
}

func (f *FIB) logChange(r RouteID, b BackboneID, kind changeKind, pathLen uint8, before uint32) {
	if f.undo != nil {
		pinned := before&overrideFlag != 0 && BackboneID(before&selMask>>selShift) == b
		f.undo.changes = append(f.undo.changes, change{r, b, kind, pathLen, pinned})
	}
}

// rollback reverses the logged changes, or, when the Update started on an
// empty FIB, withdraws every route.
func (f *FIB) rollback(fromEmpty bool) {
	log := f.undo
	f.undo = nil
	if fromEmpty {
		f.clearAll()
		return
	}
	gone := len(log.gone)
	for i := len(log.changes) - 1; i >= 0; i-- {
		c := log.changes[i]
		switch c.kind {
		case addedRoute, addedHolder:
			f.withdraw(c.b, f.prefixes[c.route].prefix())
		case changedPath, droppedHolder:
			f.addHolder(c.route, c.b, c.pathLen)
			if c.pinned {
				f.SelectRoute(c.route, c.b)
			}
		case droppedRoute:
			gone--
			f.restore(c.route, c.b, log.gone[gone], c.pathLen)
		}
	}
}

// restore brings back route id, withdrawn from its last holder b in this
// Update, under the same ID, so that its selection and everything keyed
// by the ID stay valid.
func (f *FIB) restore(id RouteID, b BackboneID, sp storedPrefix, pathLen uint8) {
	for i := len(f.pendingFree) - 1; i >= 0; i-- {
		if f.pendingFree[i] == id {
			f.pendingFree = append(f.pendingFree[:i], f.pendingFree[i+1:]...)
			break
		}
	}
	p := sp.prefix()
	f.prefixes[id] = sp
	f.pathLen[b][id] = pathLen
	f.held[b]++
	f.routes[famOf(p)]++
	for {
		s := f.state[id].Load()
		if f.state[id].CompareAndSwap(s, s&^goneFlag) {
			break
		}
	}
	// The node that held it is still there: nodes go only at commit.
	fam, n, start, rlen := f.find(p, true)
	i, _ := n.findPfx(start, rlen)
	n.pfx = append(n.pfx, cpfx{})
	copy(n.pfx[i+1:], n.pfx[i:])
	n.pfx[i] = cpfx{start: start, rlen: rlen, route: id}
	n.lens[rlen]++
	fam.markPrefix(n, start, rlen)
}

// clearAll withdraws every route at once: the trie starts again empty and
// the IDs wait out their grace period as withdrawn IDs do. Withdrawing a
// failed full-table load route by route took seconds.
func (f *FIB) clearAll() {
	for id := RouteID(1); id < f.nextID; id++ {
		if !f.prefixes[id].valid() {
			continue
		}
		f.prefixes[id] = storedPrefix{}
		for {
			s := f.state[id].Load()
			if f.state[id].CompareAndSwap(s, s|goneFlag) {
				break
			}
		}
		f.pendingFree = append(f.pendingFree, id)
	}
	clear(f.held)
	f.routes = [2]int{}
	for i := range f.fam {
		fam := &f.fam[i]
		*fam = family{geo: fam.geo, root: &cnode{kb: 16}, dir: newRootDir(), maxDepth: fam.maxDepth}
	}
	f.words, f.liveWords = nil, 0
	f.nodes, f.coreWords, f.pendingWords = 0, 0, 0
}
