package probes

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
)

// Traffic ranks routes by forwarded packet rate, from the forwarder's 1-in-N
// traffic samples, and remembers per route a destination address and TCP
// port seen in that traffic: the active prober's target. Only the probes
// goroutine uses it.
type Traffic struct {
	tau    float64 // ns: the EWMA's time constant
	scale  float64 // packets per sample, per tau
	max    int
	stick  int64 // ns: how long a target stays after it was last seen
	index  map[fib.RouteID]int32
	routes []trafficRec

	ranked  []ranked // scratch for Top and eviction
	evicted uint64
	// resolve names a route's prefix (fib.FIB.Prefix); nil in tests. A
	// record remembers its route's prefix, so that once the FIB gives the
	// ID to another prefix (after its grace period) the old traffic and
	// target are dropped rather than credited to the new one.
	resolve func(fib.RouteID) netip.Prefix
}

type trafficRec struct {
	route  fib.RouteID
	prefix netip.Prefix // as resolve named it when the record was made
	// v decays by e^(-Δt/tau) and gains 1 per sample, so v/tau converges
	// to the sample rate: an EWMA with no fixed tick.
	v    float64
	last int64
	// bytes is v for the samples' IP lengths: the byte rate, which the
	// optimizer's commit checks need and a mean packet size would guess.
	bytes float64
	// first is when the route was first seen: the EWMA has only been
	// filling since, which rate corrects for.
	first int64
	dst   netip.Addr
	port  uint16 // TCP; 0 before any TCP sample
	// When dst and port were last seen. A target sticks while it keeps
	// being seen, so a pair's probe flow stays the same across rounds.
	dstSeen, portSeen int64
}

type ranked struct {
	route fib.RouteID
	rate  float64
}

// TrafficOptions size a Traffic. The zero value is usable.
type TrafficOptions struct {
	// Tau is the rate estimate's time constant. Default 10s: long enough
	// that a prefix's rank survives a lull between rounds, short enough
	// that a new hot prefix is probed within a round or two.
	Tau time.Duration
	// SampleEvery is the forwarder's 1-in-N traffic sampling, so that
	// rates read as forwarded packets per second. Default 1.
	SampleEvery int
	// MaxRoutes bounds the routes tracked; when full the coldest eighth is
	// evicted. Default 65536.
	MaxRoutes int
	// Stick is how long a probe target is kept after it was last seen in
	// the traffic. Default 60s.
	Stick time.Duration
}

// NewTraffic makes a ranking.
func NewTraffic(opt TrafficOptions) *Traffic {
	if opt.Tau <= 0 {
		opt.Tau = 10 * time.Second
	}
	if opt.SampleEvery <= 0 {
		opt.SampleEvery = 1
	}
	if opt.MaxRoutes <= 0 {
		opt.MaxRoutes = 65536
	}
	if opt.Stick <= 0 {
		opt.Stick = time.Minute
	}
	return &Traffic{
		tau:   float64(opt.Tau),
		scale: float64(opt.SampleEvery) * float64(time.Second) / float64(opt.Tau),
		max:   opt.MaxRoutes,
		stick: int64(opt.Stick),
		index: make(map[fib.RouteID]int32),
	}
}

// Add counts one traffic sample.
func (t *Traffic) Add(s *forwarder.Sample) {
	i, ok := t.index[s.Route]
	if !ok {
		if len(t.routes) >= t.max {
			t.evict(s.Time)
		}
		var pfx netip.Prefix
		if t.resolve != nil {
			if pfx = t.resolve(s.Route); !pfx.IsValid() {
				return // withdrawn since the sample
			}
		}
		i = int32(len(t.routes))
		t.index[s.Route] = i
		t.routes = append(t.routes, trafficRec{route: s.Route, prefix: pfx, last: s.Time, first: s.Time})
	}
	r := &t.routes[i]
	if d := s.Time - r.last; d > 0 {
		k := math.Exp(-float64(d) / t.tau)
		r.v *= k
		r.bytes *= k
		r.last = s.Time
	}
	r.v++ // a sample a little older than last (another ring) counts undecayed
	r.bytes += float64(s.Len)
	if r.dst == s.Dst {
		r.dstSeen = max(r.dstSeen, s.Time)
	} else if !r.dst.IsValid() || s.Time-r.dstSeen > t.stick {
		r.dst, r.dstSeen = s.Dst, s.Time
	}
	if s.Proto == 6 && s.DstPort != 0 {
		if r.port == s.DstPort {
			r.portSeen = max(r.portSeen, s.Time)
		} else if r.port == 0 || s.Time-r.portSeen > t.stick {
			r.port, r.portSeen = s.DstPort, s.Time
		}
	}
}

