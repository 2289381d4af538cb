package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pnap-project/pnap/internal/cmdline"
)

// Path is a highlighted way through the packages, in the order data takes.
type Path struct {
	Name    string
	Color   color.Color
	In, Out string // where it enters and leaves the picture ("": nowhere)
	// Steps are package path suffixes ("fib", "forwarder/xsk"); "a|b" is
	// the first of a and b that exists. A step that matches no package is
	// left out, so the path follows the tree as it is.
	Steps []string
}

var paths = []Path{
	{
		Name: "a packet", Color: color.RGBA{0xd6, 0x27, 0x28, 0xff}, In: "frames in", Out: "frames out",
		Steps: []string{"forwarder/steering", "forwarder/xsk|forwarder/socket", "forwarder", "fib", "forwarder", "forwarder/xsk|forwarder/socket"},
	},
	{
		Name: "a decision", Color: color.RGBA{0x1f, 0x5f, 0xc8, 0xff},
		Steps: []string{"forwarder", "probes", "optimizer", "fib"},
	},
}

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := cmdline.Flags("archplot", stderr)
	out := fs.String("o", "docs/architecture.png", "write the picture here (PNG)")
	omit := fs.String("omit", "bench,internal/shareddata,internal/archplot", "comma-separated packages left out, each with the packages under it")
	if code, ok := cmdline.Parse(fs, args, "run it in the module, e.g. go run ./internal/archplot -o FILE"); !ok {
		return code
	}
	pkgs, err := list()
	if err != nil {
		fmt.Fprintf(stderr, "archplot: %v\n", err)
		return 1
	}
	var omitted []string
	pkgs, omitted = without(pkgs, strings.Split(*omit, ","))
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintf(stderr, "archplot: %v\n", err)
		return 1
	}
	if err := drawTo(*out, pkgs, omitted, paths); err != nil {
		fmt.Fprintf(stderr, "archplot: %v\n", err)
		return 1
	}
	return 0
}

// Package is what the picture needs of one package.
type Package struct {
	Rel     string   // path inside the module: "forwarder/xsk"
	Role    string   // the package doc's first sentence, shortened
	Imports []string // Rel of the module's packages it imports
}

// list runs go list on the module in the current directory and returns
// its packages that have non-test Go files.
func list() ([]Package, error) {
	cmd := exec.Command("go", "list", "-json=ImportPath,Name,Doc,Imports,GoFiles,CgoFiles,Module", "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %v\n%s", err, stderr.Bytes())
	}
	type listed struct {
		ImportPath, Name, Doc string
		Imports               []string
		GoFiles, CgoFiles     []string
		Module                *struct{ Path string }
	}
	var all []listed
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list output: %v", err)
		}
		if len(p.GoFiles)+len(p.CgoFiles) > 0 && p.Module != nil {
			all = append(all, p)
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("go list found no packages: run archplot in the module's directory")
	}
	mod := all[0].Module.Path
	rel := func(path string) (string, bool) {
		if path == mod {
			return ".", true
		}
		r, ok := strings.CutPrefix(path, mod+"/")
		return r, ok
	}
	var pkgs []Package
	for _, p := range all {
		r, _ := rel(p.ImportPath)
		pkg := Package{Rel: r, Role: role(p.Doc, p.Name)}
		for _, imp := range p.Imports {
			if ri, ok := rel(imp); ok {
				pkg.Imports = append(pkg.Imports, ri)
			}
		}
		pkgs = append(pkgs, pkg)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Rel < pkgs[j].Rel })
	return pkgs, nil
}

// role is what a package is for, from its doc's first sentence: "Package
// fib holds pnap's forwarding information base: one route set..." is
// "holds pnap's forwarding information base".
func role(doc, name string) string {
	if r, ok := strings.CutPrefix(doc, "Package "+name+" "); ok {
		doc = r
	} else if r, ok := strings.CutPrefix(doc, "Command "); ok {
		_, doc, _ = strings.Cut(r, " ") // the command's name, not the package's (main)
	}
	doc = strings.TrimPrefix(doc, "is ")
	for _, stop := range []string{": ", " — ", " - ", "; ", " (", ". "} {
		if i := strings.Index(doc, stop); i > 0 {
			doc = doc[:i]
		}
	}
	return strings.TrimSuffix(doc, ".")
}

// without leaves out the packages in omit and those under them, and says
// which it left out ("bench/..." for a package with others under it).
func without(pkgs []Package, omit []string) (kept []Package, omitted []string) {
	count := map[string]int{}
	gone := map[string]bool{}
	for _, p := range pkgs {
		drop := false
		for _, o := range omit {
			if o = strings.Trim(strings.TrimSpace(o), "/"); o != "" && (p.Rel == o || strings.HasPrefix(p.Rel, o+"/")) {
				count[o]++
				drop = true
				break
			}
		}
		if drop {
			gone[p.Rel] = true
		} else {
			kept = append(kept, p)
		}
	}
	for i := range kept {
		var imps []string
		for _, m := range kept[i].Imports {
			if !gone[m] {
				imps = append(imps, m)
			}
		}
		kept[i].Imports = imps
	}
	for _, o := range omit {
		o = strings.Trim(strings.TrimSpace(o), "/")
		switch n := count[o]; {
		case n == 1:
			omitted = append(omitted, o)
		case n > 1:
			omitted = append(omitted, fmt.Sprintf("%s/... (%d packages)", o, n))
		}
	}
	return kept, omitted
}

// resolve turns a path's steps into the packages that exist, dropping
// steps that match none and repeats of the same package in a row.
func resolve(steps []string, rels []string) []string {
	var out []string
	for _, s := range steps {
		if m := match(s, rels); m != "" && (len(out) == 0 || out[len(out)-1] != m) {
			out = append(out, m)
		}
	}
	return out
}

// match is the package a step names: for each alternative in turn, the
// package whose path is it, else the shortest that ends in "/" and it.
func match(step string, rels []string) string {
	for _, alt := range strings.Split(step, "|") {
		best := ""
		for _, r := range rels {
			if r == alt {
				return r
			}
			if strings.HasSuffix(r, "/"+alt) && (best == "" || len(r) < len(best)) {
				best = r
			}
		}
		if best != "" {
			return best
		}
	}
	return ""
}
