package fib

import (
	"errors"
	"fmt"
)

// ErrFull is wrapped by every error that refuses a route because the FIB
// has no room left for it: the route limit (Options.MaxRoutes) or the
// lookup structure's address range.
var ErrFull = errors.New("fib: full")

// The lookup structure addresses its nodes with 23-bit word offsets
// (childFlag), so the arena can never exceed maxArenaWords: 64 MiB, several
// times what the full IPv4 and IPv6 tables need, but a table built to waste
// nodes (100,000 IPv6 /128s, each under a /24 of its own, take 77 MiB) gets
// there. Rather than emit an offset that does not fit, which would corrupt
// every lookup silently, the writer keeps an upper bound of what the arena
// will need after the next commit and refuses the route that would push the
// bound past the range (the Update is then undone: see undo.go).
//
// The bound: every live node's size, plus what this Update's changes can add
// to sizes (pendingWords), plus alignment padding of up to maxPadWords per
// node. Commit emits the changed nodes at the arena's end and, when that end
// nears the range, compacts first, copying only the nodes it will not
// re-emit, so the arena never holds more than the bound. Offsets stay
// 3-byte values: widening them costs every route a byte (6.1 to 7.2 bytes a
// route for IPv4, measured) and lookups their cache fit.
const (
	maxArenaWords = childFlag
	// nodeWordsMin is the size of the smallest node: header and one value.
	nodeWordsMin = (bitmapHdrBytes + valueBytes + 1 + 7) / 8
	// maxPadWords is the most padding a node gets: it is aligned to a line
	// only when its header would otherwise cross one.
	maxPadWords = bitmapHdrBytes/8 - 1
	// addWordsMax bounds what one Add can add to the bound: a node per
	// trie level (IPv6: 14), each with its padding and its parent's new
	// range, and the prefix's own range.
	addWordsMax = 14*(nodeWordsMin+1+maxPadWords) + 1
)

// boundWords is an upper bound of the arena the next commit needs.
func (f *FIB) boundWords() int {
	return f.coreWords + f.pendingWords + maxPadWords*f.nodes
}

// checkRoom refuses a new route when the lookup structure could outgrow
// its address range.
func (f *FIB) checkRoom() error {
	if f.boundWords()+addWordsMax <= f.maxWords {
		return nil
	}
	return fmt.Errorf("%w: the lookup structure would outgrow the %.1f MiB its node offsets address (%.1f MiB needed for %d routes); the table has unusually many prefixes that share no trie nodes",
		ErrFull, float64(f.maxWords)*8/(1<<20), float64(f.boundWords())*8/(1<<20), f.routes[0]+f.routes[1])
}

// roomFor makes sure the arena can take words more words, compacting it
// (without the nodes still to be re-emitted) when it cannot.
func (f *FIB) roomFor(words int, current *cnode) {
	if len(f.words)+words+lineWords <= f.maxWords {
		return
	}
	f.compact(func(n *cnode) bool { return n.dirty || n == current })
	if len(f.words)+words+lineWords > f.maxWords {
		// checkRoom's bound makes this unreachable; corrupting lookups
		// silently would be worse than stopping.
		panic(fmt.Sprintf("fib: arena of %d words cannot take %d more (bound %d)", len(f.words), words, f.boundWords()))
	}
}
