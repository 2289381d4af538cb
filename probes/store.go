package probes

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/pnap-project/pnap/fib"
)

// StoreOptions size a Store. The zero value is usable.
type StoreOptions struct {
	// Window is how much history a pair's figures cover. Each pair keeps
	// two histograms that rotate every Window/2, so a Snapshot covers
	// between the last Window/2 and the last Window. Default
	// DefaultOptions().Window.
	Window time.Duration
	// MaxPairs bounds the (prefix, backbone) pairs kept; when full, the
	// least recently updated pair is evicted. One pair costs about 22 KB
	// (two histograms of 1408 counters at the default MaxRTT). Default 8192.
	MaxPairs int
	// MaxRTT is the largest RTT a histogram resolves; larger samples are
	// recorded as MaxRTT. Default defaultMaxRTT.
	MaxRTT time.Duration
	// ProbeTimeout is how long an active probe is waited for: a probe
	// charged Lost at t was sent at t - ProbeTimeout
	// (BackboneStats.LastLossSent).
	ProbeTimeout time.Duration
}

// defaultMaxRTT is twice the default probe timeout, for passive handshakes
// that take longer than a probe may.
const defaultMaxRTT = 4 * time.Second

// Histogram resolution: 2 significant digits (at most 1% error) above
// 8.4 ms and 32.8 µs steps below, a WAN RTT's precision for ~11 KB per
// histogram; 3 digits would take about 6 times the memory.
const (
	histUnit   = 1 << 15 // ns: the lowest discernible value
	histDigits = 2
)

// Outcome is how an active probe ended.
type Outcome uint8

// The outcomes.
const (
	Answered    Outcome = iota // an echo reply, SYN-ACK or RST from the target
	Lost                       // no answer within the timeout
	Unreachable                // an ICMP error from a router on the way
	// LateAnswer is an answer to a probe already charged Lost: it takes
	// the loss back (the path delivered; something was slow) and gives no
	// RTT (the delay may be the box's own, not the path's).
	LateAnswer
)

// Store keeps per (route, backbone) measurements over a sliding window. One
// goroutine (the probes runner) records; Snapshot may be called from any
// goroutine. A mutex serialises them: recording is not the fast path. A
// Snapshot at 1000 prefixes × 4 backbones holds it for ~0.6 ms when few
// pairs changed since the last one, ~13 ms when all did: a changed pair's
// percentiles are three walks of its histogram (BenchmarkSnapshot).
type Store struct {
	mu       sync.Mutex
	half     int64 // ns: the rotation period, Window/2
	timeout  int64 // ns: StoreOptions.ProbeTimeout
	maxPairs int
	maxRTT   int64
	clock    clock
	resolve  func(fib.RouteID) netip.Prefix

	routes map[fib.RouteID]*routeRec
	list   []*routeRec // the same records, for iteration without a map
	pairs  int
	// lru is the sentinel of a ring of pairs, most recently updated first.
	lru       pair
	freeHists []*hdr.Histogram
	bb        [fib.MaxBackbones]bbRec

	evicted, expired, gone uint64
}

type routeRec struct {
	route   fib.RouteID
	prefix  netip.Prefix
	traffic float64
	// trafficBps is the same traffic in bits per second; 0 where only a
	// packet rate was set (SetTraffic).
	trafficBps float64
	idx        int // in Store.list
	pairs      [fib.MaxBackbones]*pair
	n          int
}

// counts are one half-window's (or the whole window's) tallies.
type counts struct {
	samples             [numSources]uint64
	sent, lost, unreach uint64
	// min is the smallest RTT, exact (the histogram would round it, and
	// its Min walks the counters); 0 before any.
	min      int64
	recorded bool // anything at all: a pair with no tallies has no data
}

func (c *counts) add(o counts) {
	for i := range c.samples {
		c.samples[i] += o.samples[i]
	}
	c.sent += o.sent
	c.lost += o.lost
	c.unreach += o.unreach
	c.recorded = c.recorded || o.recorded
	c.addMin(o.min)
}

// unlose takes back one lost probe, if c holds one.
func (c *counts) unlose() {
	if c.lost > c.unreach {
		c.lost--
	}
}

// loss is the share of the probes sent that were lost; 0 before any.
func (c *counts) loss() float64 {
	if c.sent == 0 {
		return 0
	}
	return float64(c.lost) / float64(c.sent)
}

func (c *counts) addMin(v int64) {
	if v > 0 && (c.min == 0 || v < c.min) {
		c.min = v
	}
}

