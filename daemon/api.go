package daemon

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
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

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
func (d *Daemon) handler(metrics http.Handler) http.Handler {
	cfg := d.cfg.Load()
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
	route("GET /v1/status", d.status)
	route("GET /v1/ports", func(*http.Request) (any, error) { return d.ports(), nil })
	route("GET /v1/backbones", func(*http.Request) (any, error) { return d.backbones(), nil })
	route("GET /v1/fib", d.fibShow)
	route("GET /v1/measurements", d.measurements)
	route("GET /v1/decisions", d.decisions)
	route("GET /v1/pins", func(*http.Request) (any, error) { return d.pinList(), nil })
	route("POST /v1/pins", d.pin)
	route("DELETE /v1/pins", d.unpin)
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path + "; see /v1/status"})
	})
	token := cfg.API.Token
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

// startAPI serves the status API (and metrics) when [api] listen is set.
// Stopping shuts the server down within a second.
func (d *Daemon) startAPI(context.Context) (func() error, error) {
	cfg := d.cfg.Load()
	d.pins = &pinTable{fib: d.fib, opt: d.ctl.opt, m: map[netip.Prefix]optimizer.Pin{}}
	if cfg.API.Listen == "" {
		return func() error { return nil }, nil
	}
	l, err := listenAPI(cfg.API)
	if err != nil {
		return nil, err
	}
	var metrics http.Handler
	if cfg.API.Metrics {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		metrics = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)})
	}
	srv := &http.Server{Handler: d.handler(metrics), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("status API", "error", err)
		}
	}()
	d.log.Info("status API", "listen", cfg.API.Listen, "metrics", cfg.API.Metrics, "token", cfg.API.Token != "")
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		return nil
	}, nil
}

type Status struct {
	Version    string           `json:"version"`
	Config     string           `json:"config"`
	UptimeSec  float64          `json:"uptime_seconds"`
	Workers    int              `json:"workers"`
	IPv4Routes int              `json:"ipv4_routes"`
	IPv6Routes int              `json:"ipv6_routes"`
	Generation uint64           `json:"fib_generation"`
	Overrides  int              `json:"overrides"`
	Probes     bool             `json:"probes"`
	Optimizer  bool             `json:"optimizer"`
	Ports      []PortStatus     `json:"ports"`
	Backbones  []BackboneStatus `json:"backbones"`
}

func (d *Daemon) status(*http.Request) (any, error) {
	cfg := d.cfg.Load()
	st := d.fib.Stats()
	_, over := d.fib.Selections()
	return Status{
		Version: d.version, Config: cfg.Path, UptimeSec: time.Since(d.start).Seconds(), Workers: len(d.dp.loops),
		IPv4Routes: st.IPv4Routes, IPv6Routes: st.IPv6Routes, Generation: d.fib.Load().Generation(), Overrides: over,
		Probes: d.ctl.probes != nil, Optimizer: d.ctl.opt != nil, Ports: d.ports(), Backbones: d.backbones(),
	}, nil
}

type PortStatus struct {
	Name      string            `json:"name"`
	Interface string            `json:"interface"`
	Role      string            `json:"role"`
	Queues    []QueueCounters   `json:"queues"`
	Total     QueueCounters     `json:"total"`
	Drops     map[string]uint64 `json:"drops"`
}

type QueueCounters struct {
	Queue     int    `json:"queue"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Dropped   uint64 `json:"dropped"`
}

// portName is the configured name of the customer or backbone on port i.
func (d *Daemon) portName(i int) string {
	cfg := d.cfg.Load()
	if i < len(cfg.Customers) {
		return cfg.Customers[i].Name
	}
	return cfg.Backbones[i-len(cfg.Customers)].Name
}

func (d *Daemon) ports() []PortStatus {
	var out []PortStatus
	for i, p := range d.dp.plane.Ports {
		pj := PortStatus{Name: d.portName(i), Interface: p.Name, Role: roleName(p.Role), Drops: map[string]uint64{}}
		var total forwarder.PortStats
		for q, l := range d.dp.loops {
			var st forwarder.PortStats
			l.Worker.Stats(i, &st)
			l.Worker.Stats(i, &total)
			pj.Queues = append(pj.Queues, QueueCounters{Queue: q, RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes, Dropped: sum(st.Drops[:])})
		}
		pj.Total = QueueCounters{Queue: -1, RxPackets: total.RxPackets, RxBytes: total.RxBytes, TxPackets: total.TxPackets, TxBytes: total.TxBytes, Dropped: sum(total.Drops[:])}
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

type BackboneStatus struct {
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

func (d *Daemon) backbones() []BackboneStatus {
	cfg := d.cfg.Load()
	st := d.fib.Stats()
	sel, _ := d.fib.Selections()
	hops := d.dp.plane.CurrentHops()
	var snap probes.Snapshot
	if d.ctl.probes != nil {
		snap = d.ctl.probes.Snapshot()
	}
	var ostat []optimizer.BackboneStatus
	if d.ctl.opt != nil {
		ostat = d.ctl.opt.Backbones()
	}
	var out []BackboneStatus
	for i, b := range cfg.Backbones {
		j := BackboneStatus{Name: b.Name, Interface: b.Interface, RoutesHeld: st.Held[i], Selected: sel[i]}
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
		for _, l := range d.dp.loops {
			l.Worker.Stats(int(d.dp.backbonePort[i]), &ps)
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
	case d.isPinned(p):
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
	v := d.fib.Load()
	for _, p := range snap.Prefixes {
		if len(out) == n {
			break
		}
		m := Measurement{Prefix: p.Prefix.String(), TrafficPPS: p.Traffic, Backbones: map[string]BackboneMeasurement{}}
		if e, ok := v.Lookup(p.Prefix.Addr()); ok {
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
	for _, p := range d.pins.list() {
		out = append(out, Pin{Prefix: p.Prefix.String(), Backbone: p.Name, Since: p.Since.UTC().Format(time.RFC3339)})
	}
	return out
}

func (d *Daemon) isPinned(p netip.Prefix) bool {
	for _, x := range d.pinList() {
		if x.Prefix == p.String() {
			return true
		}
	}
	return false
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
	if err := d.pins.pin(p, b, req.Backbone); err != nil {
		return nil, &apiError{http.StatusConflict, err.Error()}
	}
	return Pin{Prefix: p.String(), Backbone: req.Backbone}, nil
}

func (d *Daemon) unpin(r *http.Request) (any, error) {
	q := r.URL.Query().Get("prefix")
	p, err := netip.ParsePrefix(q)
	if err != nil {
		return nil, badRequest("prefix %q is not a prefix", q)
	}
	was, err := d.pins.unpin(p)
	if err != nil {
		return nil, &apiError{http.StatusConflict, err.Error()}
	}
	if !was {
		return nil, &apiError{http.StatusNotFound, fmt.Sprintf("%v is not pinned", p)}
	}
	return map[string]string{"unpinned": p.String()}, nil
}
