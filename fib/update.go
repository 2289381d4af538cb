package fib

import (
	"errors"
	"fmt"
	"net/netip"
)

// The write side, under the writer lock. A prefix entering or leaving the
// trie changes the control-plane nodes only; readers see it when the Update
// commits (publish.go). A change of a route's holders is a compare-and-swap
// on its state word, which readers see at once.

// Txn groups route changes that are published together as one Version. It
// is valid only inside the Update that made it.
type Txn struct {
	f    *FIB
	done bool
}

var errTxnDone = errors.New("fib: Txn used after its Update returned")

// Update runs fn with the writer lock held and publishes every change fn made
// as one new Version. If fn returns an error (a change it made was refused,
// or its own), every change it made is undone and the FIB stays as it was.
func (f *FIB) Update(fn func(tx *Txn) error) (err error) {
	f.mu.Lock()
	tx := &Txn{f: f}
	fromEmpty := f.routes[0]+f.routes[1] == 0
	if !fromEmpty {
		f.undo = &undoLog{}
	}
	// Even if fn panics, what it changed is published and the lock released,
	// so the FIB stays usable.
	defer func() {
		tx.done = true
		if err != nil {
			f.rollback(fromEmpty)
		}
		f.undo = nil
		f.commit()
		f.mu.Unlock()
	}()
	return fn(tx)
}

// Add gives backbone b a route for p. pathLen is the AS-path length, or -1
// when the source gives none.
func (tx *Txn) Add(b BackboneID, p netip.Prefix, pathLen int) error {
	if tx.done {
		return errTxnDone
	}
	return tx.f.add(b, p, pathLen)
}

// Withdraw removes backbone b's route for p. It reports whether b held one.
func (tx *Txn) Withdraw(b BackboneID, p netip.Prefix) (bool, error) {
	if tx.done {
		return false, errTxnDone
	}
	return tx.f.withdraw(b, p)
}

// Held reports whether backbone b holds a route for p, with the route's ID
// and b's AS-path length for it (-1 when the source gave none), so that a
// route source can tell its own routes from another source's of the same
// backbone.
func (tx *Txn) Held(b BackboneID, p netip.Prefix) (r RouteID, pathLen int, ok bool) {
	f := tx.f
	if tx.done || int(b) >= len(f.pathLen) {
		return 0, -1, false
	}
	id, ok := f.routeLocked(p)
	if !ok || !HolderSet(f.state[id].Load()).Has(b) {
		return 0, -1, false
	}
	return id, f.pathLenLocked(id, b), true
}

// Routes calls fn for every route backbone b holds, in RouteID order, until
// fn returns false. fn may withdraw b's routes through tx: IDs are not
// reused before the Update commits.
func (tx *Txn) Routes(b BackboneID, fn func(r RouteID, p netip.Prefix, pathLen int) bool) {
	if !tx.done {
		tx.f.eachRoute(b, fn)
	}
}

// Add is a one-change Update.
func (f *FIB) Add(b BackboneID, p netip.Prefix, pathLen int) error {
	return f.Update(func(tx *Txn) error { return tx.Add(b, p, pathLen) })
}

// Withdraw is a one-change Update.
func (f *FIB) Withdraw(b BackboneID, p netip.Prefix) (removed bool, err error) {
	err = f.Update(func(tx *Txn) error {
		removed, err = tx.Withdraw(b, p)
		return err
	})
	return removed, err
}

func famOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// find walks to the node where p lives; with create, missing nodes are made.
func (f *FIB) find(p netip.Prefix, create bool) (fam *family, n *cnode, start uint16, rlen uint8) {
	fam = &f.fam[famOf(p)]
	level, rlen := fam.geo.placement(p.Bits())
	w := wordsOf(p.Addr())
	n = fam.root
	for d := 0; d < level; d++ {
		k := fam.geo.key(w, d)
		i, ok := n.findKid(k)
		if !ok {
			if !create {
				return fam, nil, 0, 0
			}
			kid := &cnode{depth: uint8(d + 1), kb: fam.geo.width[d+1], key: k, parent: n}
			// Its first emission, and the range it adds to its parent.
			f.nodes++
			f.pendingWords += nodeWordsMin + 1
			n.insertKid(i, kid)
			fam.markNode(kid)
			fam.parentChanged(kid)
		}
		n = n.kids[i]
	}
	return fam, n, fam.geo.key(w, level) & lenMask(rlen, n.kb), rlen
}