// pair is one (route, backbone). cur holds the current half-window, sum the
// whole window (the previous half plus cur): every sample goes into both,
// and at rotation sum is replaced by cur and cur starts empty. Snapshot
// thus reads percentiles from one histogram without merging.
type pair struct {
	rec        *routeRec
	b          fib.BackboneID
	cur, sum   *hdr.Histogram
	cCur, cSum counts
	epoch      int64 // the half-window cur belongs to
	updated    int64
	prev, next *pair

	stats Stats // as of the last Snapshot that computed it
	dirty bool

	// The last RecentSamples RTTs and when they came, a ring: what
	// Stats.Recent reports.
	recent     [RecentSamples]int64
	recentAt   [RecentSamples]int64
	recentNext int
}

type bbRec struct {
	epoch      int64
	cCur, cSum counts
	updated    int64
	// lossSent is when the latest-sent probe lost on the backbone was
	// sent; 0 before any.
	lossSent int64
}

// setMaxPairs bounds the pairs kept from now on; under a lower bound the
// store shrinks as pairs expire, since a new pair is added only by
// evicting the least recently updated.
func (s *Store) setMaxPairs(n int) {
	s.mu.Lock()
	s.maxPairs = n
	s.mu.Unlock()
}

// NewStore makes a store. resolve names a route's prefix (fib.FIB.Prefix):
// it is called when a route is first recorded and again by Sweep, which
// drops routes whose ID has come to name another prefix. now is the
// monotonic clock that sample times are read from (nanoseconds).
func NewStore(opt StoreOptions, resolve func(fib.RouteID) netip.Prefix, now func() int64) *Store {
	if opt.Window <= 0 {
		opt.Window = DefaultOptions().Window
	}
	if opt.MaxPairs <= 0 {
		opt.MaxPairs = 8192
	}
	if opt.MaxRTT <= 0 {
		opt.MaxRTT = defaultMaxRTT
	}
	s := &Store{
		half:     int64(opt.Window / 2),
		timeout:  int64(opt.ProbeTimeout),
		maxPairs: opt.MaxPairs,
		maxRTT:   int64(opt.MaxRTT),
		clock:    newClock(now),
		resolve:  resolve,
		routes:   make(map[fib.RouteID]*routeRec),
	}
	if s.half <= 0 {
		s.half = 1
	}
	s.lru.next, s.lru.prev = &s.lru, &s.lru
	return s
}

// AddRTT records one RTT sample of route r through backbone b, taken at
// monotonic time at.
func (s *Store) AddRTT(r fib.RouteID, b fib.BackboneID, src Source, rtt time.Duration, at int64) {
	if rtt <= 0 || src >= numSources || b >= fib.MaxBackbones {
		return
	}
	v := min(int64(rtt), s.maxRTT)
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pair(r, b, at)
	if p == nil {
		return
	}
	// v is at most maxRTT, the histograms' highest trackable value, so
	// RecordValue cannot fail.
	p.cur.RecordValue(v)
	p.sum.RecordValue(v)
	p.cCur.samples[src]++
	p.cSum.samples[src]++
	p.cCur.addMin(v)
	p.cSum.addMin(v)
	p.cCur.recorded, p.cSum.recorded = true, true
	p.recent[p.recentNext], p.recentAt[p.recentNext] = v, at
	p.recentNext = (p.recentNext + 1) % RecentSamples
}

