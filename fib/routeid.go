package fib

import (
	"fmt"
	"net/netip"
	"time"
)

// A RouteID leaves use in three steps, so that a reader still holding an
// older Version never sees it name another prefix: withdraw puts it on
// pendingFree; startGrace moves it to the limbo, stamped, once the Version
// without it is published; allocID moves the IDs whose grace period has
// passed to the free list, and takes from there before minting a new ID.

type limboID struct {
	id RouteID
	at time.Time
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
			return 0, fmt.Errorf("%w at %d routes; raise the route limit (Options.MaxRoutes)", ErrFull, len(f.state)-1)
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

// startGrace starts the grace period of the IDs withdrawn in this Update:
// commit calls it right after publishing the Version without them.
func (f *FIB) startGrace() {
	if len(f.pendingFree) > 0 {
		now := time.Now()
		for _, id := range f.pendingFree {
			f.limbo = append(f.limbo, limboID{id, now})
		}
		f.pendingFree = f.pendingFree[:0]
	}
}

// Grace is how long a withdrawn route's ID stays unused (Options.Grace).
func (f *FIB) Grace() time.Duration { return f.grace }
