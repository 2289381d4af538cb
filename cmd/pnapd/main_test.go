package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpOnEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"run", "--help"}, {"check", "--help"}, {"fib", "lookup", "--help"}, {"fib", "--help"}, {"version", "--help"},
	} {
		code, out, errs := runCmd(t, "", args...)
		if code != 0 {
			t.Errorf("%v: exit %d, want 0", args, code)
		}
		if !strings.Contains(out+errs, "Usage") {
			t.Errorf("%v: no usage text in %q", args, out+errs)
		}
	}
	if code, _, errs := runCmd(t, "", "frobnicate"); code != 2 || !strings.Contains(errs, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: exit %d, stderr %q", code, errs)
	}
	if code, _, _ := runCmd(t, "", "check"); code != 2 {
		t.Errorf("check without -c: exit %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCmd(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "pnapd ") || !strings.Contains(out, "go1.") {
		t.Fatalf("version: exit %d, output %q", code, out)
	}
	if code, out2, _ := runCmd(t, "", "--version"); code != 0 || out2 != out {
		t.Fatalf("--version: exit %d, %q; version said %q", code, out2, out)
	}
}

// make build stamps the binary with git describe through -ldflags -X; a
// binary built so reports it.
func TestVersionFromLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pnapd")
	}
	bin := filepath.Join(t.TempDir(), "pnapd")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7-3-gabcdef0", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "pnapd v9.8.7-3-gabcdef0 ") || !strings.Contains(string(out), runtime.Version()) {
		t.Fatalf("--version: %q, %v", out, err)
	}
}

// Every example configuration passes pnapd check.
func TestCheckExamples(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "configs", "examples", "*.toml"))
	if err != nil || len(paths) < 4 {
		t.Fatalf("examples: %v, %v", paths, err)
	}
	for _, path := range paths {
		name := filepath.Base(path)
		code, out, errs := runCmd(t, "", "check", "-c", path)
		if code != 0 {
			t.Fatalf("check %s: exit %d: %s", name, code, errs)
		}
		if !strings.Contains(out, ": ok:") || !strings.Contains(out, "FIB:") {
			t.Fatalf("check %s: output %q", name, out)
		}
	}
}

func TestCheckReportsBrokenConfigOnOneLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.toml")
	cfg := "[[backbone]]\nname = \"a\"\ninterface = \"eth0\"\ngatway_v4 = \"192.0.2.1\"\n"
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCmd(t, "", "check", "-c", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "bad.toml:4") || !strings.Contains(errs, "gatway_v4") {
		t.Fatalf("error is not one line naming file, line and key: %q", errs)
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFIBLookupAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.txt", "10.0.0.0/8\n2001:db8::/32\n")
	b := writeFile(t, dir, "b.txt", "# more specifics\n10.1.0.0/16\t64500\n2001:db8:1::/48\n")
	in := "10.1.2.3\n10.2.0.1\n\n# comment\n192.0.2.1\n2001:db8:1::5\n2001:db8:2::5\n::ffff:10.1.2.3\n"
	code, out, errs := runCmd(t, in, "fib", "lookup", "--routes", a, "--routes", b)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := "10.1.2.3 10.1.0.0/16\n10.2.0.1 10.0.0.0/8\n192.0.2.1 -\n2001:db8:1::5 2001:db8:1::/48\n2001:db8:2::5 2001:db8::/32\n::ffff:10.1.2.3 -\n"
	if out != want {
		t.Fatalf("output\n%s\nwant\n%s", out, want)
	}
}

func TestFIBLookupBadAddress(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.txt", "10.0.0.0/8\n")
	code, out, errs := runCmd(t, "10.0.0.1\n\n10.0.0.300\n", "fib", "lookup", "--routes", a)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errs, "stdin:3:") || !strings.Contains(errs, "10.0.0.300") {
		t.Fatalf("stderr %q does not name line 3 and the bad address", errs)
	}
	if out != "10.0.0.1 10.0.0.0/8\n" {
		t.Fatalf("lines before the bad one were not answered: %q", out)
	}
	code, _, errs = runCmd(t, "", "fib", "lookup", "--routes", filepath.Join(dir, "missing.txt"))
	if code != 1 || !strings.Contains(errs, "missing.txt") {
		t.Fatalf("missing route file: exit %d, stderr %q", code, errs)
	}
}

func TestFIBLookupFromConfigShowsBackbone(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "examples", "minimal.toml")
	code, out, errs := runCmd(t, "198.51.100.7\n", "fib", "lookup", "-c", path, "--backbone")
	if code != 0 || out != "198.51.100.7 198.51.100.0/24 transit\n" {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, errs)
	}
}

func TestRunNamesMissingInterface(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "examples", "minimal.toml")
	code, _, errs := runCmd(t, "", "run", "-c", path)
	if code != 1 || !strings.Contains(errs, `interface "pnap-`) || !strings.Contains(errs, "ip link") {
		t.Fatalf("run: exit %d, stderr %q", code, errs)
	}
}

