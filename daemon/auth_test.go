package daemon

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// [api] token (here from token_file) opens everything; read_token only the
// reads: GETs and /metrics, not pins or reload.
func TestReadOnlyToken(t *testing.T) {
	dir := t.TempDir()
	const write, read = "write-0123456789abcdef", "read-0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, "api-token"), []byte(write+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(fmt.Sprintf(apiConf, 0), "[api]\n", "[api]\ntoken_file = \"api-token\"\nread_token = \""+read+"\"\n", 1)
	path := filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newAPIDaemonFrom(t, path)
	h := d.handler(d.metricsHandler())
	do := func(method, path, token, body string) int {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	pin := `{"prefix": "198.18.0.0/16", "backbone": "b"}`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/v1/status", "", "", http.StatusUnauthorized},
		{"GET", "/v1/status", "wrong-0123456789abcdef", "", http.StatusUnauthorized},
		{"GET", "/v1/status", read, "", http.StatusOK},
		{"GET", "/metrics", read, "", http.StatusOK},
		{"POST", "/v1/pins", read, pin, http.StatusForbidden},
		{"POST", "/v1/reload", read, "", http.StatusForbidden},
		{"POST", "/v1/pins", write, pin, http.StatusOK},
		{"GET", "/v1/pins", write, "", http.StatusOK},
		{"DELETE", "/v1/pins?prefix=198.18.0.0/16", read, "", http.StatusForbidden},
		{"DELETE", "/v1/pins?prefix=198.18.0.0/16", write, "", http.StatusOK},
	} {
		if got := do(c.method, c.path, c.token, c.body); got != c.want {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.token, got, c.want)
		}
	}
}
