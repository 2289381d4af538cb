package daemon

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/probes"
)

type FIBAnswer struct {
	Address  string   `json:"address"`
	Prefix   string   `json:"prefix"`
	Route    uint32   `json:"route"`
	Backbone string   `json:"backbone"`
	Holders  []string `json:"holders"`
	// Why the backbone: "default" (preference, then AS path), "optimizer"
	// (moved by measurements) or "pinned" (an operator).
	Why     string `json:"why"`
	Default string `json:"default"`
}

func (d *Daemon) fibShow(r *http.Request) (any, error) {
	cfg := d.cfg.Load()
	q := r.URL.Query().Get("addr")
	a, err := netip.ParseAddr(q)
	if err != nil {
		return nil, badRequest("addr %q is not an IP address", q)
	}
	e, ok := d.fib.Load().Lookup(a)
	if !ok {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("no route for %v", a)}
	}
	p := d.fib.Prefix(e.Route)
	j := FIBAnswer{Address: a.String(), Prefix: p.String(), Route: uint32(e.Route), Backbone: cfg.Backbones[e.Backbone].Name}
	for _, id := range e.Holders.IDs() {
		j.Holders = append(j.Holders, cfg.Backbones[id].Name)
	}
	def := d.fib.DefaultAmong(e.Route, e.Holders)
	j.Default = cfg.Backbones[def].Name
	switch {
	case d.ctl.pins.Has(p):
		j.Why = "pinned"
	case e.Backbone != def:
		j.Why = "optimizer"
	default:
		j.Why = "default"
	}
	return j, nil
}

type Measurement struct {
	Prefix     string                         `json:"prefix"`
	TrafficPPS float64                        `json:"traffic_pps"`
	Selected   string                         `json:"selected"`
	Backbones  map[string]BackboneMeasurement `json:"backbones"`
}

type BackboneMeasurement struct {
	MinMs   float64 `json:"min_ms"`
	P50Ms   float64 `json:"p50_ms"`
	P95Ms   float64 `json:"p95_ms"`
	P99Ms   float64 `json:"p99_ms"`
	Loss    float64 `json:"loss"`
	Passive uint64  `json:"samples_passive"`
	Active  uint64  `json:"samples_active"`
	Sent    uint64  `json:"probes_sent"`
	Lost    uint64  `json:"probes_lost"`
	Updated string  `json:"updated"`
}

func limitParam(r *http.Request, def, most int) (int, error) {
	q := r.URL.Query().Get("limit")
	if q == "" {
		return def, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > most {
		return 0, badRequest("limit %q: use a number from 1 to %d", q, most)
	}
	return n, nil
}

func (d *Daemon) measurements(r *http.Request) (any, error) {
	cfg := d.cfg.Load()
	n, err := limitParam(r, 100, 100000)
	if err != nil {
		return nil, err
	}
	if d.ctl.probes == nil {
		return nil, &apiError{http.StatusNotFound, "probes are disabled ([probes] enabled = false)"}
	}
	snap := d.ctl.probes.Snapshot()
	out := []Measurement{}
	for _, p := range snap.Prefixes {
		if len(out) == n {
			break
		}
		m := Measurement{Prefix: p.Prefix.String(), TrafficPPS: p.Traffic, Backbones: map[string]BackboneMeasurement{}}
		// The prefix's own route: a lookup of its first address would find
		// a more-specific one there, selected apart.
		if e, ok := d.fib.Route(p.Prefix); ok {
			m.Selected = cfg.Backbones[e.Backbone].Name
		}
		ids := make([]int, 0, len(p.Backbones))
		for b := range p.Backbones {
			ids = append(ids, int(b))
		}
		sort.Ints(ids)
		for _, b := range ids {
			st := p.Backbones[fib.BackboneID(b)]
			m.Backbones[cfg.Backbones[b].Name] = BackboneMeasurement{
				MinMs: msf(st.Min), P50Ms: msf(st.P50), P95Ms: msf(st.P95), P99Ms: msf(st.P99), Loss: st.Loss,
				Passive: st.Samples[probes.Passive], Active: st.Samples[probes.Active], Sent: st.Sent, Lost: st.Lost,
				Updated: st.Updated.UTC().Format(time.RFC3339Nano),
			}
		}
		out = append(out, m)
	}
	return out, nil
}

func msf(d time.Duration) float64 { return float64(d) / 1e6 }

type Decision struct {
	Time     string  `json:"time"`
	Prefix   string  `json:"prefix"`
	From     string  `json:"from"`
	To       string  `json:"to"`
	Reason   string  `json:"reason"`
	FromMs   float64 `json:"from_score_ms"`
	ToMs     float64 `json:"to_score_ms"`
	FromRTT  float64 `json:"from_rtt_ms"`
	ToRTT    float64 `json:"to_rtt_ms"`
	FromLoss float64 `json:"from_loss"`
	ToLoss   float64 `json:"to_loss"`
}

func (d *Daemon) decisions(r *http.Request) (any, error) {
	n, err := limitParam(r, 50, 10000)
	if err != nil {
		return nil, err
	}
	out := []Decision{}
	if d.ctl.opt == nil {
		return out, nil
	}
	for _, e := range d.ctl.opt.Events(n) {
		out = append(out, Decision{
			Time: e.Time.UTC().Format(time.RFC3339Nano), Prefix: e.Prefix.String(), From: e.From.Name, To: e.To.Name, Reason: e.Reason.String(),
			FromMs: e.From.Score, ToMs: e.To.Score, FromRTT: msf(e.From.RTT), ToRTT: msf(e.To.RTT), FromLoss: e.From.Loss, ToLoss: e.To.Loss,
		})
	}
	return out, nil
}

type Pin struct {
	Prefix   string `json:"prefix"`
	Backbone string `json:"backbone"`
	Since    string `json:"since,omitempty"`
}

func (d *Daemon) pinList() []Pin {
	out := []Pin{}
	for _, p := range d.ctl.pins.List() {
		out = append(out, Pin{Prefix: p.Prefix.String(), Backbone: p.Name, Since: p.Since.UTC().Format(time.RFC3339)})
	}
	return out
}

func (d *Daemon) pin(r *http.Request) (any, error) {
	var req Pin
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("body: %v; send {\"prefix\": \"192.0.2.0/24\", \"backbone\": \"NAME\"}", err)
	}
	p, err := netip.ParsePrefix(req.Prefix)
	if err != nil || p != p.Masked() {
		return nil, badRequest("prefix %q is not a canonical prefix like 192.0.2.0/24", req.Prefix)
	}
	b, ok := d.fib.BackboneID(req.Backbone)
	if !ok {
		return nil, badRequest("no backbone %q", req.Backbone)
	}
	e, ok := d.fib.Route(p)
	if !ok {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("%v is not a prefix in the FIB (pnapd fib show ADDR finds the covering one)", p)}
	}
	if !e.Holders.Has(b) {
		return nil, &apiError{http.StatusConflict, fmt.Sprintf("backbone %q holds no route for %v", req.Backbone, p)}
	}
	if err := d.ctl.pins.Pin(p, b); err != nil {
		return nil, &apiError{http.StatusConflict, err.Error()}
	}
	d.keepState()
	return Pin{Prefix: p.String(), Backbone: req.Backbone}, nil
}

