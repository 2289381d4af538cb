package fib

import (
	"fmt"
	"math/bits"
	"net/netip"
)

// SelectRoute makes backbone b the selected one for route r. It is lock-free
// (one compare-and-swap) and visible to the next lookup. It fails with
// ErrNotHeld when b holds no route for r's exact prefix, and ErrNoRoute when
// r names no route. r must come from a lookup or Route no older than the
// FIB's grace period.
func (f *FIB) SelectRoute(r RouteID, b BackboneID) error {
	if r == 0 || int(r) >= len(f.state) {
		return ErrNoRoute
	}
	if int(b) >= len(f.backbones) {
		return fmt.Errorf("fib: no backbone with id %d", b)
	}
	// Touch the selection byte's word before the compare-and-swap: the two
	// cache misses then overlap instead of running one after the other
	// (a locked instruction waits for earlier loads).
	_ = f.sel[r>>2].Load()
	for {
		s := f.state[r].Load()
		h := HolderSet(s & holdersMask)
		if h == 0 || s&goneFlag != 0 {
			return ErrNoRoute
		}
		if !h.Has(b) {
			return ErrNotHeld
		}
		if f.state[r].CompareAndSwap(s, makeState(h, b, true)) {
			f.syncSel(r)
			return nil
		}
	}
}

// Select makes backbone b the selected one for prefix p (exact match).
func (f *FIB) Select(p netip.Prefix, b BackboneID) error {
	f.mu.Lock()
	id, ok := f.routeLocked(p)
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("fib: select %v: %w", p, ErrNoRoute)
	}
	if err := f.SelectRoute(id, b); err != nil {
		if int(b) < len(f.backbones) {
			return fmt.Errorf("fib: select %v via %q: %w", p, f.backbones[b].Name, err)
		}
		return fmt.Errorf("fib: select %v: %w", p, err)
	}
	return nil
}

// ResetSelection drops an explicit selection for p: the default order
// (preference, AS-path length) decides again.
func (f *FIB) ResetSelection(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.routeLocked(p)
	if !ok {
		return fmt.Errorf("fib: reset %v: %w", p, ErrNoRoute)
	}
	for {
		s := f.state[id].Load()
		h := HolderSet(s & holdersMask)
		if f.state[id].CompareAndSwap(s, makeState(h, f.defaultSelection(id, h), false)) {
			f.syncSel(id)
			return nil
		}
	}
}

// Route returns the RouteID and current entry of prefix p (exact match).
func (f *FIB) Route(p netip.Prefix) (Entry, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.routeLocked(p)
	if !ok {
		return Entry{}, false
	}
	return stateEntry(id, f.state[id].Load()), true
}

func (f *FIB) routeLocked(p netip.Prefix) (RouteID, bool) {
	if checkPrefix(p) != nil {
		return 0, false
	}
	_, n, start, rlen := f.find(p, false)
	if n == nil {
		return 0, false
	}
	i, ok := n.findPfx(start, rlen)
	if !ok {
		return 0, false
	}
	return n.pfx[i].route, true
}

// Prefix returns the prefix of route r, or the zero Prefix if r is unused.
func (f *FIB) Prefix(r RouteID) netip.Prefix {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(r) >= len(f.prefixes) {
		return netip.Prefix{}
	}
	return f.prefixes[r].prefix()
}

// PathLen returns backbone b's AS-path length for route r, -1 if unknown or
// if b holds no route for it.
func (f *FIB) PathLen(r RouteID, b BackboneID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(b) >= len(f.pathLen) || int(r) >= len(f.pathLen[b]) {
		return -1
	}
	if s := f.state[r].Load(); s&goneFlag != 0 || !HolderSet(s).Has(b) {
		return -1
	}
	return f.pathLenLocked(r, b)
}