// pnapd check reports a value a component refuses like one configs
// refuses: one line, file:line and the key.
func TestCheckReportsComponentRuleOnOneLine(t *testing.T) {
	path := writeFile(t, t.TempDir(), "bad.toml", backboneTOML+"\n[optimizer]\nstatistic = \"mean\"\n")
	code, _, errs := runCmd(t, "", "check", "-c", path)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "bad.toml:8") || !strings.Contains(errs, "statistic") {
		t.Fatalf("error is not one line naming file, line and key: %q", errs)
	}
}

const backboneTOML = `
[[backbone]]
name = "uunet"
interface = "eth1"
gateway_v4 = "192.0.2.1"
`

// The table from the review: 100,000 IPv6 /128s, each under a /24 of its
// own, needs more lookup structure than the FIB's offsets address. check
// used to say ok (and every lookup answered wrong); it must refuse it.
func TestCheckRefusesTableTheFIBCannotAddress(t *testing.T) {
	dir := t.TempDir()
	var table strings.Builder
	for k := range 100_000 {
		top := 0x200000 + k // the first 24 bits
		fmt.Fprintf(&table, "%x:%x::1/128\n", top>>8, top&0xff<<8)
	}
	writeFile(t, dir, "sparse.txt", table.String())
	path := writeFile(t, dir, "x.toml", "[[backbone]]\nname = \"a\"\ninterface = \"eth0\"\ngateway_v6 = \"2001:db8::1\"\n\n  [[backbone.route_file]]\n  path = \"sparse.txt\"\n")
	code, out, errs := runCmd(t, "", "check", "-c", path)
	if code != 1 || !strings.Contains(errs, "fib: full") || !strings.Contains(errs, "sparse.txt") || strings.Contains(out, "ok") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 naming the file and fib: full", code, out, errs)
	}
	t.Log(strings.TrimSpace(errs))
}

// Flags may come after the arguments as well as before: an operator types
// `pnapd fib show ADDR --api X`. A fake status API records what each
// form asked for.
func TestFlagsBeforeOrAfterArguments(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.URL.RequestURI())
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/fib":
			fmt.Fprint(w, `{"address":"203.0.113.9","prefix":"203.0.113.0/25","route":7,"backbone":"bb-a","holders":["bb-a"],"why":"default","default":"bb-a"}`)
		case "/v1/pins":
			fmt.Fprint(w, `{"prefix":"203.0.113.0/25","backbone":"bb-b"}`)
		}
	}))
	defer srv.Close()
	api := strings.TrimPrefix(srv.URL, "http://")
	for _, args := range [][]string{
		{"fib", "show", "--api", api, "203.0.113.9"},
		{"fib", "show", "203.0.113.9", "--api", api},
		{"pin", "203.0.113.0/25", "--api", api, "bb-b"},
		{"pin", "--api", api, "--", "203.0.113.0/25", "bb-b"},
	} {
		asked = nil
		code, out, errs := runCmd(t, "", args...)
		if code != 0 || len(asked) != 1 {
			t.Fatalf("%q: exit %d, asked %q, stdout %q, stderr %q", args, code, asked, out, errs)
		}
		want := "GET /v1/fib?addr=203.0.113.9"
		if args[0] == "pin" {
			want = "POST /v1/pins"
		}
		if asked[0] != want {
			t.Errorf("%q asked %q, want %q", args, asked[0], want)
		}
	}
	// Too many arguments, wherever the flags are, is still refused.
	if code, _, errs := runCmd(t, "", "fib", "show", "203.0.113.9", "--api", api, "198.51.100.1"); code != 2 || !strings.Contains(errs, "want 1 argument") {
		t.Errorf("two addresses: exit %d, %q", code, errs)
	}
}

// pnapd reload (the unit's ExecReload) exits 0 on an applied reload and 1
// with pnapd's reason on a refused one, so systemctl reload fails too.
func TestReloadCommand(t *testing.T) {
	refuse := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/v1/reload" {
			http.NotFound(w, r)
			return
		}
		if refuse {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprint(w, `{"error":"reload refused; still running the previous configuration: backbone \"a\": a.txt:1: bad prefix"}`)
			return
		}
		fmt.Fprint(w, `{"reloaded":"/etc/pnapd/pnapd.toml","took":"12ms"}`)
	}))
	defer srv.Close()
	api := strings.TrimPrefix(srv.URL, "http://")
	if code, out, errs := runCmd(t, "", "reload", "--api", api); code != 0 || !strings.Contains(out, "reloaded /etc/pnapd/pnapd.toml") {
		t.Fatalf("applied: exit %d, %q %q", code, out, errs)
	}
	refuse = true
	if code, _, errs := runCmd(t, "", "reload", "--api", api); code != 1 || !strings.Contains(errs, "a.txt:1: bad prefix") {
		t.Fatalf("refused: exit %d, %q", code, errs)
	}
}
