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
	"os"
	"strings"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
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

// apiRoute is one JSON endpoint: a ServeMux pattern and what answers it.
type apiRoute struct {
	pattern string
	answer  func(r *http.Request) (any, error)
}

// routes are the API's JSON endpoints.
func (d *Daemon) routes() []apiRoute {
	return []apiRoute{
		{"GET /v1/status", d.status},
		{"GET /v1/ports", func(*http.Request) (any, error) { return d.ports(), nil }},
		{"GET /v1/backbones", func(*http.Request) (any, error) { return d.backbones(), nil }},
		{"GET /v1/fib", d.fibShow},
		{"GET /v1/measurements", d.measurements},
		{"GET /v1/decisions", d.decisions},
		{"GET /v1/pins", func(*http.Request) (any, error) { return d.pinList(), nil }},
		{"POST /v1/pins", d.pin},
		{"DELETE /v1/pins", d.unpin},
		{"POST /v1/reload", d.reloadFromAPI},
		{"GET /v1/bgp", d.bgpSessions},
		{"GET /v1/routes", d.routeList},
	}
}

// handler serves the API: JSON under /v1/, Prometheus at /metrics. Every
// request needs the bearer token when one is configured.
func (d *Daemon) handler(metrics http.Handler) http.Handler {
	cfg := d.cfg.Load()
	mux := http.NewServeMux()
	for _, rt := range d.routes() {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			v, err := rt.answer(r)
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
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such endpoint: " + r.Method + " " + r.URL.Path + "; see /v1/status"})
	})
	token, readToken := cfg.API.Token, cfg.API.ReadToken
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			write := sameSecret(got, token)
			read := write || readToken != "" && sameSecret(got, readToken)
			switch {
			case !read:
				w.Header().Set("WWW-Authenticate", `Bearer realm="pnapd"`)
				writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong bearer token"})
				return
			case !write && r.Method != http.MethodGet && r.Method != http.MethodHead:
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "the read-only token opens GETs and /metrics only; pins and reload need [api] token"})
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		mux.ServeHTTP(w, r)
	})
}

// sameSecret compares in constant time.
func sameSecret(got, want string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
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

// metricsHandler serves pnapd's metrics, and the Go runtime's and the
// process's, in the Prometheus format.
func (d *Daemon) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{d}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)})
}

// apiLimits bound what the status API's clients may hold, so that idle or
// slow ones cannot pile up: its clients are an operator's CLI and a
// Prometheus scraper, a handful of connections at a time.
type apiLimits struct {
	// ReadHeader and Read bound reading one request (a body is at most
	// 64 KiB); Write bounds answering it, from the end of its header.
	ReadHeader, Read, Write time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request before it is closed.
	Idle time.Duration
	// Conns is how many connections are open at once; a further one waits
	// in the listen backlog until one of them closes.
	Conns int
}

// defaultAPILimits: the largest answer, 100 000 measurements, is some tens
// of MB, written well within Write even to a slow client; Idle outlasts a
// 15 s scrape interval, so a scraper at that rate keeps its connection.
var defaultAPILimits = apiLimits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: time.Minute, Idle: 30 * time.Second, Conns: 32}

// startAPI serves the status API (and metrics) when [api] listen is set.
// Stopping shuts the server down within a second.
func (d *Daemon) startAPI(context.Context) (func() error, error) {
	cfg := d.cfg.Load()
	if cfg.API.Listen == "" {
		return func() error { return nil }, nil
	}
	l, err := listenAPI(cfg.API)
	if err != nil {
		return nil, err
	}
	var metrics http.Handler
	if cfg.API.Metrics {
		metrics = d.metricsHandler()
	}
	stop := d.serveAPI(l, d.handler(metrics), d.apiLimits)
	d.log.Info("status API", "listen", cfg.API.Listen, "metrics", cfg.API.Metrics, "token", cfg.API.Token != "")
	return stop, nil
}

// serveAPI serves h on l within lim until stop, which shuts the server
// down within a second.
func (d *Daemon) serveAPI(l net.Listener, h http.Handler, lim apiLimits) (stop func() error) {
	srv := &http.Server{
		Handler: h, ReadHeaderTimeout: lim.ReadHeader, ReadTimeout: lim.Read, WriteTimeout: lim.Write, IdleTimeout: lim.Idle,
		ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(netutil.LimitListener(l, lim.Conns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("status API", "error", err)
		}
	}()
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-served
		return nil
	}
}
