package fib

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// sparseHosts are IPv6 /128s, each under a /24 of its own: every one takes
// a chain of 13 trie nodes, the most lookup structure a route can cost.
func sparseHosts(from, n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		k := from + i
		var b [16]byte
		b[0], b[1], b[2], b[15] = 0x20+byte(k>>16), byte(k>>8), byte(k), 1
		ps[i] = netip.PrefixFrom(netip.AddrFrom16(b), 128)
	}
	return ps
}

// fibSnapshot is everything a caller can observe of a FIB's routes.
type fibSnapshot struct {
	entries map[netip.Prefix]Entry
	paths   map[string]int // backbone/prefix → AS-path length
	pinned  map[netip.Prefix]BackboneID
}

func snapshot(f *FIB) fibSnapshot {
	s := fibSnapshot{map[netip.Prefix]Entry{}, map[string]int{}, map[netip.Prefix]BackboneID{}}
	for b := range f.backbones {
		f.Routes(BackboneID(b), func(p netip.Prefix, pathLen int) bool {
			s.entries[p] = Entry{}
			s.paths[fmt.Sprintf("%d/%v", b, p)] = pathLen
			return true
		})
	}
	// Route takes the writer lock that Routes holds.
	for p := range s.entries {
		s.entries[p], _ = f.Route(p)
	}
	f.Overrides(func(p netip.Prefix, b BackboneID) bool {
		s.pinned[p] = b
		return true
	})
	return s
}

func (s fibSnapshot) requireEqual(t *testing.T, f *FIB) {
	t.Helper()
	now := snapshot(f)
	if !maps.Equal(now.entries, s.entries) {
		t.Fatalf("routes changed: %d before, %d now; first difference %s", len(s.entries), len(now.entries), firstDiff(s.entries, now.entries))
	}
	if !maps.Equal(now.paths, s.paths) || !maps.Equal(now.pinned, s.pinned) {
		t.Fatalf("path lengths or pins changed:\n%v %v\n%v %v", s.paths, s.pinned, now.paths, now.pinned)
	}
	// The trie answers as the route set says.
	v := f.Load()
	for p, e := range s.entries {
		got, ok := v.Lookup(p.Addr())
		if !ok || got.Route != e.Route || got.Backbone != e.Backbone {
			t.Fatalf("lookup %v: %+v %v, want %+v", p.Addr(), got, ok, e)
		}
	}
}

func firstDiff(a, b map[netip.Prefix]Entry) string {
	keys := slices.Collect(maps.Keys(a))
	for p := range b {
		if _, ok := a[p]; !ok {
			keys = append(keys, p)
		}
	}
	for _, p := range keys {
		if a[p] != b[p] {
			return fmt.Sprintf("%v: %+v then %+v", p, a[p], b[p])
		}
	}
	return "none"
}

