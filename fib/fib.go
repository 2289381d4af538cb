package fib

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune a FIB. The zero value is usable.
type Options struct {
	// MaxRoutes bounds the number of distinct prefixes (IPv4 and IPv6
	// together) the FIB can hold. The route state array is allocated at this
	// size up front so that readers never see it move; pages that are never
	// used cost no memory. Default 1<<22; at most 1<<23 - 1.
	MaxRoutes int
	// Grace is how long a RouteID stays unused after its prefix is gone, so a
	// reader holding an older Version never resolves it to another prefix.
	// Readers must not keep a Version longer than this. Default 1s.
	Grace time.Duration
}

// ErrNotHeld is returned when selecting a backbone that holds no route for the
// exact prefix.
var ErrNotHeld = errors.New("backbone holds no route for this prefix")

// ErrNoRoute is returned when a prefix is not in the FIB.
var ErrNoRoute = errors.New("no such prefix in the FIB")

// FIB is the forwarding information base. Lookups go through Load; all other
// methods are safe for concurrent use and serialise on one writer lock,
// except SelectRoute, which is lock-free.
type FIB struct {
	cur atomic.Pointer[Version]

	mu        sync.Mutex
	backbones []Backbone
	state     []atomic.Uint32 // by RouteID; fixed length, see Options.MaxRoutes
	sel       []atomic.Uint32 // selected backbone by RouteID, four bytes a word
	prefixes  []storedPrefix  // by RouteID; invalid when unused
	pathLen   [][]uint8       // by backbone, then RouteID
	held      []int           // routes held, by backbone
	nextID    RouteID
	free      []RouteID
	limbo     []limboID // withdrawn IDs in the order they went
	// pendingFree holds IDs withdrawn in the current Update; they enter the
	// limbo when the Version without them is published.
	pendingFree []RouteID
	limboHead   int
	grace       time.Duration
	fam         [2]family // 0: IPv4, 1: IPv6
	words       []uint64  // arena of trie nodes; append-only between compactions
	liveWords   int
	// compactMin is the garbage, in words, below which the arena is never
	// compacted: 1 MiB, so compaction (a copy of the live nodes, ~5 ms for
	// the full IPv4 table) runs at most once per ~25k single-route changes.
	compactMin  int
	compactions int
	// compactAlways makes every commit compact: tests use it to check
	// compaction as thoroughly as everything else.
	compactAlways bool
	scratch       [2][]rng
	routes        [2]int
	generation    uint64
}

type limboID struct {
	id RouteID
	at time.Time
}

type family struct {
	geo        *geometry
	root       *cnode
	dir        *rootDir // as last published
	maxDepth   int
	dirty      [16][]*cnode
	dirtyKeys  []uint16
	keyMarked  [1024]uint64
	pageCopied [rootFanout]bool
}

// Version is an immutable snapshot of the trie. Readers load one per batch of
// lookups (FIB.Load) and must not keep it longer than Options.Grace.
type Version struct {
	words []uint64
	root4 *rootDir
	root6 *rootDir
	state []atomic.Uint32
	sel   []atomic.Uint32
	gen   uint64
}

// New makes an empty FIB for the given backbones, in BackboneID order.
func New(backbones []Backbone, opt Options) (*FIB, error) {
	if len(backbones) == 0 || len(backbones) > MaxBackbones {
		return nil, fmt.Errorf("fib: %d backbones; need 1 to %d", len(backbones), MaxBackbones)
	}
	seen := map[string]bool{}
	for _, b := range backbones {
		if seen[b.Name] {
			return nil, fmt.Errorf("fib: backbone name %q used twice", b.Name)
		}
		seen[b.Name] = true
	}
	if opt.MaxRoutes <= 0 {
		opt.MaxRoutes = 1 << 22
	}
	if opt.MaxRoutes >= childFlag {
		return nil, fmt.Errorf("fib: MaxRoutes %d too large; at most %d", opt.MaxRoutes, childFlag-1)
	}
	if opt.Grace <= 0 {
		opt.Grace = time.Second
	}
	f := &FIB{
		backbones:  append([]Backbone(nil), backbones...),
		state:      make([]atomic.Uint32, opt.MaxRoutes+1),
		sel:        make([]atomic.Uint32, (opt.MaxRoutes+4)/4),
		prefixes:   make([]storedPrefix, 1, 1024),
		pathLen:    make([][]uint8, len(backbones)),
		held:       make([]int, len(backbones)),
		nextID:     1, // 0 means "no route" in the trie
		grace:      opt.Grace,
		compactMin: 1 << 17,
	}
	for i := range f.pathLen {
		f.pathLen[i] = make([]uint8, 1, 1024)
	}
	for i, g := range []*geometry{&geo4, &geo6} {
		f.fam[i] = family{geo: g, root: &cnode{kb: 16}, dir: newRootDir(), maxDepth: len(g.start) - 1}
	}
	f.publish()
	return f, nil
}