func (f *FIB) checkBackbone(b BackboneID) error {
	if int(b) >= len(f.backbones) {
		return fmt.Errorf("fib: no backbone with id %d (have %d)", b, len(f.backbones))
	}
	return nil
}

func clampPath(pathLen int) uint8 {
	switch {
	case pathLen < 0:
		return unknownPath
	case pathLen > maxPathLength:
		return maxPathLength
	}
	return uint8(pathLen)
}

func (f *FIB) add(b BackboneID, p netip.Prefix, pathLen int) error {
	if err := f.checkBackbone(b); err != nil {
		return err
	}
	if err := checkPrefix(p); err != nil {
		return fmt.Errorf("fib: %w", err)
	}
	if err := f.checkRoom(); err != nil {
		// Full: only a prefix already in the trie can still gain a holder.
		if _, ok := f.routeLocked(p); !ok {
			return err
		}
	}
	fam, n, start, rlen := f.find(p, true)
	i, ok := n.findPfx(start, rlen)
	if ok {
		f.addHolder(n.pfx[i].route, b, clampPath(pathLen))
		return nil
	}
	id, err := f.allocID(p)
	if err != nil {
		return err
	}
	f.logChange(id, b, addedRoute, unknownPath, 0)
	f.pendingWords++ // the prefix's ranges in its node
	for o := range f.pathLen {
		f.pathLen[o][id] = unknownPath
	}
	f.pathLen[b][id] = clampPath(pathLen)
	f.held[b]++
	f.routes[famOf(p)]++
	// The state is complete before any Version can reach the route.
	f.state[id].Store(makeState(1<<b, b, false))
	f.syncSel(id)
	n.pfx = append(n.pfx, cpfx{})
	copy(n.pfx[i+1:], n.pfx[i:])
	n.pfx[i] = cpfx{start: start, rlen: rlen, route: id}
	n.lens[rlen]++
	fam.markPrefix(n, start, rlen)
	return nil
}

// addHolder gives existing route id to backbone b with AS-path length
// pathLen, or updates b's length.
func (f *FIB) addHolder(id RouteID, b BackboneID, pathLen uint8) {
	old := f.pathLen[b][id]
	f.pathLen[b][id] = pathLen
	for {
		s := f.state[id].Load()
		h := HolderSet(s & holdersMask)
		had := h.Has(b)
		h |= 1 << b
		if f.state[id].CompareAndSwap(s, f.reselect(id, s, h)) {
			f.syncSel(id)
			switch {
			case !had:
				f.held[b]++
				f.logChange(id, b, addedHolder, old, s)
			case old != pathLen:
				f.logChange(id, b, changedPath, old, s)
			}
			return
		}
	}
}

func (f *FIB) withdraw(b BackboneID, p netip.Prefix) (bool, error) {
	if err := f.checkBackbone(b); err != nil {
		return false, err
	}
	if err := checkPrefix(p); err != nil {
		return false, fmt.Errorf("fib: %w", err)
	}
	fam, n, start, rlen := f.find(p, false)
	if n == nil {
		return false, nil
	}
	i, ok := n.findPfx(start, rlen)
	if !ok {
		return false, nil
	}
	id := n.pfx[i].route
	for {
		s := f.state[id].Load()
		h := HolderSet(s & holdersMask)
		if !h.Has(b) {
			return false, nil
		}
		h &^= 1 << b
		if h == 0 {
			// Last holder: the prefix leaves the trie. The state word keeps
			// its holders and selection, so a reader still on an older
			// Version gets an answer that was true an instant ago, never
			// "no route"; goneFlag tells writers the route is dead.
			if f.state[id].CompareAndSwap(s, s|goneFlag) {
				break
			}
			continue
		}
		if f.state[id].CompareAndSwap(s, f.reselect(id, s, h)) {
			f.syncSel(id)
			f.held[b]--
			f.logChange(id, b, droppedHolder, f.pathLen[b][id], s)
			return true, nil
		}
	}
	f.logChange(id, b, droppedRoute, f.pathLen[b][id], 0)
	if f.undo != nil {
		f.undo.gone = append(f.undo.gone, f.prefixes[id])
	}
	f.held[b]--
	f.routes[famOf(p)]--
	n.pfx = append(n.pfx[:i], n.pfx[i+1:]...)
	n.lens[rlen]--
	fam.markPrefix(n, start, rlen)
	f.prefixes[id] = storedPrefix{}
	// The grace period starts when a Version without the route is
	// published, at the end of this Update, not now.
	f.pendingFree = append(f.pendingFree, id)
	return true, nil
}