// With the arena's range lowered, adding routes that waste nodes ends in a
// refusal, ErrFull, before any offset could overflow; everything accepted
// still answers, the refused Update leaves the FIB as it was, and space
// comes back when routes go.
func TestFullArenaRefusesAndLeavesFIBUnchanged(t *testing.T) {
	f := mustFIB(t, 2)
	f.maxWords = 1 << 15
	hosts := sparseHosts(0, 2000)
	accepted := 0
	var err error
	for _, p := range hosts {
		if err = f.Add(0, p, 1); err != nil {
			break
		}
		accepted++
	}
	if !errors.Is(err, ErrFull) {
		t.Fatalf("after %d routes: %v, want ErrFull", accepted, err)
	}
	t.Logf("%d routes fit in %d words; refused: %v", accepted, f.maxWords, err)
	if accepted < 100 {
		t.Fatalf("only %d routes fit", accepted)
	}
	if n := len(f.Load().words); n > f.maxWords {
		t.Fatalf("arena of %d words, over its range of %d", n, f.maxWords)
	}
	// Full, an existing prefix can still gain a holder, and be pinned.
	if err := f.Add(1, hosts[0], 1); err != nil {
		t.Fatalf("a second holder for an existing route: %v", err)
	}
	if err := f.Select(hosts[0], 1); err != nil {
		t.Fatal(err)
	}
	before := snapshot(f)
	err = f.Update(func(tx *Txn) error {
		for _, p := range hosts[:10] {
			if _, err := tx.Withdraw(0, p); err != nil {
				return err
			}
		}
		if _, err := tx.Withdraw(1, hosts[0]); err != nil {
			return err
		}
		for _, p := range hosts[accepted:] {
			if err := tx.Add(0, p, 1); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrFull) {
		t.Fatalf("an Update past the limit: %v, want ErrFull", err)
	}
	before.requireEqual(t, f)
	if _, ok := f.Load().Lookup(hosts[accepted].Addr()); ok {
		t.Fatalf("the refused route %v is in the FIB", hosts[accepted])
	}
	// Withdrawing half makes room again.
	for _, p := range hosts[:accepted/2] {
		if _, err := f.Withdraw(0, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Add(0, hosts[accepted], 1); err != nil {
		t.Fatalf("after withdrawing half: %v", err)
	}
}

// The table from the review: 100,000 IPv6 /128s, each in a different /24,
// loaded as one Update (a route file) needs 77 MiB of lookup structure,
// past the 64 MiB that 23-bit offsets address. It used to load and answer
// every lookup wrong; now it is refused and the FIB left empty. Then, one
// Update at a time up to the real limit, everything accepted answers.
func TestSparseTableAtTheRealLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 64 MiB of lookup structure")
	}
	// The default route limit; a short grace so that the refused load's IDs
	// are free again for the chunks.
	f, err := New(testBackbones(1), Options{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	hosts := sparseHosts(0, 100_000)
	err = f.Update(func(tx *Txn) error {
		for _, p := range hosts {
			if err := tx.Add(0, p, -1); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "lookup structure") {
		t.Fatalf("100,000 sparse /128s: %v, want the lookup structure full", err)
	}
	if st := f.Stats(); st.IPv4Routes+st.IPv6Routes != 0 {
		t.Fatalf("refused load left %d routes", st.IPv4Routes+st.IPv6Routes)
	}
	if _, ok := f.Load().Lookup(hosts[0].Addr()); ok {
		t.Fatal("refused load left a route in the trie")
	}
	accepted := 0
	for from := 0; ; from += 1000 {
		err = f.Update(func(tx *Txn) error {
			for _, p := range hosts[from : from+1000] {
				if err := tx.Add(0, p, -1); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			break
		}
		accepted = from + 1000
	}
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "lookup structure") {
		t.Fatal(err)
	}
	v := f.Load()
	t.Logf("%d routes, arena %d MiB of %d", accepted, len(v.words)*8>>20, maxArenaWords*8>>20)
	if len(v.words) > maxArenaWords || len(v.words) < maxArenaWords/2 {
		t.Fatalf("arena of %d words: not near the range of %d", len(v.words), maxArenaWords)
	}
	for i, p := range hosts {
		e, ok := v.Lookup(p.Addr())
		if ok != (i < accepted) {
			t.Fatalf("lookup %v (route %d of %d accepted): found %v", p, i, accepted, ok)
		}
		if ok && f.Prefix(e.Route) != p {
			t.Fatalf("lookup %v: route %d is %v", p, e.Route, f.Prefix(e.Route))
		}
	}
}

// A failed Update is undone completely: routes added, holders gained and
// lost, path lengths, a withdrawn route (back under its own ID) and a pin.
func TestFailedUpdateIsUndone(t *testing.T) {
	f := mustFIB(t, 3)
	for i, p := range []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "2001:db8::/32", "2001:db8:1::/48"} {
		mustAdd(t, f, 0, p, i)
		mustAdd(t, f, 1, p, 5-i)
	}
	mustAdd(t, f, 2, "10.1.0.0/16", 3)
	if err := f.Select(netip.MustParsePrefix("10.1.0.0/16"), 2); err != nil {
		t.Fatal(err)
	}
	before := snapshot(f)
	refused := errors.New("refused")
	err := f.Update(func(tx *Txn) error {
		tx.Add(2, netip.MustParsePrefix("192.0.2.0/24"), 1)      // new route
		tx.Add(2, netip.MustParsePrefix("10.0.0.0/8"), 1)        // new holder
		tx.Add(0, netip.MustParsePrefix("10.1.2.0/24"), 9)       // new length
		tx.Withdraw(2, netip.MustParsePrefix("10.1.0.0/16"))     // the pinned holder
		tx.Withdraw(0, netip.MustParsePrefix("2001:db8:1::/48")) // one of two holders
		tx.Withdraw(1, netip.MustParsePrefix("2001:db8:1::/48")) // the last one
		tx.Add(1, netip.MustParsePrefix("2001:db8:1::/48"), 1)   // back, under a new ID
		tx.Withdraw(2, netip.MustParsePrefix("192.0.2.0/24"))    // the new route gone again
		_, _, err := tx.Replace(0, func(yield func(netip.Prefix, int) bool) {
			yield(netip.MustParsePrefix("198.51.100.0/24"), 2)
		})
		if err != nil {
			return err
		}
		return refused
	})
	if err != refused {
		t.Fatalf("Update returned %v", err)
	}
	before.requireEqual(t, f)
}
