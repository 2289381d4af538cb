package fib

import (
	"errors"
	"fmt"
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
	// The arena's bound (capacity.go): live nodes, the words of all their
	// sizes, and what the current Update may add to those sizes.
	nodes, coreWords, pendingWords int
	maxWords                       int // maxArenaWords; lower in tests
	// undo records the current Update's changes while it may need undoing.
	undo *undoLog
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
		maxWords:   maxArenaWords,
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
