package fib

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

// fuzzUniverse is the prefixes FuzzOps draws from: nested IPv4 and IPv6
// prefixes, default routes, hosts, and IPv6 hosts that each take a chain of
// trie nodes, so that the lowered arena range and route limit are reached.
var fuzzUniverse = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.128/25",
		"10.1.2.3/32", "10.1.3.0/24", "10.2.0.0/15", "192.0.2.0/24", "::/0", "2001:db8::/32",
		"2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8::1/128"} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return append(ps, sparseHosts(0, 18)...)
}()

// fuzzModel is the reference: per prefix, its holders' AS-path lengths and
// the pinned backbone (-1 for none).
type fuzzModel map[netip.Prefix]*modelRoute

type modelRoute struct {
	paths map[BackboneID]uint8
	pin   int
}

func (m fuzzModel) clone() fuzzModel {
	c := fuzzModel{}
	for p, r := range m {
		paths := map[BackboneID]uint8{}
		for b, l := range r.paths {
			paths[b] = l
		}
		c[p] = &modelRoute{paths, r.pin}
	}
	return c
}

func (m fuzzModel) add(b BackboneID, p netip.Prefix, pathLen int) {
	r := m[p]
	if r == nil {
		r = &modelRoute{map[BackboneID]uint8{}, -1}
		m[p] = r
	}
	r.paths[b] = clampPath(pathLen)
}

func (m fuzzModel) withdraw(b BackboneID, p netip.Prefix) {
	if r := m[p]; r != nil {
		delete(r.paths, b)
		if r.pin == int(b) {
			r.pin = -1
		}
		if len(r.paths) == 0 {
			delete(m, p)
		}
	}
}

// selected is the pin, or the shortest known path, then the lowest ID (the
// backbones' preferences are equal).
func (r *modelRoute) selected() BackboneID {
	if r.pin >= 0 {
		return BackboneID(r.pin)
	}
	best := BackboneID(255)
	for b, l := range r.paths {
		if best == 255 || l < r.paths[best] || l == r.paths[best] && b < best {
			best = b
		}
	}
	return best
}

// fuzzOps applies the operations data encodes to f and to the model.
type fuzzOps struct {
	t    *testing.T
	f    *FIB
	m    fuzzModel
	data []byte
}

func (o *fuzzOps) next() int {
	if len(o.data) == 0 {
		return 0
	}
	b := o.data[0]
	o.data = o.data[1:]
	return int(b)
}

func (o *fuzzOps) prefix() netip.Prefix { return fuzzUniverse[o.next()%len(fuzzUniverse)] }
func (o *fuzzOps) backbone() BackboneID { return BackboneID(o.next() % 3) }

// change makes one add or withdraw inside tx and in m; a refusal must be
// ErrFull, and leaves m alone.
func (o *fuzzOps) change(tx *Txn, m fuzzModel) error {
	b, p := o.backbone(), o.prefix()
	if o.next()%3 == 0 {
		if _, err := tx.Withdraw(b, p); err != nil {
			o.t.Fatalf("withdraw %v from %d: %v", p, b, err)
		}
		m.withdraw(b, p)
		return nil
	}
	pathLen := o.next()%6 - 1
	if err := tx.Add(b, p, pathLen); err != nil {
		if !errors.Is(err, ErrFull) {
			o.t.Fatalf("add %v to %d: %v", p, b, err)
		}
		return err
	}
	m.add(b, p, pathLen)
	return nil
}

var errFuzzAbort = errors.New("aborted by the test")

