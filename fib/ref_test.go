package fib

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// refTable is the naive reference: a linear scan for the longest match.
type refTable map[netip.Prefix]HolderSet

func (r refTable) lookup(a netip.Addr) (netip.Prefix, bool) {
	best, ok := netip.Prefix{}, false
	for p := range r {
		if p.Contains(a) && (!ok || p.Bits() > best.Bits()) {
			best, ok = p, true
		}
	}
	return best, ok
}

// randPrefix draws clustered prefixes so that they overlap a lot: few
// distinct high bits, all lengths.
func randPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	if !v6 {
		a := rng.Uint32()&0x0f0f0fff | 0xc0000000
		bits := rng.IntN(33)
		if rng.IntN(3) > 0 {
			bits = 16 + rng.IntN(17)
		}
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), bits).Masked()
	}
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	for i := 2; i < 16; i++ {
		b[i] = byte(rng.IntN(4))
	}
	bits := rng.IntN(129)
	return netip.PrefixFrom(netip.AddrFrom16(b), bits).Masked()
}

func randAddrNear(rng *rand.Rand, ps []netip.Prefix, v6 bool) netip.Addr {
	if len(ps) > 0 && rng.IntN(4) > 0 {
		p := ps[rng.IntN(len(ps))]
		b := p.Addr().AsSlice()
		for i := p.Bits(); i < len(b)*8; i++ {
			if rng.IntN(2) == 1 {
				b[i/8] |= 1 << (7 - i%8)
			}
		}
		a, _ := netip.AddrFromSlice(b)
		return a
	}
	return randPrefix(rng, v6).Addr()
}

func checkAgainstRef(t *testing.T, f *FIB, ref refTable, rng *rand.Rand, n int) {
	t.Helper()
	var ps []netip.Prefix
	for p := range ref {
		ps = append(ps, p)
	}
	v := f.Load()
	for i := 0; i < n; i++ {
		a := randAddrNear(rng, ps, rng.IntN(2) == 1)
		want, wok := ref.lookup(a)
		e, ok := v.Lookup(a)
		if ok != wok {
			t.Fatalf("lookup %v: found=%v, want found=%v (%v)", a, ok, wok, want)
		}
		if !ok {
			continue
		}
		if got := f.Prefix(e.Route); got != want {
			t.Fatalf("lookup %v: got %v, want %v", a, got, want)
		}
		if e.Holders != ref[want] {
			t.Fatalf("lookup %v (%v): holders %b, want %b", a, want, e.Holders, ref[want])
		}
		if !e.Holders.Has(e.Backbone) {
			t.Fatalf("lookup %v: selected %d not among holders %b", a, e.Backbone, e.Holders)
		}
	}
}

func testBackbones(n int) []Backbone {
	bb := make([]Backbone, n)
	for i := range bb {
		bb[i] = Backbone{Name: string(rune('a' + i)), Preference: 100 + i}
	}
	return bb
}

// TestPropertyAgainstReference adds and withdraws random overlapping routes
// from several backbones, one at a time and in batches, and compares every
// lookup with the linear-scan reference.
func TestPropertyAgainstReference(t *testing.T) {
	compactions := 0
	defer func() {
		if compactions < 30 && !t.Failed() {
			t.Errorf("the arena was compacted %d times: compaction is not being checked", compactions)
		}
	}()
	for seed := uint64(1); seed <= 12; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		f, err := New(testBackbones(3), Options{MaxRoutes: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		// Odd seeds compact on every commit, so compaction is checked too.
		f.compactAlways = seed%2 == 1
		ref := refTable{}
		held := map[netip.Prefix]map[BackboneID]bool{}
		var order []netip.Prefix // held's keys in insertion order
		for round := 0; round < 30; round++ {
			batch := 1 + rng.IntN(40)
			err := f.Update(func(tx *Txn) error {
				for k := 0; k < batch; k++ {
					b := BackboneID(rng.IntN(3))
					var p netip.Prefix
					if len(order) > 0 && rng.IntN(3) == 0 {
						// A deterministic pick, so every run of a seed is the same.
						p = order[rng.IntN(len(order))]
						if rng.IntN(2) == 0 {
							if _, err := tx.Withdraw(b, p); err != nil {
								return err
							}
							if held[p][b] {
								delete(held[p], b)
								ref[p] &^= 1 << b
								if len(held[p]) == 0 {
									delete(held, p)
									delete(ref, p)
									order = slices.DeleteFunc(order, func(q netip.Prefix) bool { return q == p })
								}
							}
							continue
						}
					} else {
						p = randPrefix(rng, rng.IntN(2) == 1)
					}
					if err := tx.Add(b, p, rng.IntN(6)); err != nil {
						return err
					}
					if held[p] == nil {
						held[p] = map[BackboneID]bool{}
						order = append(order, p)
					}
					held[p][b] = true
					ref[p] |= 1 << b
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstRef(t, f, ref, rng, 300)
		}
		compactions += f.compactions
		st := f.Stats()
		if st.IPv4Routes+st.IPv6Routes != len(ref) {
			t.Fatalf("seed %d: stats say %d routes, reference has %d", seed, st.IPv4Routes+st.IPv6Routes, len(ref))
		}
	}
}

// TestCompactionKeepsAnswers forces a compaction and checks that the new
// Version answers as before and that a Version loaded before it still does.
func TestCompactionKeepsAnswers(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	f, err := New(testBackbones(2), Options{MaxRoutes: 1 << 14})
	if err != nil {
		t.Fatal(err)
	}
	ref := refTable{}
	err = f.Update(func(tx *Txn) error {
		for i := 0; i < 3000; i++ {
			p := randPrefix(rng, i%2 == 1)
			if err := tx.Add(0, p, 1); err != nil {
				return err
			}
			ref[p] = 1
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	old := f.Load()
	f.mu.Lock()
	f.compact(nil)
	f.publish()
	f.mu.Unlock()
	if &f.Load().words[0] == &old.words[0] {
		t.Fatal("compaction did not make a new arena")
	}
	checkAgainstRef(t, f, ref, rng, 5000)
	var ps []netip.Prefix
	for p := range ref {
		ps = append(ps, p)
	}
	for i := 0; i < 5000; i++ {
		a := randAddrNear(rng, ps, i%2 == 1)
		e1, ok1 := old.Lookup(a)
		e2, ok2 := f.Load().Lookup(a)
		if ok1 != ok2 || e1 != e2 {
			t.Fatalf("%v: before compaction %v %v, after %v %v", a, e1, ok1, e2, ok2)
		}
	}
}
