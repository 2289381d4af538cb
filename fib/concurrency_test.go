package fib

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentReadersNeverSeeInvalidState runs readers that look up
// continuously while a writer changes selections and withdraws and re-adds
// routes. Every answer must have been true at some instant: a route that
// existed, containing the address, via a backbone that held it; and never
// "no route", since a covering /8 exists throughout.
func TestConcurrentReadersNeverSeeInvalidState(t *testing.T) {
	f, err := New(testBackbones(4), Options{MaxRoutes: 1 << 16, Grace: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	f.compactMin = 256 // compact often while readers run
	// Permanent covers, and churned more-specifics: prefix i is only ever
	// given to backbones allowed[i].
	permanent := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	for _, p := range permanent {
		for b := BackboneID(0); b < 2; b++ {
			if err := f.Add(b, p, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	var churn []netip.Prefix
	for i := 0; i < 64; i++ {
		churn = append(churn,
			netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", i)),
			netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i, i)),
			netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.128/25", i, i)),
			netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x::/48", i)),
			netip.MustParsePrefix(fmt.Sprintf("2001:db8:%x:%x::/64", i, i)),
		)
	}
	allowed := func(i int) HolderSet { return HolderSet(0b11<<(i%3)) & 0b1111 }

	// Writer log: RouteID -> prefix, recorded when the ID first appears.
	// Grace is an hour, so no ID is reused during the test.
	var logMu sync.Mutex
	idPrefix := map[RouteID]netip.Prefix{}
	note := func(p netip.Prefix) {
		e, ok := f.Route(p)
		if !ok {
			t.Errorf("route %v missing right after add", p)
			return
		}
		logMu.Lock()
		if old, ok := idPrefix[e.Route]; ok && old != p {
			t.Errorf("route id %d named %v and later %v", e.Route, old, p)
		}
		idPrefix[e.Route] = p
		logMu.Unlock()
	}
	for _, p := range permanent {
		note(p)
	}
	allowedOf := map[netip.Prefix]HolderSet{permanent[0]: 0b11, permanent[1]: 0b11}
	for i, p := range churn {
		allowedOf[p] = allowed(i)
	}

	// Probe addresses inside every churned prefix.
	var addrs []netip.Addr
	for _, p := range churn {
		b := p.Addr().AsSlice()
		b[len(b)-1] |= 0x81
		a, _ := netip.AddrFromSlice(b)
		addrs = append(addrs, a)
	}

	type seen struct {
		addr int
		id   RouteID
		bb   BackboneID
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	var lookups, noRoute atomic.Int64
	observations := make([]map[seen]bool, runtime.GOMAXPROCS(0))
	for r := range observations {
		observations[r] = map[seen]bool{}
		readers.Add(1)
		go func(obs map[seen]bool) {
			defer readers.Done()
			n := int64(0)
			for {
				select {
				case <-stop:
					lookups.Add(n)
					return
				default:
				}
				v := f.Load()
				for i, a := range addrs {
					id, bb, ok := v.Forward(a)
					if !ok {
						noRoute.Add(1)
						continue
					}
					if len(obs) < 200000 {
						obs[seen{i, id, bb}] = true
					}
				}
				n += int64(len(addrs))
			}
		}(observations[r])
	}

	rng := rand.New(rand.NewPCG(3, 4))
	deadline := time.Now().Add(time.Second)
	changes := 0
	for time.Now().Before(deadline) {
		i := rng.IntN(len(churn))
		p := churn[i]
		al := allowed(i)
		bs := al.IDs()
		b := bs[rng.IntN(len(bs))]
		switch rng.IntN(3) {
		case 0:
			if err := f.Add(b, p, rng.IntN(5)); err != nil {
				t.Fatal(err)
			}
			note(p)
		case 1:
			if _, err := f.Withdraw(b, p); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := f.Select(p, b); err != nil && !isSelectMiss(err) {
				t.Fatal(err)
			}
		}
		changes++
	}
	close(stop)
	readers.Wait()

	if noRoute.Load() != 0 {
		t.Fatalf("%d lookups found no route although a covering route existed throughout", noRoute.Load())
	}
	checked := 0
	for _, obs := range observations {
		for o := range obs {
			p, ok := idPrefix[o.id]
			if !ok {
				t.Fatalf("lookup of %v gave route id %d, which never existed", addrs[o.addr], o.id)
			}
			if !p.Contains(addrs[o.addr]) {
				t.Fatalf("lookup of %v gave %v, which does not contain it", addrs[o.addr], p)
			}
			if !allowedOf[p].Has(o.bb) {
				t.Fatalf("lookup of %v gave %v via backbone %d, which never held it", addrs[o.addr], p, o.bb)
			}
			checked++
		}
	}
	if lookups.Load() < int64(len(addrs)) || changes < 100 || f.compactions == 0 {
		t.Fatalf("too little happened: %d lookups, %d changes, %d compactions", lookups.Load(), changes, f.compactions)
	}
	t.Logf("%d lookups during %d changes; %d distinct answers checked", lookups.Load(), changes, checked)
}

func isSelectMiss(err error) bool {
	return err != nil && (errors.Is(err, ErrNotHeld) || errors.Is(err, ErrNoRoute))
}
