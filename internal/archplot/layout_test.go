package main

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

func graph(edges ...string) Graph {
	g := Graph{Imports: map[string][]string{}}
	for _, e := range edges {
		from, to, ok := strings.Cut(e, ">")
		if _, seen := g.Imports[from]; !seen {
			g.Imports[from] = nil
		}
		if ok {
			g.Imports[from] = append(g.Imports[from], to)
			if _, seen := g.Imports[to]; !seen {
				g.Imports[to] = nil
			}
		}
	}
	return g
}

func checkLayers(t *testing.T, g Graph, want map[string]int) {
	t.Helper()
	got, err := Layers(g)
	if err != nil {
		t.Fatal(err)
	}
	for n, l := range want {
		if got[n] != l {
			t.Errorf("layer of %s = %d, want %d (all: %v)", n, got[n], l, got)
		}
	}
	for n, imps := range g.Imports {
		for _, m := range imps {
			if got[n] <= got[m] {
				t.Errorf("%s (layer %d) imports %s (layer %d): not above it", n, got[n], m, got[m])
			}
		}
	}
}

// A chain of imports climbs a layer a link.
func TestLayersChain(t *testing.T) {
	checkLayers(t, graph("a>b", "b>c", "c>d"), map[string]int{"d": 0, "c": 1, "b": 2, "a": 3})
}

// A diamond: both sides share a layer; the top is above the longer side.
// A package only the top imports stands just under it, not at the bottom.
func TestLayersDiamond(t *testing.T) {
	checkLayers(t, graph("a>b", "a>c", "b>d", "c>d", "c>e", "e>d", "a>only"),
		map[string]int{"d": 0, "b": 2, "e": 1, "c": 2, "a": 3, "only": 2})
}

func TestLayersCycle(t *testing.T) {
	if _, err := Layers(graph("a>b", "b>c", "c>a")); err == nil {
		t.Fatal("no error for an import cycle")
	}
}

// future is the tree as the reorganisation is expected to leave it.
var future = []Package{
	{Rel: "cmd/pnapd", Role: "the pnap daemon's command line", Imports: []string{"daemon", "configs"}},
	{Rel: "daemon", Role: "wires the components from one configuration and runs them", Imports: []string{"configs", "routes", "fib", "forwarder", "forwarder/xsk", "probes", "optimizer", "internal/monotime"}},
	{Rel: "configs", Role: "loads and validates the pnapd configuration file"},
	{Rel: "routes", Role: "reads route sources"},
	{Rel: "fib", Role: "holds pnap's forwarding information base", Imports: []string{"routes"}},
	{Rel: "forwarder", Role: "pnap's data plane", Imports: []string{"fib", "forwarder/xsk", "forwarder/steering", "forwarder/neighbours", "forwarder/slowpath", "internal/monotime"}},
	{Rel: "forwarder/xsk", Role: "AF_XDP sockets, UMEM and rings"},
	{Rel: "forwarder/steering", Role: "the XDP program that steers transit traffic to the sockets"},
	{Rel: "forwarder/neighbours", Role: "the neighbour table"},
	{Rel: "forwarder/slowpath", Role: "what the fast path hands to the kernel", Imports: []string{"forwarder/neighbours"}},
	{Rel: "probes", Role: "measures how fast each backbone reaches each destination prefix", Imports: []string{"fib", "forwarder", "internal/monotime"}},
	{Rel: "optimizer", Role: "turns measurements into a backbone per prefix", Imports: []string{"fib", "probes"}},
	{Rel: "internal/monotime", Role: "the monotonic clock"},
}

// Items in a row keep their order and never overlap, and an edge passes
// every row between its ends.
func TestPlace(t *testing.T) {
	g := Graph{Imports: map[string][]string{}}
	for _, p := range future {
		g.Imports[p.Rel] = p.Imports
	}
	layer, err := Layers(g)
	if err != nil {
		t.Fatal(err)
	}
	l := Arrange(g, layer, [][2]string{{"forwarder/steering", "forwarder/xsk"}})
	width := make([]float64, len(l.Items))
	for i, it := range l.Items {
		width[i] = 6
		if it.Pkg != "" {
			width[i] = 100 + float64(len(it.Pkg))
		}
	}
	x := l.Place(width, 20)
	for r, row := range l.Rows {
		for i := 1; i < len(row); i++ {
			a, b := row[i-1], row[i]
			if x[b]-x[a] < (width[a]+width[b])/2+20-1e-9 {
				t.Errorf("row %d: items %v at %.1f and %v at %.1f overlap", r, l.Items[a], x[a], l.Items[b], x[b])
			}
		}
	}
	for _, e := range l.Edges {
		if len(e.Via) != layer[e.From]-layer[e.To]-1 {
			t.Errorf("%s > %s passes %d rows, want %d", e.From, e.To, len(e.Via), layer[e.From]-layer[e.To]-1)
		}
	}
}

// The picture of the expected tree draws.
func TestDraw(t *testing.T) {
	if err := drawTo(filepath.Join(t.TempDir(), "a.png"), future, []string{"bench/... (7 packages)"}, paths); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	rels := []string{"fib", "fib/routes", "forwarder", "forwarder/socket", "probes"}
	got := resolve([]string{"forwarder/steering", "forwarder/xsk|forwarder/socket", "forwarder", "forwarder", "fib", "routes"}, rels)
	if want := []string{"forwarder/socket", "forwarder", "fib", "fib/routes"}; !slices.Equal(got, want) {
		t.Errorf("resolve = %v, want %v", got, want)
	}
	if got := match("routes", append(rels, "routes")); got != "routes" {
		t.Errorf(`match("routes") with a top-level routes = %q`, got)
	}
}

func TestRoleAndOmit(t *testing.T) {
	for doc, want := range map[string]string{
		"Package fib holds pnap's forwarding information base: one route set per backbone.": "holds pnap's forwarding information base",
		"Command pnapd is the pnap daemon and its operator tools: it loads...":              "the pnap daemon and its operator tools",
		"Package routes reads route sources — text prefix files":                            "reads route sources",
	} {
		name := strings.Fields(doc)[1]
		if strings.HasPrefix(doc, "Command") {
			name = "main"
		}
		if got := role(doc, name); got != want {
			t.Errorf("role(%q) = %q, want %q", doc, got, want)
		}
	}
	kept, omitted := without([]Package{{Rel: "bench/lab"}, {Rel: "bench/demo"}, {Rel: "fib", Imports: []string{"internal/x"}}, {Rel: "internal/x"}}, []string{"bench", "internal/x"})
	var names []string
	for _, p := range kept {
		names = append(names, p.Rel)
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"fib"}) || len(kept[0].Imports) != 0 || !slices.Equal(omitted, []string{"bench/... (2 packages)", "internal/x"}) {
		t.Errorf("without: kept %v (fib imports %v), omitted %v", names, kept[0].Imports, omitted)
	}
}