// update runs a few changes as one Update that may fail (a refusal, or the
// test's own error): then neither the FIB nor the model changes.
func (o *fuzzOps) update() {
	n, abort := o.next()%8, o.next()%4 == 0
	m := o.m.clone()
	err := o.f.Update(func(tx *Txn) error {
		for range n {
			if err := o.change(tx, m); err != nil {
				return err
			}
		}
		if o.next()%4 == 0 {
			// Replace a backbone's routes with a few of the universe.
			b := o.backbone()
			keep := map[netip.Prefix]int{}
			for range o.next() % 6 {
				keep[o.prefix()] = o.next()%6 - 1
			}
			if _, _, err := tx.Replace(b, func(yield func(netip.Prefix, int) bool) {
				for p, l := range keep {
					if !yield(p, l) {
						return
					}
				}
			}); err != nil {
				if !errors.Is(err, ErrFull) {
					o.t.Fatalf("replace: %v", err)
				}
				return err
			}
			for p, r := range m {
				if _, ok := r.paths[b]; ok {
					if _, kept := keep[p]; !kept {
						m.withdraw(b, p)
					}
				}
			}
			for p, l := range keep {
				m.add(b, p, l)
			}
		}
		if abort {
			return errFuzzAbort
		}
		return nil
	})
	if err == nil {
		o.m = m
	}
}

func (o *fuzzOps) pin() {
	b, p := o.backbone(), o.prefix()
	err := o.f.Select(p, b)
	r := o.m[p]
	if held := r != nil && hasPath(r, b); held != (err == nil) {
		o.t.Fatalf("select %v on %d: %v, held %v", p, b, err, held)
	}
	if err == nil {
		r.pin = int(b)
	}
}

func (o *fuzzOps) reset() {
	p := o.prefix()
	err := o.f.ResetSelection(p)
	r := o.m[p]
	if (r != nil) != (err == nil) {
		o.t.Fatalf("reset selection of %v: %v, in model %v", p, err, r != nil)
	}
	if r != nil {
		r.pin = -1
	}
}

func hasPath(r *modelRoute, b BackboneID) bool { _, ok := r.paths[b]; return ok }

// check compares every prefix's entry and a spread of lookups with m.
func (o *fuzzOps) check(rng *rand.Rand) {
	ref := refTable{}
	for _, p := range fuzzUniverse {
		e, ok := o.f.Route(p)
		r := o.m[p]
		if ok != (r != nil) {
			o.t.Fatalf("%v: in FIB %v, in model %v", p, ok, r != nil)
		}
		if !ok {
			continue
		}
		var h HolderSet
		for b := range r.paths {
			h |= 1 << b
			if got := o.f.PathLen(e.Route, b); got != int(r.paths[b]) && !(got == -1 && r.paths[b] == unknownPath) {
				o.t.Fatalf("%v on %d: path length %d, want %d", p, b, got, r.paths[b])
			}
		}
		ref[p] = h
		if e.Holders != h || e.Backbone != r.selected() {
			o.t.Fatalf("%v: holders %b selected %d, want %b and %d (pin %d)", p, e.Holders, e.Backbone, h, r.selected(), r.pin)
		}
	}
	checkAgainstRef(o.t, o.f, ref, rng, 64)
}

// FuzzOps runs operation sequences (adds, withdraws, pins, replaces, Updates
// that fail or are refused) on a FIB whose arena range and route limit are
// low enough to be reached, and checks it against the reference after
// every operation.
func FuzzOps(f *testing.F) {
	f.Add([]byte{4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	f.Add([]byte("adds and withdraws of nested prefixes, some pins, a replace"))
	sparse := []byte{}
	for i := range 40 {
		sparse = append(sparse, 0, byte(i%3), byte(14+i%18), 1, 2)
	}
	f.Add(sparse)
	f.Fuzz(func(t *testing.T, data []byte) {
		bbs := []Backbone{{Name: "a", Preference: 1}, {Name: "b", Preference: 1}, {Name: "c", Preference: 1}}
		fb, err := New(bbs, Options{MaxRoutes: 24, Grace: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		fb.maxWords = 1 << 11
		o := &fuzzOps{t: t, f: fb, m: fuzzModel{}, data: data}
		rng := rand.New(rand.NewPCG(uint64(len(data)), 1))
		for len(o.data) > 0 {
			switch o.next() % 4 {
			case 0:
				o.update()
			case 1:
				o.pin()
			case 2:
				o.reset()
			case 3:
				o.update()
			}
			o.check(rng)
		}
		if n := len(fb.Load().words); n > fb.maxWords {
			t.Fatalf("arena %d words, range %d", n, fb.maxWords)
		}
	})
}
