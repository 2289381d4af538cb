package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Every command of the table is in the usage text, both completion
// scripts and the man page, and run reaches it.
func TestUsageCompletionAndManNameEveryCommand(t *testing.T) {
	_, help, _ := runCmd(t, "", "--help")
	_, bash, _ := runCmd(t, "", "completion", "bash")
	_, zsh, _ := runCmd(t, "", "completion", "zsh")
	_, man, _ := runCmd(t, "", "man")
	man = strings.Join(strings.Fields(man), " ") // as if roff had not wrapped it
	for _, c := range commands {
		words := strings.Fields(c.name)
		if !strings.Contains(help, "  pnapd "+c.name) {
			t.Errorf("usage lacks %q", c.name)
		}
		if !strings.Contains(bash, "'"+c.name+"')") || !strings.Contains(zsh, "'"+c.name+"')") {
			t.Errorf("a completion script has no case for %q", c.name)
		}
		if len(words) == 2 && (!strings.Contains(bash, words[1]) || !strings.Contains(zsh, "'"+words[1]+":")) {
			t.Errorf("a completion script does not offer subcommand %q", c.name)
		}
		if !strings.Contains(man, `.SS "pnapd `+roff(c.name)) || !strings.Contains(man, `\fBpnapd `+roff(c.name)+`\fR`) {
			t.Errorf("the man page has no SYNOPSIS line or subsection for %q", c.name)
		}
		for _, d := range c.flagDocs() {
			if !strings.Contains(man, roff(d.spell)) || !strings.Contains(zsh, "'"+d.spell+"[") && !strings.Contains(zsh, "'*"+d.spell+"[") {
				t.Errorf("%s %s: missing from the man page or the zsh script", c.name, d.spell)
			}
			if d.def != "" && !strings.Contains(man, "(default: "+roff(d.def)+")") {
				t.Errorf("%s %s: the man page does not give its default %s", c.name, d.spell, d.def)
			}
		}
		args := append(words, "--help")
		if code, _, errs := runCmd(t, "", args...); code != 0 || !strings.Contains(errs, "Usage: pnapd "+c.name) {
			t.Errorf("%q: exit %d, %q", args, code, errs)
		}
	}
}

func TestCompletionWantsAShell(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "fish"}, {"completion", "bash", "zsh"}} {
		if code, out, errs := runCmd(t, "", args...); code != 2 || out != "" || !strings.Contains(errs, "want bash or zsh") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	if code, _, errs := runCmd(t, "", "man", "x"); code != 2 || !strings.Contains(errs, `unexpected argument "x"`) {
		t.Errorf("man x: exit %d, %q", code, errs)
	}
}

// bashComplete runs the bash completion function as bash would for the
// command line words, the last the word being completed, and returns its
// candidates.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	const driver = `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _pnapd; printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", append([]string{"--norc", "--noprofile", "-c", driver, "bash", script}, words...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil || errb.Len() > 0 {
		t.Fatalf("%q: %v\n%s", words, err, errb.String())
	}
	return strings.Fields(string(out))
}

// The bash script, sourced in a bash without bash-completion, completes
// commands, subcommands, each command's flags, shells, and files after -c.
func TestCompletionBash(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash to source the script in")
	}
	dir := t.TempDir()
	script := writeFile(t, dir, "pnapd.bash", bashCompletion())
	conf := writeFile(t, dir, "pnapd.toml", "")
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"pnapd", "pi"}, []string{"pin", "pins"}},
		{[]string{"pnapd", "--ver"}, []string{"--version"}},
		{[]string{"pnapd", "fib", ""}, []string{"lookup", "show"}},
		{[]string{"pnapd", "fib", "show", "--"}, []string{"--api", "--json", "--token"}},
		{[]string{"pnapd", "decisions", "-"}, []string{"--api", "-c", "--json", "-n", "--token"}},
		{[]string{"pnapd", "completion", ""}, []string{"bash", "zsh"}},
		{[]string{"pnapd", "check", "-c", filepath.Join(dir, "pnapd.t")}, []string{conf}},
		{[]string{"pnapd", "fib", "lookup", "--routes", filepath.Join(dir, "pn")}, []string{conf, script}},
		{[]string{"pnapd", "pins", "--api", ""}, nil},
		{[]string{"pnapd", "pin", "--api", "x", "-"}, []string{"--api", "-c", "--json", "--token"}},
	} {
		got := bashComplete(t, script, tc.words...)
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.words, got, tc.want)
		}
	}
	// Every command's flags, from the table.
	for _, c := range commands {
		var want []string
		for _, d := range c.flagDocs() {
			want = append(want, d.spell)
		}
		words := append(append([]string{"pnapd"}, strings.Fields(c.name)...), "-")
		got := bashComplete(t, script, words...)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%q: %q, want %q", words, got, want)
		}
	}
}

// zsh parses the zsh script (zsh -n); TestCompletionBash holds the logic
// both scripts share.
func TestCompletionZshSyntax(t *testing.T) {
	if _, err := exec.LookPath("zsh"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("zsh is missing: .ci/run installs it")
		}
		t.Skip("zsh is not installed: skipping zsh -n on the zsh completion (apt-get install zsh)")
	}
	path := writeFile(t, t.TempDir(), "_pnapd", zshCompletion())
	if out, err := exec.Command("zsh", "-n", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
}

// The man page has the sections a section 8 page has, and renders without
// a warning in groff and, where it is installed, mandoc's lint.
func TestManPage(t *testing.T) {
	code, page, errs := runCmd(t, "", "man")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{".TH PNAPD 8 ", ".SH NAME\npnapd \\- ", ".SH SYNOPSIS\n", ".SH DESCRIPTION\n", ".SH COMMANDS\n",
		".SH FILES\n", ".I /etc/pnapd/pnapd.toml\n", ".I /var/lib/pnapd\n", ".SH SEE ALSO\n.BR systemctl (1)\n"} {
		if !strings.Contains(page, want) {
			t.Errorf("the man page lacks %q", want)
		}
	}
	path := writeFile(t, t.TempDir(), "pnapd.8", page)
	rendered := 0
	for _, lint := range [][]string{{"groff", "-man", "-Tutf8", "-ww", "-z", path}, {"mandoc", "-Tlint", path}} {
		if _, err := exec.LookPath(lint[0]); err != nil {
			t.Logf("no %s to render the man page with", lint[0])
			continue
		}
		rendered++
		if out, err := exec.Command(lint[0], lint[1:]...).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("%s: %v\n%s", strings.Join(lint, " "), err, out)
		}
	}
	if rendered == 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("neither groff nor mandoc: .ci/run installs groff-base")
		}
		t.Skip("neither groff nor mandoc is installed: the man page was not rendered (apt-get install groff-base)")
	}
}

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