// LookupBackbone is the longest-prefix match within backbone b's own routes:
// the most specific prefix covering a that b holds, which may be less
// specific than the union's match. It is for the control plane (probes,
// status), not the fast path.
func (f *FIB) LookupBackbone(a netip.Addr, b BackboneID) (netip.Prefix, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !a.IsValid() || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	fam := &f.fam[1]
	if a.Is4() {
		fam = &f.fam[0]
	}
	w := wordsOf(a)
	var path [16]*cnode
	n, depth := fam.root, 0
	for {
		path[depth] = n
		i, ok := n.findKid(fam.geo.key(w, depth))
		if !ok || depth == fam.maxDepth {
			break
		}
		n = n.kids[i]
		depth++
	}
	var buf [17]RouteID
	for d := depth; d >= 0; d-- {
		for _, id := range path[d].coverAll(fam.geo.key(w, d), buf[:0]) {
			if HolderSet(f.state[id].Load()).Has(b) {
				return f.prefixes[id].prefix(), true
			}
		}
	}
	return netip.Prefix{}, false
}

// Stats describes the FIB's size.
type Stats struct {
	IPv4Routes, IPv6Routes int   // distinct prefixes in the union
	Held                   []int // routes held, by BackboneID
	// TrieBytes is the lookup structure as of the current Version: arena
	// nodes plus root pages. StateBytes is the per-route state words in use.
	// SelectionBytes is the selection array Forward reads (a byte a route).
	TrieBytes, StateBytes, SelectionBytes int
	Nodes                                 int
}

// Stats returns the FIB's current size.
func (f *FIB) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Stats{IPv4Routes: f.routes[0], IPv6Routes: f.routes[1], Held: append([]int(nil), f.held...)}
	s.TrieBytes = f.liveWords * 8
	for fi := range f.fam {
		s.TrieBytes += len(f.fam[fi].dir) * 8
		for _, pg := range f.fam[fi].dir {
			if pg != &emptyPage {
				s.TrieBytes += len(pg) * 4
			}
		}
		var count func(n *cnode)
		count = func(n *cnode) {
			s.Nodes++
			for _, k := range n.kids {
				count(k)
			}
		}
		count(f.fam[fi].root)
	}
	s.StateBytes = int(f.nextID) * 4
	s.SelectionBytes = int(f.nextID)
	return s
}

// Routes calls fn for every route backbone b holds, in no particular order,
// until fn returns false. The writer lock is held meanwhile.
func (f *FIB) Routes(b BackboneID, fn func(p netip.Prefix, pathLen int) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.eachRoute(b, func(_ RouteID, p netip.Prefix, pathLen int) bool { return fn(p, pathLen) })
}

// eachRoute is Routes under the writer lock, with each route's ID.
func (f *FIB) eachRoute(b BackboneID, fn func(r RouteID, p netip.Prefix, pathLen int) bool) {
	if int(b) >= len(f.pathLen) {
		return
	}
	for id := RouteID(1); id < f.nextID; id++ {
		if !f.prefixes[id].valid() || !HolderSet(f.state[id].Load()).Has(b) {
			continue
		}
		if !fn(id, f.prefixes[id].prefix(), f.pathLenLocked(id, b)) {
			return
		}
	}
}

// pathLenLocked is b's AS-path length for route id, -1 when unknown.
func (f *FIB) pathLenLocked(id RouteID, b BackboneID) int {
	if l := f.pathLen[b][id]; l != unknownPath {
		return int(l)
	}
	return -1
}

// Overrides calls fn, under the writer lock, for every route whose
// selection was made by Select rather than by the default rule (the
// optimizer's moves, pins), with the backbone it is on, until fn returns
// false. It is how pnapd tells other routers its choices.
func (f *FIB) Overrides(fn func(p netip.Prefix, b BackboneID) bool) {
	f.eachSelection(overrideFlag, fn)
}

// EachSelected is Overrides for every route, defaults included.
func (f *FIB) EachSelected(fn func(p netip.Prefix, b BackboneID) bool) {
	f.eachSelection(0, fn)
}

// eachSelection calls fn for the live routes whose state has every bit of
// flags.
func (f *FIB) eachSelection(flags uint32, fn func(p netip.Prefix, b BackboneID) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := RouteID(1); id < f.nextID; id++ {
		s := f.state[id].Load()
		if s&holdersMask == 0 || s&goneFlag != 0 || s&flags != flags || !f.prefixes[id].valid() {
			continue
		}
		if !fn(f.prefixes[id].prefix(), BackboneID((s&selMask)>>selShift)) {
			return
		}
	}
}