func (d *Daemon) unpin(r *http.Request) (any, error) {
	q := r.URL.Query().Get("prefix")
	p, err := netip.ParsePrefix(q)
	if err != nil {
		return nil, badRequest("prefix %q is not a prefix", q)
	}
	was, err := d.ctl.pins.Unpin(p)
	if err != nil {
		return nil, &apiError{http.StatusConflict, err.Error()}
	}
	if !was {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("%v is not pinned", p)}
	}
	d.keepState()
	return map[string]string{"unpinned": p.String()}, nil
}

// RouteEntry is one route a backbone holds, as GET /v1/routes lists it.
type RouteEntry struct {
	Prefix   string `json:"prefix"`
	PathLen  int    `json:"as_path_len"` // -1: unknown (route files, static)
	Selected bool   `json:"selected"`    // this backbone carries the prefix now
}

// routeList is GET /v1/routes?backbone=NAME[&prefix=P][&limit=N]: what the
// backbone holds (like birdc show route protocol X), or only prefix P.
func (d *Daemon) routeList(r *http.Request) (any, error) {
	name := r.URL.Query().Get("backbone")
	b, ok := d.fib.BackboneID(name)
	if !ok {
		return nil, badRequest("no backbone %q; give ?backbone=NAME", name)
	}
	if q := r.URL.Query().Get("prefix"); q != "" {
		p, err := netip.ParsePrefix(q)
		if err != nil || p != p.Masked() {
			return nil, badRequest("prefix %q is not a canonical prefix like 192.0.2.0/24", q)
		}
		e, ok := d.fib.Route(p)
		if !ok || !e.Holders.Has(b) {
			return nil, &apiError{http.StatusNotFound, fmt.Sprintf("backbone %q holds no route for %v", name, p)}
		}
		return []RouteEntry{{Prefix: p.String(), PathLen: d.fib.PathLen(e.Route, b), Selected: e.Backbone == b}}, nil
	}
	n, err := limitParam(r, 1000, 10_000_000)
	if err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	d.fib.Routes(b, func(p netip.Prefix, _ int) bool {
		ps = append(ps, p)
		return len(ps) < n
	})
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := make([]RouteEntry, 0, len(ps))
	for _, p := range ps {
		// Route takes the lock Routes holds: looked up after.
		if e, ok := d.fib.Route(p); ok && e.Holders.Has(b) {
			out = append(out, RouteEntry{Prefix: p.String(), PathLen: d.fib.PathLen(e.Route, b), Selected: e.Backbone == b})
		}
	}
	return out, nil
}
