package fib

import (
	"fmt"
	"iter"
	"net/netip"
)

// Replace makes the routes of rs the whole route set of backbone b: rs yields
// each prefix with its AS-path length (-1 when the source gives none).
// Routes b lacks are added, routes it no longer has are withdrawn, and all of
// it is published as one Version, so lookups see either the old table or the
// new one. Prefixes that stay keep their RouteID and any explicit selection.
func (f *FIB) Replace(b BackboneID, rs iter.Seq2[netip.Prefix, int]) (added, withdrawn int, err error) {
	err = f.Update(func(tx *Txn) error {
		added, withdrawn, err = tx.Replace(b, rs)
		return err
	})
	return added, withdrawn, err
}

// Replace is FIB.Replace inside a transaction. On an error no route has been
// withdrawn yet, and the Update that returns it undoes the routes added. rs
// is iterated once; an error names the failing route by its position in rs.
func (tx *Txn) Replace(b BackboneID, rs iter.Seq2[netip.Prefix, int]) (added, withdrawn int, err error) {
	if tx.done {
		return 0, 0, errTxnDone
	}
	f := tx.f
	if err := f.checkBackbone(b); err != nil {
		return 0, 0, err
	}
	keep := make([]bool, f.nextID)
	i := 0
	for p, pathLen := range rs {
		had := false
		if id, ok := f.routeLocked(p); ok {
			had = HolderSet(f.state[id].Load()).Has(b)
		}
		if err := f.add(b, p, pathLen); err != nil {
			return added, 0, fmt.Errorf("route %d (%v): %w", i, p, err)
		}
		if !had {
			added++
		}
		if id, ok := f.routeLocked(p); ok && int(id) < len(keep) {
			keep[id] = true
		}
		i++
	}
	for id := RouteID(1); int(id) < len(keep); id++ {
		if keep[id] || !f.prefixes[id].valid() || !HolderSet(f.state[id].Load()).Has(b) {
			continue
		}
		p := f.prefixes[id].prefix()
		if ok, err := f.withdraw(b, p); err != nil {
			return added, withdrawn, err
		} else if ok {
			withdrawn++
		}
	}
	return added, withdrawn, nil
}