// Backbones returns the backbones in BackboneID order.
func (f *FIB) Backbones() []Backbone { return append([]Backbone(nil), f.backbones...) }

// BackboneID finds a backbone by name.
func (f *FIB) BackboneID(name string) (BackboneID, bool) {
	for i, b := range f.backbones {
		if b.Name == name {
			return BackboneID(i), true
		}
	}
	return 0, false
}

// Load returns the current Version. It is one atomic load.
func (f *FIB) Load() *Version { return f.cur.Load() }

func (f *FIB) publish() {
	f.generation++
	f.cur.Store(&Version{words: f.words, root4: f.fam[0].dir, root6: f.fam[1].dir, state: f.state, sel: f.sel, gen: f.generation})
}

// Generation counts the Versions published: it grows with every route
// change committed (not with selection changes, which need no new Version).
func (v *Version) Generation() uint64 { return v.gen }

// Lookup finds the longest prefix matching a and its entry. An IPv4-mapped
// IPv6 address is looked up as the IPv6 address it is, in the IPv6 routes.
func (v *Version) Lookup(a netip.Addr) (Entry, bool) {
	id := v.lookupAddr(a)
	if id == 0 {
		return Entry{}, false
	}
	return stateEntry(RouteID(id), v.state[id].Load()), true
}

