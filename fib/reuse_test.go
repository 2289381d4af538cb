package fib

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"
)

// TestConcurrentIDReuse churns routes with a 1 ms grace period, so that
// route IDs are reused while readers look up, select by ID (racing the
// writer, which holds its lock) and select by prefix. Every answer is
// checked against a model of which ID named which prefix in which Version,
// and at the end the FIB's routes and selections against the model's.
//
// Readers select backbone 0, which holds only "reader" prefixes and is
// their best preference, so the selections they make never change which
// backbone ends up selected, whenever they land; the writer alone selects
// the other prefixes, and the model follows it exactly. Backbone 4 holds
// nothing: selecting it must always fail.
func TestConcurrentIDReuse(t *testing.T) {
	const grace = time.Millisecond
	f, err := New(testBackbones(5), Options{MaxRoutes: 1 << 12, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	f.compactMin = 256 // compact often while readers run
	m := newIDModel(grace)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	readers := make([]idReader, 3)
	for i := range readers {
		wg.Add(1)
		go func(r *idReader, seed uint64) {
			defer wg.Done()
			r.run(f, m, rand.New(rand.NewPCG(seed, 9)), stop)
		}(&readers[i], uint64(i))
	}
	stopped := false
	stopReaders := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopReaders() // also when the writer fails
	m.write(t, f, time.Second)
	stopReaders()

	fresh, selected := 0, 0
	for _, r := range readers {
		for _, e := range r.errs {
			t.Error(e)
		}
		fresh += m.checkObservations(t, r.obs)
		selected += r.selected
	}
	m.checkFinal(t, f)
	t.Logf("%d updates, %d IDs reused, %d compactions; readers: %d answers within the grace period, %d selections by ID",
		m.updates, m.reuses, f.compactions, fresh, selected)
	if m.reuses < 10 || fresh < 1000 || selected == 0 || f.compactions == 0 {
		t.Fatalf("too little happened: %d reuses, %d fresh answers, %d selections, %d compactions", m.reuses, fresh, selected, f.compactions)
	}
}

// churnPrefix is a prefix the writer churns, only ever held by allowed.
type churnPrefix struct {
	p       netip.Prefix
	allowed HolderSet
	readers bool // readers select backbone 0 for it; the writer never selects it
}

// routeLife is one ID naming one prefix in Versions [from, to).
type routeLife struct {
	id       RouteID
	from, to uint64
}

// idRoute is a live prefix in the model.
type idRoute struct {
	id       RouteID
	pathLen  map[BackboneID]int // by holder
	override int                // the writer's selection while it holds, or -1
	life     int                // its index in lives
}

// idModel is what the FIB should hold, and the history of route IDs. Only
// the writer changes it while readers run.
type idModel struct {
	grace    time.Duration
	ps       []churnPrefix
	addrs    []netip.Addr
	covering [][]int // by address: indices of the prefixes containing it, longest first
	live     map[int]*idRoute
	lives    [][]routeLife // by prefix, in order
	liveIDs  map[RouteID]int
	endedAt  map[RouteID]time.Time // before the Update that ended the ID's last life
	updates  int
	reuses   int
}

func newIDModel(grace time.Duration) *idModel {
	m := &idModel{grace: grace, live: map[int]*idRoute{}, liveIDs: map[RouteID]int{}, endedAt: map[RouteID]time.Time{}}
	readerSets := []HolderSet{0b011, 0b101, 0b111} // backbone 0 and others
	writerSets := []HolderSet{0b1010, 0b1100, 0b1110}
	// Few prefixes, so that readers often select a route the writer is
	// changing at that moment.
	for i := 0; i < 16; i++ {
		c := churnPrefix{readers: i%2 == 0, allowed: writerSets[i/2%3]}
		if c.readers {
			c.allowed = readerSets[i/2%3]
		}
		for _, s := range []string{"10.%[1]d.0.0/16", "10.%[1]d.%[1]d.0/24", "10.%[1]d.%[1]d.128/25", "2001:db8:%[1]x::/48", "2001:db8:%[1]x:%[1]x::/64"} {
			c.p = netip.MustParsePrefix(fmt.Sprintf(s, i))
			m.ps = append(m.ps, c)
		}
	}
	m.lives = make([][]routeLife, len(m.ps))
	for _, c := range m.ps {
		b := c.p.Addr().AsSlice()
		b[len(b)-1] |= 0x81
		a, _ := netip.AddrFromSlice(b)
		var cov []int
		for j, d := range m.ps {
			if d.p.Contains(a) {
				cov = append(cov, j)
			}
		}
		sort.Slice(cov, func(x, y int) bool { return m.ps[cov[x]].p.Bits() > m.ps[cov[y]].p.Bits() })
		m.addrs = append(m.addrs, a)
		m.covering = append(m.covering, cov)
	}
	return m
}

// write churns routes for d: single changes and batches, each its own
// Update, and the writer's selections of its own prefixes.
func (m *idModel) write(t *testing.T, f *FIB, d time.Duration) {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if rng.IntN(8) == 0 {
			m.writerSelect(t, f, rng)
			continue
		}
		n := 1
		if rng.IntN(4) == 0 {
			n = 2 + rng.IntN(4) // a prefix may go and come back in one Version
		}
		m.update(t, f, rng, n)
	}
}

// update makes n random changes in one Update and dates the lives they
// began and ended with its Version. It checks the grace period: an ID
// named no prefix for at least that long before it names another.
func (m *idModel) update(t *testing.T, f *FIB, rng *rand.Rand, n int) {
	t.Helper()
	var began, ended [][2]int // prefix, life
	before := time.Now()
	err := f.Update(func(tx *Txn) error {
		for range n {
			if err := m.change(tx, rng, &began, &ended); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after, g := time.Now(), f.Load().Generation()
	m.updates++
	endedIn := map[RouteID][2]int{}
	for _, x := range ended {
		endedIn[m.lives[x[0]][x[1]].id] = x
	}
	for _, x := range began {
		l := &m.lives[x[0]][x[1]]
		l.from = g
		if y, ok := endedIn[l.id]; ok && y != x {
			t.Fatalf("route ID %d named %v and %v in the same Update", l.id, m.ps[y[0]].p, m.ps[x[0]].p)
		}
		if at, ok := m.endedAt[l.id]; ok {
			if after.Sub(at) < m.grace {
				t.Fatalf("route ID %d reused for %v %v after it was withdrawn; grace %v", l.id, m.ps[x[0]].p, after.Sub(at), m.grace)
			}
			m.reuses++
		}
	}
	for _, x := range ended {
		l := &m.lives[x[0]][x[1]]
		l.to = g
		m.endedAt[l.id] = before
	}
}

// change adds or withdraws one random route through tx and in the model.
func (m *idModel) change(tx *Txn, rng *rand.Rand, began, ended *[][2]int) error {
	i := rng.IntN(len(m.ps))
	p, bs := m.ps[i].p, m.ps[i].allowed.IDs()
	b := bs[rng.IntN(len(bs))]
	r := m.live[i]
	if rng.IntN(2) == 0 {
		pl := rng.IntN(6) - 1 // -1: the source gave none
		if err := tx.Add(b, p, pl); err != nil {
			return err
		}
		if r == nil {
			id, _, ok := tx.Held(b, p)
			if !ok {
				return fmt.Errorf("%v missing right after Add", p)
			}
			if j, ok := m.liveIDs[id]; ok {
				return fmt.Errorf("new route %v got ID %d, which %v has", p, id, m.ps[j].p)
			}
			r = &idRoute{id: id, pathLen: map[BackboneID]int{}, override: -1, life: len(m.lives[i])}
			m.lives[i] = append(m.lives[i], routeLife{id: id, to: math.MaxUint64})
			m.live[i], m.liveIDs[id] = r, i
			*began = append(*began, [2]int{i, r.life})
		}
		r.pathLen[b] = pl
		return nil
	}
	held, err := tx.Withdraw(b, p)
	if err != nil {
		return err
	}
	if _, want := r.pathLenOf(b); held != want {
		return fmt.Errorf("Withdraw(%d, %v) reported %v, want %v", b, p, held, want)
	}
	if !held {
		return nil
	}
	delete(r.pathLen, b)
	if r.override == int(b) {
		r.override = -1
	}
	if len(r.pathLen) == 0 {
		delete(m.live, i)
		delete(m.liveIDs, r.id)
		*ended = append(*ended, [2]int{i, r.life})
	}
	return nil
}

// writerSelect selects a backbone for one of the writer's prefixes: no
// reader selects those, so the model predicts the outcome exactly.
func (m *idModel) writerSelect(t *testing.T, f *FIB, rng *rand.Rand) {
	t.Helper()
	i := rng.IntN(len(m.ps))
	for m.ps[i].readers {
		i = rng.IntN(len(m.ps))
	}
	bs := m.ps[i].allowed.IDs()
	b := bs[rng.IntN(len(bs))]
	err := f.Select(m.ps[i].p, b)
	r := m.live[i]
	var want error
	if _, held := r.pathLenOf(b); r == nil {
		want = ErrNoRoute
	} else if !held {
		want = ErrNotHeld
	} else {
		r.override = int(b)
	}
	if (want == nil) != (err == nil) || !errors.Is(err, want) {
		t.Fatalf("Select(%v, %d): %v, want %v", m.ps[i].p, b, err, want)
	}
}

func (r *idRoute) pathLenOf(b BackboneID) (int, bool) {
	if r == nil {
		return 0, false
	}
	pl, ok := r.pathLen[b]
	return pl, ok
}

func (r *idRoute) holders() HolderSet {
	var h HolderSet
	for b := range r.pathLen {
		h |= 1 << b
	}
	return h
}

// selected is the backbone the FIB must have selected for r: the writer's
// choice while it holds, else the default, the lowest ID (preferences rise
// with the ID). Readers only ever select backbone 0, which is the default
// wherever it holds.
func (r *idRoute) selected() BackboneID {
	if r.override >= 0 {
		return BackboneID(r.override)
	}
	return slices.Min(slices.Collect(maps.Keys(r.pathLen)))
}

// idObs is one answer a reader got.
type idObs struct {
	gen      uint64
	addr     uint16
	id       RouteID
	bb       BackboneID
	holders  HolderSet // Lookup's; Forward gives none
	lookup   bool
	selected bool // SelectRoute(id, 0) succeeded
	fresh    bool // read within the grace period of loading the Version
}

type idReader struct {
	obs      []idObs
	selected int
	errs     []string
}

const maxReaderObs = 100_000

// run looks up batches of addresses, one Version each, selects backbone 0
// (and 4, which must fail) for every route found, and now and then selects
// by prefix, until stop.
func (r *idReader) run(f *FIB, m *idModel, rng *rand.Rand, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		start := len(r.obs)
		t0 := time.Now() // before Load: no ID the Version names is reused before t0 + grace
		v := f.Load()
		for range 8 {
			o := idObs{gen: v.Generation(), addr: uint16(rng.IntN(len(m.addrs)))}
			r.lookup(f, v, m.addrs[o.addr], &o, rng.IntN(2) == 0)
			if len(r.obs) < maxReaderObs {
				r.obs = append(r.obs, o)
			}
		}
		fresh := time.Since(t0) < m.grace
		for j := start; j < len(r.obs); j++ {
			r.obs[j].fresh = fresh
		}
		if c := m.ps[rng.IntN(len(m.ps))]; c.readers && rng.IntN(8) == 0 {
			if err := f.Select(c.p, 0); err != nil && !isSelectMiss(err) {
				r.fail("Select(%v, 0): %v", c.p, err)
			}
			if err := f.Select(c.p, 4); !isSelectMiss(err) {
				r.fail("Select(%v, 4) of a backbone that holds nothing: %v", c.p, err)
			}
		}
	}
}

func (r *idReader) lookup(f *FIB, v *Version, a netip.Addr, o *idObs, full bool) {
	if o.lookup = full; full {
		e, _ := v.Lookup(a)
		o.id, o.bb, o.holders = e.Route, e.Backbone, e.Holders
	} else {
		o.id, o.bb, _ = v.Forward(a)
	}
	if o.id == 0 {
		return
	}
	switch err := f.SelectRoute(o.id, 0); {
	case err == nil:
		o.selected = true
		r.selected++
	case !isSelectMiss(err):
		r.fail("SelectRoute(%d, 0): %v", o.id, err)
	}
	if err := f.SelectRoute(o.id, 4); !isSelectMiss(err) {
		r.fail("SelectRoute(%d, 4) of a backbone that holds nothing: %v", o.id, err)
	}
}

func (r *idReader) fail(format string, args ...any) {
	if len(r.errs) < 10 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// lifeAt is the life of prefix i that Version gen holds, if any.
func (m *idModel) lifeAt(i int, gen uint64) (routeLife, bool) {
	ls := m.lives[i]
	k := sort.Search(len(ls), func(k int) bool { return ls[k].from > gen }) - 1
	if k < 0 || gen >= ls[k].to {
		return routeLife{}, false
	}
	return ls[k], true
}

// expectAt is the route Version gen must answer for address ai, the
// longest prefix in it that contains the address, and that prefix.
func (m *idModel) expectAt(ai int, gen uint64) (RouteID, int) {
	for _, i := range m.covering[ai] {
		if l, ok := m.lifeAt(i, gen); ok {
			return l.id, i
		}
	}
	return 0, -1
}

// checkObservations checks a reader's answers: the trie's answer is its
// Version's longest match, however late it was read; what the route's state
// said (holders, selection) only for answers read within the grace period
// of the Load, as the FIB promises no more. It returns how many were.
func (m *idModel) checkObservations(t *testing.T, obs []idObs) (fresh int) {
	t.Helper()
	for _, o := range obs {
		a := m.addrs[o.addr]
		id, i := m.expectAt(int(o.addr), o.gen)
		if o.id != id {
			t.Fatalf("Version %d answered %v with route %d, want %d", o.gen, a, o.id, id)
		}
		if id == 0 || !o.fresh {
			continue
		}
		fresh++
		p, al := m.ps[i].p, m.ps[i].allowed
		switch {
		case o.lookup && (o.holders == 0 || o.holders&^al != 0 || !o.holders.Has(o.bb)):
			t.Fatalf("Version %d: %v (%v): holders %b, selected %d; want a selected holder, all in %b", o.gen, a, p, o.holders, o.bb, al)
		case !al.Has(o.bb):
			t.Fatalf("Version %d: %v (%v) via backbone %d, which never holds it", o.gen, a, p, o.bb)
		case o.selected && !al.Has(0):
			t.Fatalf("SelectRoute(%d, 0) succeeded for %v, which backbone 0 never holds", id, p)
		}
	}
	return fresh
}

// checkFinal compares the FIB, quiet now, with the model: each backbone's
// routes and path lengths, each prefix's ID, holders and selection, the
// overrides, and lookups (trie, state word and selection byte agreeing).
func (m *idModel) checkFinal(t *testing.T, f *FIB) {
	t.Helper()
	for b := BackboneID(0); b < 5; b++ {
		got, want := map[netip.Prefix]int{}, map[netip.Prefix]int{}
		f.Routes(b, func(p netip.Prefix, pl int) bool { got[p] = pl; return true })
		for i, r := range m.live {
			if pl, ok := r.pathLen[b]; ok {
				want[m.ps[i].p] = pl
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("backbone %d holds %v, want %v", b, got, want)
		}
	}
	st := f.Stats()
	for b, n := range st.Held {
		want := 0
		for _, r := range m.live {
			if _, ok := r.pathLen[BackboneID(b)]; ok {
				want++
			}
		}
		if n != want {
			t.Errorf("Stats: backbone %d holds %d routes, want %d", b, n, want)
		}
	}
	if st.IPv4Routes+st.IPv6Routes != len(m.live) {
		t.Errorf("Stats: %d routes, want %d", st.IPv4Routes+st.IPv6Routes, len(m.live))
	}
	// Selections reads state words alone: a withdrawn route's must stay
	// withdrawn, whatever readers selected on its ID.
	wantSel := make([]int, 5)
	for _, r := range m.live {
		wantSel[r.selected()]++
	}
	if got, _ := f.Selections(); !slices.Equal(got, wantSel) {
		t.Errorf("Selections: %v routes on each backbone, want %v", got, wantSel)
	}
	sel, over := map[netip.Prefix]BackboneID{}, map[netip.Prefix]BackboneID{}
	f.EachSelected(func(p netip.Prefix, b BackboneID) bool { sel[p] = b; return true })
	f.Overrides(func(p netip.Prefix, b BackboneID) bool { over[p] = b; return true })
	if len(sel) != len(m.live) {
		t.Errorf("%d routes selected, want %d", len(sel), len(m.live))
	}
	for i, c := range m.ps {
		e, ok := f.Route(c.p)
		r := m.live[i]
		if r == nil {
			if ok {
				t.Errorf("%v in the FIB as %+v, withdrawn in the model", c.p, e)
			}
			continue
		}
		want := Entry{Route: r.id, Backbone: r.selected(), Holders: r.holders()}
		if !ok || e != want || sel[c.p] != want.Backbone {
			t.Errorf("%v: %+v (found %v), selected %d; want %+v", c.p, e, ok, sel[c.p], want)
		}
		ob, isOver := over[c.p]
		if !c.readers && (isOver != (r.override >= 0) || isOver && int(ob) != r.override) || c.readers && isOver && ob != 0 {
			t.Errorf("%v: override %d (%v), want the writer's %d", c.p, ob, isOver, r.override)
		}
	}
	v := f.Load()
	for ai, a := range m.addrs {
		id, _ := m.expectAt(ai, v.Generation())
		e, _ := v.Lookup(a)
		fid, fb, _ := v.Forward(a)
		if e.Route != id || fid != id || fb != e.Backbone {
			t.Errorf("%v: Lookup %+v, Forward route %d via %d; want route %d, and Forward's backbone (the selection byte) Lookup's (the state word)", a, e, fid, fb, id)
		}
	}
}
