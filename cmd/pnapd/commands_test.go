package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Each client command asks the API what it did before the command table:
// its flags and arguments reach the request.
func TestClientCommandsReachTheirEndpoints(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.URL.RequestURI())
		if r.URL.Path == "/v1/status" || r.Method != "GET" {
			fmt.Fprint(w, `{}`)
			return
		}
		fmt.Fprint(w, `[]`)
	}))
	defer srv.Close()
	api := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"status", "--api", api}, "GET /v1/status"},
		{[]string{"decisions", "-n", "5", "--api", api}, "GET /v1/decisions?limit=5"},
		{[]string{"pins", "--api", api}, "GET /v1/pins"},
		{[]string{"unpin", "192.0.2.0/24", "--api", api}, "DELETE /v1/pins?prefix=192.0.2.0%2F24"},
		{[]string{"measurements", "--api", api}, "GET /v1/measurements?limit=100000"},
		{[]string{"routes", "bb-a", "192.0.2.0/24", "--api", api, "-n", "7"}, "GET /v1/routes?backbone=bb-a&limit=7&prefix=192.0.2.0%2F24"},
		{[]string{"bgp", "--json", "--api", api}, "GET /v1/bgp"},
	} {
		asked = nil
		if code, _, errs := runCmd(t, "", tc.args...); code != 0 || len(asked) != 1 || asked[0] != tc.want {
			t.Errorf("%q: exit %d, asked %q, want %q; stderr %q", tc.args, code, asked, tc.want, errs)
		}
	}
	for _, args := range [][]string{{"pins", "x"}, {"measurements", "a", "b"}, {"routes"}, {"decisions", "x"}, {"unpin"}} {
		asked = nil
		if code, _, errs := runCmd(t, "", append(args, "--api", api)...); code != 2 || len(asked) != 0 || !strings.Contains(errs, "Usage: pnapd "+args[0]) {
			t.Errorf("%q: exit %d, asked %q, stderr %q; want exit 2 with usage", args, code, asked, errs)
		}
	}
}