func (r *trafficRec) rate(now int64, t *Traffic) float64 { return r.ewma(r.v, now, t) }

// ewma is x, one of the record's sums, as a per-second rate at now. A
// route seen for less than tau has filled only 1-e^(-age/tau) of its sum;
// dividing by that undoes the bias (as Adam's moment estimates do), so a
// new busy prefix reads as busy at once, not tau later: the optimizer
// moved 8 Mbit/s onto a 5 Mbit/s commit when new prefixes read at a third
// of their rate. The age counts at least tau/10, so that one sample does
// not read as a flood.
func (r *trafficRec) ewma(x float64, now int64, t *Traffic) float64 {
	if d := now - r.last; d > 0 {
		x *= math.Exp(-float64(d) / t.tau)
	}
	age := max(float64(now-r.first), t.tau/10)
	return x * t.scale / -math.Expm1(-age/t.tau)
}

// Rate is route r's estimated forwarded packets per second at now.
func (t *Traffic) Rate(r fib.RouteID, now int64) float64 {
	i, ok := t.index[r]
	if !ok {
		return 0
	}
	return t.routes[i].rate(now, t)
}

// ByteRate is route r's estimated forwarded bytes (IP) per second at now.
func (t *Traffic) ByteRate(r fib.RouteID, now int64) float64 {
	i, ok := t.index[r]
	if !ok {
		return 0
	}
	rec := &t.routes[i]
	return rec.ewma(rec.bytes, now, t)
}

// Target is the destination address and TCP port last seen in route r's
// traffic; port is 0 if no TCP was seen.
func (t *Traffic) Target(r fib.RouteID) (dst netip.Addr, port uint16, ok bool) {
	i, ok := t.index[r]
	if !ok {
		return netip.Addr{}, 0, false
	}
	rec := &t.routes[i]
	return rec.dst, rec.port, true
}

// Len is the number of routes tracked.
func (t *Traffic) Len() int { return len(t.routes) }

// Top appends the n busiest routes at now to dst, busiest first. Routes
// whose ID now names another prefix, or none, are dropped first.
func (t *Traffic) Top(n int, now int64, dst []fib.RouteID) []fib.RouteID {
	t.dropReused()
	t.rank(now)
	slices.SortFunc(t.ranked, func(a, b ranked) int {
		if c := cmp.Compare(b.rate, a.rate); c != 0 {
			return c
		}
		return cmp.Compare(a.route, b.route)
	})
	for _, r := range t.ranked[:min(n, len(t.ranked))] {
		dst = append(dst, r.route)
	}
	return dst
}

func (t *Traffic) rank(now int64) {
	t.ranked = t.ranked[:0]
	for i := range t.routes {
		t.ranked = append(t.ranked, ranked{t.routes[i].route, t.routes[i].rate(now, t)})
	}
}

// evict drops the coldest eighth of the routes, so that a full table
// sorts once per max/8 new routes rather than once per route.
func (t *Traffic) evict(now int64) {
	t.rank(now)
	slices.SortFunc(t.ranked, func(a, b ranked) int { return cmp.Compare(a.rate, b.rate) })
	for _, r := range t.ranked[:max(1, len(t.ranked)/8)] {
		t.remove(r.route)
		t.evicted++
	}
}

func (t *Traffic) dropReused() {
	if t.resolve == nil {
		return
	}
	for i := 0; i < len(t.routes); {
		if t.resolve(t.routes[i].route) != t.routes[i].prefix {
			t.remove(t.routes[i].route) // moves the last record into i
			continue
		}
		i++
	}
}

func (t *Traffic) remove(r fib.RouteID) {
	i, ok := t.index[r]
	if !ok {
		return
	}
	last := len(t.routes) - 1
	if int(i) != last {
		t.routes[i] = t.routes[last]
		t.index[t.routes[i].route] = i
	}
	t.routes[last] = trafficRec{}
	t.routes = t.routes[:last]
	delete(t.index, r)
}

// Expire drops routes silent for about five time constants (decayed
// below 1% of one sample): they are not worth probing and need not hold
// memory.
func (t *Traffic) Expire(now int64) {
	for i := 0; i < len(t.routes); {
		if t.routes[i].rate(now, t) < 0.01*t.scale {
			t.remove(t.routes[i].route) // moves the last record into i
			continue
		}
		i++
	}
}