// AddOutcome records how one active probe of route r through backbone b
// ended, at monotonic time at.
func (s *Store) AddOutcome(r fib.RouteID, b fib.BackboneID, o Outcome, at int64) {
	if b >= fib.MaxBackbones {
		return
	}
	if o == LateAnswer {
		s.takeBackLoss(r, b, at)
		return
	}
	var c counts
	c.sent, c.recorded = 1, true
	switch o {
	case Lost:
		c.lost = 1
	case Unreachable:
		c.lost, c.unreach = 1, 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	bb := &s.bb[b]
	s.rotateCounts(&bb.epoch, &bb.cCur, &bb.cSum, at)
	bb.cCur.add(c)
	bb.cSum.add(c)
	bb.updated = max(bb.updated, at)
	switch o {
	case Lost:
		bb.lossSent = max(bb.lossSent, at-s.timeout)
	case Unreachable:
		bb.lossSent = max(bb.lossSent, at) // the error came within an RTT of it
	}
	if p := s.pair(r, b, at); p != nil {
		p.cCur.add(c)
		p.cSum.add(c)
	}
}

// takeBackLoss undoes one Lost of route r through b, where the window
// still holds it.
func (s *Store) takeBackLoss(r fib.RouteID, b fib.BackboneID, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	bb := &s.bb[b]
	s.rotateCounts(&bb.epoch, &bb.cCur, &bb.cSum, at)
	bb.cCur.unlose()
	bb.cSum.unlose()
	if p := s.pair(r, b, at); p != nil {
		p.cCur.unlose()
		p.cSum.unlose()
	}
}

// SetTraffic sets route r's traffic estimate (packets per second), which
// orders Snapshot's prefixes. Routes not in the store are ignored.
func (s *Store) SetTraffic(r fib.RouteID, pps float64) {
	s.mu.Lock()
	if rec := s.routes[r]; rec != nil {
		rec.traffic = pps
	}
	s.mu.Unlock()
}

// setTraffic sets every route's traffic estimates from rate, which
// returns packets and bits per second.
func (s *Store) setTraffic(rate func(fib.RouteID) (pps, bps float64)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.list {
		rec.traffic, rec.trafficBps = rate(rec.route)
	}
}

// pair finds or makes the pair, rotates it to at and marks it updated.
// Nil when the route names no prefix (withdrawn since the sample).
func (s *Store) pair(r fib.RouteID, b fib.BackboneID, at int64) *pair {
	rec := s.routes[r]
	if rec != nil {
		if p := rec.pairs[b]; p != nil {
			s.unlink(p)
			s.rotate(p, at)
			s.touch(p, at)
			return p
		}
	}
	pfx := netip.Prefix{}
	if rec != nil {
		pfx = rec.prefix
	} else if pfx = s.resolve(r); !pfx.IsValid() {
		s.gone++
		return nil
	}
	if s.pairs >= s.maxPairs {
		// The victim may be this route's last pair, which drops the route
		// record: look it up again.
		s.evict(s.lru.prev)
		s.evicted++
		rec = s.routes[r]
	}
	if rec == nil {
		rec = &routeRec{route: r, prefix: pfx, idx: len(s.list)}
		s.routes[r] = rec
		s.list = append(s.list, rec)
	}
	p := &pair{rec: rec, b: b, cur: s.newHist(), sum: s.newHist(), epoch: at / s.half}
	rec.pairs[b] = p
	rec.n++
	s.pairs++
	s.touch(p, at)
	return p
}

// touch moves p to the front of the LRU ring: most recently updated.
func (s *Store) touch(p *pair, at int64) {
	p.next, p.prev = s.lru.next, &s.lru
	s.lru.next.prev = p
	s.lru.next = p
	p.updated = max(p.updated, at)
	p.dirty = true
}

func (s *Store) newHist() *hdr.Histogram {
	if n := len(s.freeHists); n > 0 {
		h := s.freeHists[n-1]
		s.freeHists = s.freeHists[:n-1]
		return h
	}
	return hdr.New(histUnit, s.maxRTT, histDigits)
}

func (s *Store) freeHist(h *hdr.Histogram) {
	// A few spares spare the allocator the churn of evict-then-create at
	// the cap; more would only hold memory.
	if len(s.freeHists) < 64 {
		h.Reset()
		s.freeHists = append(s.freeHists, h)
	}
}

func (s *Store) unlink(p *pair) {
	p.prev.next = p.next
	p.next.prev = p.prev
	p.next, p.prev = nil, nil
}

// evict removes pair p and, with its last pair, its route.
func (s *Store) evict(p *pair) {
	if p == &s.lru {
		return
	}
	s.unlink(p)
	s.freeHist(p.cur)
	s.freeHist(p.sum)
	rec := p.rec
	rec.pairs[p.b] = nil
	rec.n--
	s.pairs--
	if rec.n == 0 {
		s.dropRoute(rec)
	}
}

func (s *Store) dropRoute(rec *routeRec) {
	for _, p := range rec.pairs {
		if p != nil {
			s.unlink(p)
			s.freeHist(p.cur)
			s.freeHist(p.sum)
			s.pairs--
		}
	}
	last := s.list[len(s.list)-1]
	s.list[rec.idx] = last
	last.idx = rec.idx
	s.list[len(s.list)-1] = nil
	s.list = s.list[:len(s.list)-1]
	delete(s.routes, rec.route)
}

// rotate brings p's histograms to the half-window of at. Samples arrive a
// few milliseconds out of order across rings; one from an earlier
// half-window than cur still goes into cur.
func (s *Store) rotate(p *pair, at int64) {
	e := at / s.half
	switch {
	case e <= p.epoch:
		return
	case e == p.epoch+1:
		p.cur, p.sum = p.sum, p.cur
		p.cur.Reset()
		p.cSum, p.cCur = p.cCur, counts{}
	default:
		p.cur.Reset()
		p.sum.Reset()
		p.cCur, p.cSum = counts{}, counts{}
	}
	p.epoch = e
	p.dirty = true
}

func (s *Store) rotateCounts(epoch *int64, cur, sum *counts, at int64) {
	e := at / s.half
	switch {
	case e <= *epoch:
		return
	case e == *epoch+1:
		*sum, *cur = *cur, counts{}
	default:
		*sum, *cur = counts{}, counts{}
	}
	*epoch = e
}

// Sweep drops pairs without data in the window and routes whose ID now
// names another prefix (or none). The runner calls it about once a second.
func (s *Store) Sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.now()
	// Oldest first: stop at the first pair updated within the window.
	for p := s.lru.prev; p != &s.lru; {
		prev := p.prev
		if now/s.half-p.updated/s.half < 2 {
			break // its half-window, or the one after, is still in the window
		}
		s.evict(p)
		s.expired++
		p = prev
	}
	for i := 0; i < len(s.list); {
		rec := s.list[i]
		if s.resolve(rec.route) != rec.prefix {
			s.dropRoute(rec) // moves the last record into i
			s.gone++
			continue
		}
		i++
	}
}

