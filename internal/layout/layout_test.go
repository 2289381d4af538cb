package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/pnap-project/pnap"

// imports maps each package of the module (by import path) to what its
// files import: non-test files only, or test files too.
func imports(t *testing.T, withTests bool) map[string][]string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || (!withTests && strings.HasSuffix(path, "_test.go")) {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkg := module + "/" + filepath.ToSlash(rel)
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if !slices.Contains(out[pkg], p) {
				out[pkg] = append(out[pkg], p)
			}
		}
		if _, ok := out[pkg]; !ok {
			out[pkg] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("found only %d packages under %s", len(out), root)
	}
	return out
}

// deps is every package p depends on through non-test imports, itself
// excluded.
func deps(graph map[string][]string, p string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(q string) {
		for _, d := range graph[q] {
			if !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(p)
	var out []string
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// Only the daemon (and cmd/pnapd, its command line) read configuration
// values: every other package takes its own Options.
func TestOnlyDaemonImportsConfigs(t *testing.T) {
	allowed := []string{module + "/daemon", module + "/cmd/pnapd", module + "/configs"}
	for pkg, ims := range imports(t, true) {
		if slices.Contains(ims, module+"/configs") && !slices.Contains(allowed, pkg) {
			t.Errorf("%s imports configs; give it Options of its own, which the daemon fills in", pkg)
		}
	}
}

// The forwarder, everything it is built from included, never pulls in
// configuration, route parsing or GoBGP: the fast path's binary stays the
// data plane's own.
func TestForwarderDependsOnNoRoutingCode(t *testing.T) {
	graph := imports(t, false)
	for pkg := range graph {
		if pkg != module+"/forwarder" && !strings.HasPrefix(pkg, module+"/forwarder/") {
			continue
		}
		for _, d := range deps(graph, pkg) {
			if strings.Contains(d, "gobgp") || d == module+"/configs" || d == module+"/routes" {
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}

// Nothing reaches back up the flow: the lower packages never import the
// ones that use them.
func TestNoImportUpTheFlow(t *testing.T) {
	graph := imports(t, false)
	// Each package may not depend on the ones listed for it.
	forbidden := map[string][]string{
		"fib":       {"routes", "forwarder", "probes", "optimizer", "daemon", "configs"},
		"routes":    {"fib", "forwarder", "probes", "optimizer", "daemon", "configs"},
		"forwarder": {"probes", "optimizer", "daemon", "routes"},
		"probes":    {"optimizer", "daemon", "routes"},
		"optimizer": {"daemon", "routes"},
		"daemon":    {"cmd/pnapd"},
	}
	for pkg, bad := range forbidden {
		for _, d := range deps(graph, module+"/"+pkg) {
			for _, b := range bad {
				if d == module+"/"+b {
					t.Errorf("%s depends on %s", pkg, b)
				}
			}
		}
	}
}
