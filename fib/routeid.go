package fib

import (
	"fmt"
	"net/netip"
	"time"
)

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
