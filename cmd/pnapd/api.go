package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
)

// daemon is what the status API and the metrics read: the running pnapd.
type daemon struct {
	cfg   *configs.Config
	fib   *fib.FIB
	d     *dataPlane
	ctl   *control
	start time.Time
}

// apiError is a request the API refuses, with its HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// handler serves the API: JSON under /v1/, Prometheus at /metrics. Every
// request needs the bearer token when one is configured.
func (s *daemon) handler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, fn func(r *http.Request) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := fn(r)
			if err != nil {
				status := http.StatusInternalServerError
				var ae *apiError
				if errors.As(err, &ae) {
					status = ae.status
				}
				writeJSON(w, status, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, v)
		})
	}
	route("GET /v1/status", s.status)
	route("GET /v1/ports", func(*http.Request) (any, error) { return s.ports(), nil })
	route("GET /v1/backbones", func(*http.Request) (any, error) { return s.backbones(), nil })
	route("GET /v1/fib", s.fibShow)
	route("GET /v1/measurements", s.measurements)
	route("GET /v1/decisions", s.decisions)
	route("GET /v1/pins", func(*http.Request) (any, error) { return s.pinList(), nil })
	route("POST /v1/pins", s.pin)
	route("DELETE /v1/pins", s.unpin)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path + "; see /v1/status"})
	})
	token := s.cfg.API.Token
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="pnapd"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// listenAPI opens the configured listener: host:port, or a unix socket
// (created 0660, replacing a stale one).
func listenAPI(a configs.API) (net.Listener, error) {
	if path, ok := strings.CutPrefix(a.Listen, "unix:"); ok {
		if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
			os.Remove(path) // left by a pnapd that died
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("[api] listen %q: %w", a.Listen, err)
		}
		os.Chmod(path, 0o660)
		return l, nil
	}
	l, err := net.Listen("tcp", a.Listen)
	if err != nil {
		return nil, fmt.Errorf("[api] listen %q: %w (is another pnapd running?)", a.Listen, err)
	}
	return l, nil
}

// serveAPI serves until ctx ends, then shuts down within a second.
func serveAPI(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("status API", "error", err)
	}
}

type statusJSON struct {
	Version    string  `json:"version"`
	Config     string  `json:"config"`
	UptimeSec  float64 `json:"uptime_seconds"`
	Workers    int     `json:"workers"`
	IPv4Routes int     `json:"ipv4_routes"`
	IPv6Routes int     `json:"ipv6_routes"`
	Generation uint64  `json:"fib_generation"`
	Overrides  int     `json:"overrides"`
	Probes     bool    `json:"probes"`
	Optimizer  bool    `json:"optimizer"`
	Ports      []portJSON
	Backbones  []backboneJSON
}

func (s *daemon) status(*http.Request) (any, error) {
	st := s.fib.Stats()
	_, over := s.fib.Selections()
	return statusJSON{
		Version: version, Config: s.cfg.Path, UptimeSec: time.Since(s.start).Seconds(), Workers: len(s.d.loops),
		IPv4Routes: st.IPv4Routes, IPv6Routes: st.IPv6Routes, Generation: s.fib.Load().Generation(), Overrides: over,
		Probes: s.ctl.probes != nil, Optimizer: s.ctl.opt != nil, Ports: s.ports(), Backbones: s.backbones(),
	}, nil
}

type portJSON struct {
	Name      string            `json:"name"`
	Interface string            `json:"interface"`
	Role      string            `json:"role"`
	Queues    []queueJSON       `json:"queues"`
	Total     queueJSON         `json:"total"`
	Drops     map[string]uint64 `json:"drops"`
}