// Selections counts the routes selected on each backbone (by BackboneID)
// and how many of them are overrides (Select, not the default choice). It
// reads every route's state word once without the writer lock: a count
// taken while selections change is each word's value at some instant, not
// one snapshot. ~1 ms for a million routes.
func (f *FIB) Selections() (selected []int, overrides int) {
	selected = make([]int, len(f.backbones))
	f.mu.Lock()
	n := int(f.nextID)
	f.mu.Unlock()
	for id := 1; id < n && id < len(f.state); id++ {
		s := f.state[id].Load()
		if s&holdersMask == 0 || s&goneFlag != 0 {
			continue
		}
		selected[(s&selMask)>>selShift]++
		if s&overrideFlag != 0 {
			overrides++
		}
	}
	return selected, overrides
}

// reselect computes the new state for route id whose holders become h: an
// explicit selection stays while its backbone still holds the route,
// otherwise the default order decides.
func (f *FIB) reselect(id RouteID, s uint32, h HolderSet) uint32 {
	if s&overrideFlag != 0 {
		sel := BackboneID(s & selMask >> selShift)
		if h.Has(sel) {
			return makeState(h, sel, true)
		}
	}
	return makeState(h, f.defaultSelection(id, h), false)
}

// DefaultAmong is the backbone the FIB would select for route r by default
// among the backbones in h: lowest preference, then shortest known AS path,
// then lowest ID. It says why a route is where it is (status API) and what
// the optimizer moves a prefix away from. It is 0 when h holds none of the
// FIB's backbones, or when path lengths must decide and r is beyond the
// FIB's routes.
func (f *FIB) DefaultAmong(r RouteID, h HolderSet) BackboneID {
	// Preferences never change after New, so a unique lowest preference
	// decides without the lock; only a tie needs the path lengths, which
	// writers change under it. Configured preferences (100 + 10*index)
	// never tie, and the optimizer asks this for every measured prefix
	// every Step: taking the lock each time cost its failure evacuation
	// 15 % (BenchmarkEvacuate, 232 → 267 ns/prefix).
	best, tied := -1, false
	for m := uint32(h); m != 0; m &= m - 1 {
		b := bits.TrailingZeros32(m)
		switch {
		case b >= len(f.backbones):
		case best < 0 || f.backbones[b].Preference < f.backbones[best].Preference:
			best, tied = b, false
		case f.backbones[b].Preference == f.backbones[best].Preference:
			tied = true
		}
	}
	if best >= 0 && !tied {
		return BackboneID(best)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(r) >= len(f.state) || h == 0 {
		return 0
	}
	return f.defaultSelection(r, h)
}

// defaultSelection is the default order's choice among h for route id:
// lowest preference, then shortest known AS path (unknownPath, 255, ranks
// after any known length), then lowest BackboneID.
func (f *FIB) defaultSelection(id RouteID, h HolderSet) BackboneID {
	best := -1
	for m := uint32(h); m != 0; m &= m - 1 {
		b := 0
		for ; m&(1<<b) == 0; b++ {
		}
		if best < 0 {
			best = b
			continue
		}
		pb, pc := f.backbones[best].Preference, f.backbones[b].Preference
		if pc < pb || pc == pb && f.pathLen[b][id] < f.pathLen[best][id] {
			best = b
		}
	}
	return BackboneID(best)
}

// syncSel copies route id's selected backbone from its state word into the
// selection byte array that Forward reads. Whoever changes a state word calls
// it afterwards; re-checking the state after the store makes the last caller
// leave the byte equal to the final state, however the calls interleave.
func (f *FIB) syncSel(id RouteID) {
	w := &f.sel[id>>2]
	shift := 8 * (id & 3)
	for {
		s := f.state[id].Load()
		b := s & selMask >> selShift
		for {
			old := w.Load()
			nw := old&^(0xff<<shift) | b<<shift
			if old == nw || w.CompareAndSwap(old, nw) {
				break
			}
		}
		if f.state[id].Load() == s {
			return
		}
	}
}
