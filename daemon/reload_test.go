package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// reloadConf gives each of two backbones a route file of its own.
const reloadConf = `
[[backbone]]
name = "a"
interface = "eth1"
gateway_v4 = "203.0.113.1"

  [[backbone.route_file]]
  path = "a.txt"

[[backbone]]
name = "b"
interface = "eth2"
gateway_v4 = "203.0.113.65"

  [[backbone.route_file]]
  path = "b.txt"
`

// logBuffer collects a Daemon's log lines, debug ones included.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// take returns what was logged since the last take.
func (l *logBuffer) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	l.buf.Reset()
	return s
}

// A reload re-reads only the backbones whose route sources changed: a
// file's content, even behind an unchanged size and mtime, or the
// configuration's list of sources.
func TestReloadReadsOnlyChangedSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.txt", "198.18.1.0/24\n")
	write("b.txt", "198.18.2.0/24\n")
	write("pnapd.toml", reloadConf)
	cfg, err := LoadConfig(filepath.Join(dir, "pnapd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	d := &Daemon{log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), errc: make(chan error, 1), ctl: &control{}}
	d.cfg.Store(cfg)
	if _, err := d.startFIB(t.Context()); err != nil {
		t.Fatal(err)
	}
	logs.take()
	holds := func(p string) bool {
		_, ok := d.fib.Route(netip.MustParsePrefix(p))
		return ok
	}
	readLine := regexp.MustCompile(`msg="read route file" .*file=(\S+)`)
	readFiles := func() (out []string) {
		for _, m := range readLine.FindAllStringSubmatch(logs.take(), -1) {
			out = append(out, filepath.Base(m[1]))
		}
		return out
	}

	d.reload()
	if got := readFiles(); len(got) != 0 {
		t.Fatalf("nothing changed, yet the reload read %v", got)
	}
	write("a.txt", "198.18.3.0/24\n")
	d.reload()
	if got := readFiles(); len(got) != 1 || got[0] != "a.txt" || !holds("198.18.3.0/24") || holds("198.18.1.0/24") || !holds("198.18.2.0/24") {
		t.Fatalf("a.txt changed: the reload read %v; routes 3 %v 1 %v 2 %v", got, holds("198.18.3.0/24"), holds("198.18.1.0/24"), holds("198.18.2.0/24"))
	}
	// Same size, same mtime: only ctime and the content tell.
	fi, err := os.Stat(filepath.Join(dir, "b.txt"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	write("b.txt", "198.18.4.0/24\n")
	if err := os.Chtimes(filepath.Join(dir, "b.txt"), fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	d.reload()
	if got := readFiles(); len(got) != 1 || got[0] != "b.txt" || !holds("198.18.4.0/24") || holds("198.18.2.0/24") {
		t.Fatalf("b.txt rewritten under its old mtime: the reload read %v", got)
	}
	// A source added in the configuration.
	write("c.txt", "198.18.5.0/24\n")
	write("pnapd.toml", reloadConf+"\n  [[backbone.route_file]]\n  path = \"c.txt\"\n")
	d.reload()
	if got := readFiles(); len(got) != 2 || !holds("198.18.5.0/24") || !holds("198.18.4.0/24") {
		t.Fatalf("b gained c.txt: the reload read %v", got)
	}
}

// [log]: JSON lines when asked; debug lines only at level debug; a reload
// changes the level of the running logger, and refuses a format change.
func TestLogLevelAndFormat(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"a.txt": "198.18.1.0/24\n", "b.txt": "198.18.2.0/24\n", "pnapd.toml": reloadConf + "\n[log]\nformat = \"json\"\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "pnapd.toml")
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	level := new(slog.LevelVar)
	d := &Daemon{log: NewLogger(logs, cfg.Log, level), logLevel: level, errc: make(chan error, 1), ctl: &control{}}
	d.cfg.Store(cfg)
	if _, err := d.startFIB(t.Context()); err != nil {
		t.Fatal(err)
	}
	out := logs.take()
	if strings.Contains(out, "read route file") || !strings.Contains(out, `"msg":"FIB loaded"`) {
		t.Fatalf("at level info, in JSON: %s", out)
	}
	if err := os.WriteFile(path, []byte(reloadConf+"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("198.18.3.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.reload() // the new level applies from the end of this reload on
	if out := logs.take(); strings.Contains(out, `"level":"DEBUG"`) || !strings.Contains(out, `"msg":"reloaded"`) || !strings.Contains(out, `"routes_added":1`) {
		t.Fatalf("the reload to level debug: %s", out)
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("198.18.4.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.reload()
	if out := logs.take(); !strings.Contains(out, `"level":"DEBUG","msg":"read route file"`) {
		t.Fatalf("a reload at level debug: %s", out)
	}
	if err := os.WriteFile(path, []byte(reloadConf+"\n[log]\nformat = \"text\"\nlevel = \"debug\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.reload()
	if out := logs.take(); !strings.Contains(out, "reload refused") || !strings.Contains(out, "[log] format changed") {
		t.Fatalf("a format change: %s", out)
	}
}

// POST /v1/reload applies the file as SIGHUP does and answers with the
// outcome: 200, or 422 with the reason the reload was refused.
func TestReloadFromAPI(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{"a.txt": "198.18.1.0/24\n", "b.txt": "198.18.2.0/24\n", "pnapd.toml": reloadConf} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := LoadConfig(filepath.Join(dir, "pnapd.toml"))
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{log: slog.New(slog.DiscardHandler), errc: make(chan error, 1), ctl: &control{}}
	d.cfg.Store(cfg)
	if _, err := d.startFIB(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := d.handler(nil)
	if code, body := get(h, "POST", "/v1/reload", ""); code != http.StatusConflict {
		t.Fatalf("without a serve loop: %d %s", code, body)
	}
	d.apiReloads = make(chan reloadRequest)
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- d.serve(ctx, nil) }()
	defer func() { cancel(); <-served }()

	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("198.18.3.0/24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := get(h, "POST", "/v1/reload", ""); code != http.StatusOK || !strings.Contains(body, `"reloaded"`) {
		t.Fatalf("a good reload: %d %s", code, body)
	}
	if _, ok := d.fib.Route(netip.MustParsePrefix("198.18.3.0/24")); !ok {
		t.Fatal("the reload answered 200 but did not apply the new routes")
	}
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("not a prefix\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := get(h, "POST", "/v1/reload", ""); code != http.StatusUnprocessableEntity || !strings.Contains(body, "reload refused") || !strings.Contains(body, "a.txt") {
		t.Fatalf("a bad route file: %d %s", code, body)
	}
	if _, ok := d.fib.Route(netip.MustParsePrefix("198.18.3.0/24")); !ok {
		t.Fatal("a refused reload changed the routes")
	}
}