type queueJSON struct {
	Queue     int    `json:"queue"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Dropped   uint64 `json:"dropped"`
}

// portName is the configured name of the customer or backbone on port i.
func (s *daemon) portName(i int) string {
	if i < len(s.cfg.Customers) {
		return s.cfg.Customers[i].Name
	}
	return s.cfg.Backbones[i-len(s.cfg.Customers)].Name
}

func (s *daemon) ports() []portJSON {
	var out []portJSON
	for i, p := range s.d.plane.Ports {
		pj := portJSON{Name: s.portName(i), Interface: p.Name, Role: roleName(p.Role), Drops: map[string]uint64{}}
		var total forwarder.PortStats
		for q, l := range s.d.loops {
			var st forwarder.PortStats
			l.Worker.Stats(i, &st)
			l.Worker.Stats(i, &total)
			pj.Queues = append(pj.Queues, queueJSON{Queue: q, RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes, Dropped: sum(st.Drops[:])})
		}
		pj.Total = queueJSON{Queue: -1, RxPackets: total.RxPackets, RxBytes: total.RxBytes, TxPackets: total.TxPackets, TxBytes: total.TxBytes, Dropped: sum(total.Drops[:])}
		for r, n := range total.Drops {
			if n > 0 {
				pj.Drops[forwarder.Reason(r).String()] = n
			}
		}
		out = append(out, pj)
	}
	return out
}

func sum(xs []uint64) (n uint64) {
	for _, x := range xs {
		n += x
	}
	return n
}

type backboneJSON struct {
	Name        string   `json:"name"`
	Interface   string   `json:"interface"`
	GatewayV4   string   `json:"gateway_v4,omitempty"`
	GatewayV6   string   `json:"gateway_v6,omitempty"`
	ResolvedV4  bool     `json:"gateway_v4_resolved"`
	ResolvedV6  bool     `json:"gateway_v6_resolved"`
	RoutesHeld  int      `json:"routes_held"`
	Selected    int      `json:"prefixes_selected"`
	TxBytes     uint64   `json:"tx_bytes"`
	Failed      bool     `json:"failed"`
	FailedUntil string   `json:"failed_until,omitempty"`
	RateBps     float64  `json:"rate_bps"`
	P95Bps      float64  `json:"p95_bps"`
	ProbesSent  uint64   `json:"probes_sent"`
	ProbesLost  uint64   `json:"probes_lost"`
	ProbeLoss   float64  `json:"probe_loss"`
	MedianRTTms *float64 `json:"median_rtt_ms,omitempty"`
}

func (s *daemon) backbones() []backboneJSON {
	st := s.fib.Stats()
	sel, _ := s.fib.Selections()
	hops := s.d.plane.CurrentHops()
	var snap probes.Snapshot
	if s.ctl.probes != nil {
		snap = s.ctl.probes.Snapshot()
	}
	var ostat []optimizer.BackboneStatus
	if s.ctl.opt != nil {
		ostat = s.ctl.opt.Backbones()
	}
	var out []backboneJSON
	for i, b := range s.cfg.Backbones {
		j := backboneJSON{Name: b.Name, Interface: b.Interface, RoutesHeld: st.Held[i], Selected: sel[i]}
		if b.GatewayV4.IsValid() {
			j.GatewayV4 = b.GatewayV4.String()
		}
		if b.GatewayV6.IsValid() {
			j.GatewayV6 = b.GatewayV6.String()
		}
		if hops != nil {
			j.ResolvedV4, j.ResolvedV6 = hops.Backbone[i][0].Resolved, hops.Backbone[i][1].Resolved
		}
		var ps forwarder.PortStats
		for _, l := range s.d.loops {
			l.Worker.Stats(int(s.d.backbonePort[i]), &ps)
		}
		j.TxBytes = ps.TxBytes
		if i < len(ostat) {
			j.Failed, j.RateBps, j.P95Bps = ostat[i].Failed, ostat[i].RateBps, ostat[i].P95Bps
			if !ostat[i].FailedUntil.IsZero() && ostat[i].Failed {
				j.FailedUntil = ostat[i].FailedUntil.UTC().Format(time.RFC3339)
			}
		}
		if bs, ok := snap.Backbones[fib.BackboneID(i)]; ok {
			j.ProbesSent, j.ProbesLost, j.ProbeLoss = bs.ProbesSent, bs.ProbesLost, bs.Loss
		}
		if m, ok := medianRTT(snap, fib.BackboneID(i)); ok {
			j.MedianRTTms = &m
		}
		out = append(out, j)
	}
	return out
}

// medianRTT is the median over prefixes of backbone b's p50 RTT, in ms.
func medianRTT(snap probes.Snapshot, b fib.BackboneID) (float64, bool) {
	var v []float64
	for _, p := range snap.Prefixes {
		if st, ok := p.Backbones[b]; ok && st.RTTSamples() > 0 {
			v = append(v, float64(st.P50)/1e6)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	return v[len(v)/2], true
}

type fibJSON struct {
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

func (s *daemon) fibShow(r *http.Request) (any, error) {
	q := r.URL.Query().Get("addr")
	a, err := netip.ParseAddr(q)
	if err != nil {
		return nil, badRequest("addr %q is not an IP address", q)
	}
	e, ok := s.fib.Load().Lookup(a)
	if !ok {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("no route for %v", a)}
	}
	p := s.fib.Prefix(e.Route)
	j := fibJSON{Address: a.String(), Prefix: p.String(), Route: uint32(e.Route), Backbone: s.cfg.Backbones[e.Backbone].Name}
	for _, id := range e.Holders.IDs() {
		j.Holders = append(j.Holders, s.cfg.Backbones[id].Name)
	}
	def := s.fib.DefaultAmong(e.Route, e.Holders)
	j.Default = s.cfg.Backbones[def].Name
	switch {
	case s.ctl.pins.Has(p):
		j.Why = "pinned"
	case e.Backbone != def:
		j.Why = "optimizer"
	default:
		j.Why = "default"
	}
	return j, nil
}

type measurementJSON struct {
	Prefix     string                     `json:"prefix"`
	TrafficPPS float64                    `json:"traffic_pps"`
	Selected   string                     `json:"selected"`
	Backbones  map[string]backboneMeasure `json:"backbones"`
}

type backboneMeasure struct {
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

func (s *daemon) measurements(r *http.Request) (any, error) {
	n, err := limitParam(r, 100, 100000)
	if err != nil {
		return nil, err
	}
	if s.ctl.probes == nil {
		return nil, &apiError{http.StatusNotFound, "probes are disabled ([probes] enabled = false)"}
	}
	snap := s.ctl.probes.Snapshot()
	out := []measurementJSON{}
	v := s.fib.Load()
	for _, p := range snap.Prefixes {
		if len(out) == n {
			break
		}
		m := measurementJSON{Prefix: p.Prefix.String(), TrafficPPS: p.Traffic, Backbones: map[string]backboneMeasure{}}
		if e, ok := v.Lookup(p.Prefix.Addr()); ok {
			m.Selected = s.cfg.Backbones[e.Backbone].Name
		}
		ids := make([]int, 0, len(p.Backbones))
		for b := range p.Backbones {
			ids = append(ids, int(b))
		}
		sort.Ints(ids)
		for _, b := range ids {
			st := p.Backbones[fib.BackboneID(b)]
			m.Backbones[s.cfg.Backbones[b].Name] = backboneMeasure{
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

type decisionJSON struct {
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

func (s *daemon) decisions(r *http.Request) (any, error) {
	n, err := limitParam(r, 50, 10000)
	if err != nil {
		return nil, err
	}
	out := []decisionJSON{}
	if s.ctl.opt == nil {
		return out, nil
	}
	for _, e := range s.ctl.opt.Events(n) {
		out = append(out, decisionJSON{
			Time: e.Time.UTC().Format(time.RFC3339Nano), Prefix: e.Prefix.String(), From: e.From.Name, To: e.To.Name, Reason: e.Reason.String(),
			FromMs: e.From.Score, ToMs: e.To.Score, FromRTT: msf(e.From.RTT), ToRTT: msf(e.To.RTT), FromLoss: e.From.Loss, ToLoss: e.To.Loss,
		})
	}
	return out, nil
}

type pinJSON struct {
	Prefix   string `json:"prefix"`
	Backbone string `json:"backbone"`
	Since    string `json:"since,omitempty"`
}

func (s *daemon) pinList() []pinJSON {
	out := []pinJSON{}
	for _, p := range s.ctl.pins.List() {
		out = append(out, pinJSON{Prefix: p.Prefix.String(), Backbone: p.Name, Since: p.Since.UTC().Format(time.RFC3339)})
	}
	return out
}

func (s *daemon) pin(r *http.Request) (any, error) {
	var req pinJSON
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, badRequest("body: %v; send {\"prefix\": \"192.0.2.0/24\", \"backbone\": \"NAME\"}", err)
	}
	p, err := netip.ParsePrefix(req.Prefix)
	if err != nil || p != p.Masked() {
		return nil, badRequest("prefix %q is not a canonical prefix like 192.0.2.0/24", req.Prefix)
	}
	b, ok := s.fib.BackboneID(req.Backbone)
	if !ok {
		return nil, badRequest("no backbone %q", req.Backbone)
	}
	e, ok := s.fib.Route(p)
	if !ok {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("%v is not a prefix in the FIB (pnapd fib show ADDR finds the covering one)", p)}
	}
	if !e.Holders.Has(b) {
		return nil, &apiError{http.StatusConflict, fmt.Sprintf("backbone %q holds no route for %v", req.Backbone, p)}
	}
	if err := s.ctl.pins.Pin(p, b); err != nil {
		return nil, &apiError{http.StatusConflict, err.Error()}
	}
	return pinJSON{Prefix: p.String(), Backbone: req.Backbone}, nil
}

func (s *daemon) unpin(r *http.Request) (any, error) {
	q := r.URL.Query().Get("prefix")
	p, err := netip.ParsePrefix(q)
	if err != nil {
		return nil, badRequest("prefix %q is not a prefix", q)
	}
	was, err := s.ctl.pins.Unpin(p)
	if err != nil {
		return nil, &apiError{http.StatusConflict, err.Error()}
	}
	if !was {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("%v is not pinned", p)}
	}
	return map[string]string{"unpinned": p.String()}, nil
}

// reload applies a changed configuration file (SIGHUP): routes of every
// backbone (published as one FIB Version, so traffic never misses a lookup)
// and the optimizer's backbone costs and limits. A file that does not load,
// or that changes what needs a restart, is refused and the running
// configuration stays.
func (s *daemon) reload(path string, log *slog.Logger) {
	start := time.Now()
	cfg, opts, err := loadConfig(path)
	if err == nil {
		err = reloadable(s.cfg, cfg)
	}
	if err != nil {
		log.Error("reload refused; still running the previous configuration", "config", path, "error", err)
		return
	}
	added, withdrawn, err := reloadRoutes(cfg, s.fib, log)
	if err != nil {
		log.Error("reload refused; still running the previous configuration", "config", path, "error", err)
		return
	}
	if s.ctl.opt != nil {
		if err := s.ctl.opt.SetBackbones(opts.optimizer.Backbones); err != nil {
			log.Error("reload: backbone parameters not applied", "error", err)
		}
	}
	// Only the reloadable fields, which the API does not read, change:
	// names, interfaces and gateways are the same (reloadable).
	for i, b := range cfg.Backbones {
		o := &s.cfg.Backbones[i]
		o.Cost, o.CommitMbps, o.CapacityMbps = b.Cost, b.CommitMbps, b.CapacityMbps
		o.Static, o.RouteFiles, o.MRT = b.Static, b.RouteFiles, b.MRT
	}
	st := s.fib.Stats()
	log.Info("reloaded", "config", path, "routes added", added, "withdrawn", withdrawn, "ipv4", st.IPv4Routes, "ipv6", st.IPv6Routes, "took", time.Since(start).Round(time.Millisecond))
}