// lookupAddr is the trie lookup for either family; 0 means no route.
func (v *Version) lookupAddr(a netip.Addr) uint32 {
	if a.Is4() {
		b := a.As4()
		return v.lookup4(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
	}
	if !a.Is6() {
		return 0
	}
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 |
		uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	return v.lookup6(hi, lo)
}

// Forward is the forwarding lookup: the longest-prefix route for a and the
// backbone selected for it, without the holder set. It reads the trie and
// one byte of the selection array, the least a packet needs.
func (v *Version) Forward(a netip.Addr) (RouteID, BackboneID, bool) {
	id := v.lookupAddr(a)
	return RouteID(id), v.selected(id), id != 0
}

// Forward4 is Forward for an IPv4 address held in a uint32 (host order), as
// the forwarder reads it from a packet.
func (v *Version) Forward4(a uint32) (RouteID, BackboneID, bool) {
	id := v.lookup4(a)
	return RouteID(id), v.selected(id), id != 0
}

// Forward6 is Forward for an IPv6 address held as two uint64 (host order).
func (v *Version) Forward6(hi, lo uint64) (RouteID, BackboneID, bool) {
	id := v.lookup6(hi, lo)
	return RouteID(id), v.selected(id), id != 0
}

func (v *Version) selected(id uint32) BackboneID {
	return BackboneID(v.sel[id>>2].Load() >> (8 * (id & 3)))
}

func (v *Version) lookup4(a uint32) uint32 {
	e := v.root4[a>>24][a>>16&0xff]
	if e&childFlag == 0 {
		return e
	}
	val, best := searchBitmap(v.words, e&^childFlag, uint8(a>>8))
	if val&childFlag != 0 {
		var def uint32
		val, def = searchBitmap(v.words, val&^childFlag, uint8(a))
		if def != 0 {
			best = def
		}
	}
	if val == 0 {
		return best
	}
	return val
}

func (v *Version) lookup6(hi, lo uint64) uint32 {
	e := v.root6[hi>>56][hi>>48&0xff]
	var best uint32
	// Keys after the root are the address's bytes 2..15.
	for sh := 40; e&childFlag != 0; sh -= 8 {
		var key uint8
		if sh >= 0 {
			key = uint8(hi >> sh)
		} else {
			key = uint8(lo >> (64 + sh))
		}
		val, def := searchBitmap(v.words, e&^childFlag, key)
		if def != 0 {
			best = def
		}
		e = val
	}
	if e == 0 {
		return best
	}
	return e
}

// Txn groups route changes that are published together as one Version. It
// is valid only inside the Update that made it.
type Txn struct {
	f    *FIB
	done bool
}

var errTxnDone = errors.New("fib: Txn used after its Update returned")

// Update runs fn with the writer lock held and publishes every change fn made
// as one new Version. Each change is applied on its own; if fn returns an
// error, the changes made before it are still published.
func (f *FIB) Update(fn func(tx *Txn) error) error {
	f.mu.Lock()
	tx := &Txn{f: f}
	// Even if fn panics, what it changed is published and the lock released,
	// so the FIB stays usable.
	defer func() {
		tx.done = true
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
	fam, n, start, rlen := f.find(p, true)
	i, ok := n.findPfx(start, rlen)
	if ok {
		id := n.pfx[i].route
		f.pathLen[b][id] = clampPath(pathLen)
		for {
			s := f.state[id].Load()
			h := HolderSet(s & holdersMask)
			had := h.Has(b)
			h |= 1 << b
			if f.state[id].CompareAndSwap(s, f.reselect(id, s, h)) {
				f.syncSel(id)
				if !had {
					f.held[b]++
				}
				return nil
			}
		}
	}
	if f.liveWords > childFlag/2 {
		// Node offsets are 23 bits: the arena holds at most 64 MiB of
		// nodes, several times what full tables need.
		return fmt.Errorf("fib: full: lookup structure at %d MiB, the most it can address is %d MiB", f.liveWords*8>>20, childFlag*8>>20)
	}
	id, err := f.allocID(p)
	if err != nil {
		return err
	}
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
			return true, nil
		}
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

// defaultSelection: lowest preference, then shortest known AS path (unknown
// ranks after any known length), then lowest BackboneID.
// DefaultAmong is the backbone the FIB would select for route r by default
// among the backbones in h: lowest preference, then shortest AS path, then
// lowest ID. It says why a route is where it is (status API).
func (f *FIB) DefaultAmong(r RouteID, h HolderSet) BackboneID {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(r) >= len(f.state) || h == 0 {
		return 0
	}
	return f.defaultSelection(r, h)
}

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

func (f *FIB) allocID(p netip.Prefix) (RouteID, error) {
	var id RouteID
	if len(f.free) == 0 && f.limboHead < len(f.limbo) {
		now := time.Now()
		k := f.limboHead
		for k < len(f.limbo) && now.Sub(f.limbo[k].at) >= f.grace {
			f.free = append(f.free, f.limbo[k].id)
			k++
		}
		f.limboHead = k
		// Reuse the queue's space once most of it is consumed.
		if f.limboHead > 1024 && f.limboHead*2 > len(f.limbo) {
			f.limbo = f.limbo[:copy(f.limbo, f.limbo[f.limboHead:])]
			f.limboHead = 0
		}
	}
	if n := len(f.free); n > 0 {
		id = f.free[n-1]
		f.free = f.free[:n-1]
	} else {
		if int(f.nextID) >= len(f.state) {
			return 0, fmt.Errorf("fib: full at %d routes; raise the route limit (Options.MaxRoutes)", len(f.state)-1)
		}
		id = f.nextID
		f.nextID++
		f.prefixes = append(f.prefixes, storedPrefix{})
		for b := range f.pathLen {
			f.pathLen[b] = append(f.pathLen[b], unknownPath)
		}
	}
	f.prefixes[id] = storePrefix(p)
	return id, nil
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
	if garbage > f.liveWords && garbage > f.compactMin || f.compactAlways || len(f.words) > childFlag/2 {
		f.compact()
	}
	f.publish()
	if len(f.pendingFree) > 0 {
		now := time.Now()
		for _, id := range f.pendingFree {
			f.limbo = append(f.limbo, limboID{id, now})
		}
		f.pendingFree = f.pendingFree[:0]
	}
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
	var off uint32
	size := len(f.words)
	// Every level below the root has 8-bit keys (see geometry).
	f.words, off = emitBitmap(f.words, r, def)
	pad := int(off) - size
	size = len(f.words) - int(off)
	f.liveWords += size + pad - int(n.size) - int(n.pad)
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
// published keep the old arena, so no reader is disturbed.
func (f *FIB) compact() {
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