// StoreCounters are the store's event counts since it was made.
type StoreCounters struct {
	Pairs   int    // pairs held now
	Evicted uint64 // pairs dropped at the cap, least recently updated first
	Expired uint64 // pairs dropped for having no data in the window
	// Gone counts routes dropped because their ID no longer names the
	// prefix (and samples dropped because it names none).
	Gone uint64
}

// Counters returns the store's counters.
func (s *Store) Counters() StoreCounters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return StoreCounters{Pairs: s.pairs, Evicted: s.evicted, Expired: s.expired, Gone: s.gone}
}

// Snapshot returns a deep copy of the store's current figures, prefixes
// busiest first. Pairs unchanged since the last Snapshot reuse the figures
// computed then; only changed ones walk their histogram.
func (s *Store) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.now()
	snap := Snapshot{
		Taken:     s.clock.wall(now),
		Prefixes:  make([]PrefixStats, 0, len(s.list)),
		Backbones: make(map[fib.BackboneID]BackboneStats),
	}
	for _, rec := range s.list {
		ps := PrefixStats{Prefix: rec.prefix, Route: rec.route, Traffic: rec.traffic, TrafficBps: rec.trafficBps}
		for _, p := range rec.pairs {
			if p == nil {
				continue
			}
			s.rotate(p, now)
			if !p.cSum.recorded {
				continue // nothing left in the window; Sweep will drop it
			}
			if p.dirty {
				p.stats = s.stats(p)
				p.dirty = false
			}
			if ps.Backbones == nil {
				ps.Backbones = make(map[fib.BackboneID]Stats, rec.n)
			}
			ps.Backbones[p.b] = p.stats
		}
		if ps.Backbones != nil {
			snap.Prefixes = append(snap.Prefixes, ps)
		}
	}
	slices.SortFunc(snap.Prefixes, func(a, b PrefixStats) int {
		if c := cmp.Compare(b.Traffic, a.Traffic); c != 0 {
			return c
		}
		return cmp.Compare(a.Route, b.Route)
	})
	for i := range s.bb {
		bb := &s.bb[i]
		s.rotateCounts(&bb.epoch, &bb.cCur, &bb.cSum, now)
		if !bb.cSum.recorded {
			continue
		}
		snap.Backbones[fib.BackboneID(i)] = BackboneStats{
			ProbesSent:  bb.cSum.sent,
			ProbesLost:  bb.cSum.lost,
			Unreachable: bb.cSum.unreach,
			Loss:        bb.cSum.loss(),
			Updated:     s.clock.wall(bb.updated),
		}
		if bb.lossSent != 0 {
			bs := snap.Backbones[fib.BackboneID(i)]
			bs.LastLossSent = s.clock.wall(bb.lossSent)
			snap.Backbones[fib.BackboneID(i)] = bs
		}
	}
	return snap
}

// recentOf is p's last RecentSamples RTTs within the window, if it has
// that many.
func (s *Store) recentOf(p *pair) Recent {
	var r Recent
	var v [RecentSamples]int64
	now := s.clock.now()
	since := now
	for i, at := range p.recentAt {
		if at == 0 || now-at >= 2*s.half {
			return r
		}
		v[i] = p.recent[i]
		since = min(since, at-v[i])
	}
	slices.Sort(v[:])
	r.N, r.Since = RecentSamples, s.clock.wall(since)
	r.Lo, r.Hi = time.Duration(v[0]), time.Duration(v[RecentSamples-1])
	r.P50 = time.Duration((v[RecentSamples/2-1] + v[RecentSamples/2]) / 2)
	return r
}

func (s *Store) stats(p *pair) Stats {
	st := Stats{
		Samples:     p.cSum.samples,
		Sent:        p.cSum.sent,
		Lost:        p.cSum.lost,
		Unreachable: p.cSum.unreach,
		Loss:        p.cSum.loss(),
		Updated:     s.clock.wall(p.updated),
	}
	st.Recent = s.recentOf(p)
	if h := p.sum; h.TotalCount() > 0 {
		// ValueAtQuantile takes a percentage, not a fraction.
		st.Min = time.Duration(p.cSum.min)
		st.P50 = time.Duration(h.ValueAtQuantile(50))
		st.P95 = time.Duration(h.ValueAtQuantile(95))
		st.P99 = time.Duration(h.ValueAtQuantile(99))
	}
	return st
}
