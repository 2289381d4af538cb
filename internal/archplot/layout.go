package main

import (
	"fmt"
	"slices"
	"sort"
)

// Graph is an import graph: Imports[p] are the packages p imports, each
// of them a key of Imports too.
type Graph struct {
	Imports map[string][]string
}

// Nodes are the graph's packages, sorted.
func (g Graph) Nodes() []string {
	ns := make([]string, 0, len(g.Imports))
	for n := range g.Imports {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// Layers puts every package in a layer, 0 at the bottom: first one above
// its highest import (the longest import chain below it; a package that
// imports none of the graph is 0), then, top down, a package is raised to
// just under its lowest importer, so that one used only high up (configs,
// used by the daemon) sits beside its user rather than at the bottom. It
// fails on an import cycle, which Go does not allow anyway.
func Layers(g Graph) (map[string]int, error) {
	layer := map[string]int{}
	const visiting = -1
	var height func(n string, path []string) error
	height = func(n string, path []string) error {
		switch l, ok := layer[n]; {
		case ok && l == visiting:
			return fmt.Errorf("import cycle: %v", append(path, n))
		case ok:
			return nil
		}
		layer[n] = visiting
		h := 0
		for _, m := range g.Imports[n] {
			if err := height(m, append(path, n)); err != nil {
				return err
			}
			h = max(h, layer[m]+1)
		}
		layer[n] = h
		return nil
	}
	nodes := g.Nodes()
	for _, n := range nodes {
		if err := height(n, nil); err != nil {
			return nil, err
		}
	}
	importers := map[string][]string{}
	for _, n := range nodes {
		for _, m := range g.Imports[n] {
			importers[m] = append(importers[m], n)
		}
	}
	// Importers are strictly higher than what they import, so going down
	// by the first layers settles every importer before what it imports.
	byHeight := slices.Clone(nodes)
	sort.SliceStable(byHeight, func(i, j int) bool { return layer[byHeight[i]] > layer[byHeight[j]] })
	for _, n := range byHeight {
		if len(importers[n]) == 0 {
			continue
		}
		low := layer[importers[n][0]]
		for _, m := range importers[n] {
			low = min(low, layer[m])
		}
		layer[n] = max(layer[n], low-1)
	}
	return layer, nil
}

// An Item is a place in a row of the layout: a package, or a point where
// an import edge that spans several layers passes through a row (Pkg "").
type Item struct {
	Pkg  string
	Edge int // for a passing edge, its index in Layout.Edges
}

// An Edge is an import, From the importer To the imported package, through
// the items Via in the rows between them, top down.
type Edge struct {
	From, To string
	Via      []int
}

// Layout is the graph in rows, Rows[0] the bottom one, each row's items
// in drawing order (left to right), as indices into Items.
type Layout struct {
	Items []Item
	Rows  [][]int
	Row   []int // each item's row
	Edges []Edge
	Of    map[string]int // each package's item
}

// Arrange lays g out in its layers, with a passing item wherever an edge
// skips a row, and orders each row so that few edges cross: alternate
// sweeps put each item at the mean position of its neighbours in the row
// above, then in the row below, keeping the order with the fewest
// crossings seen. near lists pairs that should stand close too (the steps
// of a highlighted path that no import joins).
func Arrange(g Graph, layer map[string]int, near [][2]string) Layout {
	l := newLayout(g, layer)
	up, down := l.route(g, layer)
	l.Rows = l.uncross(up, down, l.partners(near))
	return l
}

// newLayout puts every package of g in the row of its layer, rows in
// g.Nodes order; edges come later.
func newLayout(g Graph, layer map[string]int) Layout {
	l := Layout{Of: map[string]int{}}
	top := 0
	for _, n := range g.Nodes() {
		top = max(top, layer[n])
	}
	l.Rows = make([][]int, top+1)
	for _, n := range g.Nodes() {
		l.Of[n] = l.add(Item{Pkg: n}, layer[n])
	}
	return l
}

// add appends it to row and returns its index.
func (l *Layout) add(it Item, row int) int {
	l.Items = append(l.Items, it)
	l.Row = append(l.Row, row)
	l.Rows[row] = append(l.Rows[row], len(l.Items)-1)
	return len(l.Items) - 1
}

// route adds g's imports as Edges, with a passing item in every row an
// edge skips, so that every link the sweeps see joins adjacent rows. It
// returns each item's neighbours one row up and one row down.
func (l *Layout) route(g Graph, layer map[string]int) (up, down [][]int) {
	up = make([][]int, len(l.Items))
	down = make([][]int, len(l.Items))
	link := func(hi, lo int) {
		down[hi] = append(down[hi], lo)
		up[lo] = append(up[lo], hi)
	}
	for _, n := range g.Nodes() {
		imps := slices.Clone(g.Imports[n])
		sort.Strings(imps)
		for _, m := range imps {
			e := Edge{From: n, To: m}
			prev := l.Of[n]
			for r := layer[n] - 1; r > layer[m]; r-- {
				it := l.add(Item{Edge: len(l.Edges)}, r)
				up = append(up, nil)
				down = append(down, nil)
				link(prev, it)
				e.Via = append(e.Via, it)
				prev = it
			}
			link(prev, l.Of[m])
			l.Edges = append(l.Edges, e)
		}
	}
	return up, down
}

// partners are, for each item, the items of its own row that near asks it
// to stand close to; a pair in different rows cannot, and is dropped.
func (l *Layout) partners(near [][2]string) [][]int {
	side := make([][]int, len(l.Items))
	for _, p := range near {
		a, okA := l.Of[p[0]]
		b, okB := l.Of[p[1]]
		if okA && okB && l.Row[a] == l.Row[b] {
			side[a] = append(side[a], b)
			side[b] = append(side[b], a)
		}
	}
	return side
}

// uncross runs the sweeps over l.Rows, in place, and returns a copy of the
// rows as they stood when they crossed least: a sweep can make things
// worse, so the last order is not necessarily the best.
func (l *Layout) uncross(up, down, side [][]int) [][]int {
	s := sweep{pos: make([]float64, len(l.Items)), side: side}
	for _, row := range l.Rows {
		s.spread(row)
	}
	top := len(l.Rows) - 1
	best := l.clone()
	bestX := l.crossings(down)
	for range 12 {
		for r := top - 1; r >= 0; r-- {
			s.sortRow(l.Rows[r], up)
		}
		for r := 1; r <= top; r++ {
			s.sortRow(l.Rows[r], down)
		}
		if x := l.crossings(down); x < bestX {
			best, bestX = l.clone(), x
		}
	}
	return best
}

// A sweep holds each item's position in its row, 0 to 1, so that rows of
// different lengths compare, and the same-row partners of each item.
type sweep struct {
	pos  []float64
	side [][]int
}

// spread sets the positions of row's items evenly, in row order.
func (s *sweep) spread(row []int) {
	for i, it := range row {
		s.pos[it] = (float64(i) + 0.5) / float64(len(row))
	}
}

// sortRow orders row, in place, by the mean position of each item's
// neighbours in by (an item without any keeps its own).
func (s *sweep) sortRow(row []int, by [][]int) {
	key := make(map[int]float64, len(row))
	for _, it := range row {
		key[it] = s.pos[it]
		if ns := by[it]; len(ns) > 0 {
			sum := 0.0
			for _, n := range ns {
				sum += s.pos[n]
			}
			key[it] = sum / float64(len(ns))
		}
	}
	// A same-row partner pulls an item halfway towards it.
	for _, it := range row {
		for _, o := range s.side[it] {
			key[it] = (key[it] + key[o]) / 2
		}
	}
	sort.SliceStable(row, func(i, j int) bool { return key[row[i]] < key[row[j]] })
	s.spread(row)
}

func (l *Layout) clone() [][]int {
	rows := make([][]int, len(l.Rows))
	for i, r := range l.Rows {
		rows[i] = slices.Clone(r)
	}
	return rows
}

// crossings counts pairs of links between two adjacent rows that cross.
func (l *Layout) crossings(down [][]int) int {
	at := make([]int, len(l.Items))
	for _, row := range l.Rows {
		for i, it := range row {
			at[it] = i
		}
	}
	n := 0
	for r := len(l.Rows) - 1; r > 0; r-- {
		var links [][2]int
		for _, hi := range l.Rows[r] {
			for _, lo := range down[hi] {
				links = append(links, [2]int{at[hi], at[lo]})
			}
		}
		for i := range links {
			for j := i + 1; j < len(links); j++ {
				a, b := links[i], links[j]
				if (a[0]-b[0])*(a[1]-b[1]) < 0 {
					n++
				}
			}
		}
	}
	return n
}

// Place gives the items of each row x positions (centres), in row order,
// at least gap apart between their widths: each row in turn, top down then
// bottom up, moves every item towards the mean x of its neighbours in the
// rows next to it, as far as its row's order and gaps allow. The smallest
// left edge is 0.
func (l *Layout) Place(width []float64, gap float64) []float64 {
	x := make([]float64, len(l.Items))
	for _, row := range l.Rows {
		at := 0.0
		for _, it := range row {
			x[it] = at + width[it]/2
			at += width[it] + gap
		}
	}
	// Centre the rows on the widest.
	span := func(row []int) float64 {
		if len(row) == 0 {
			return 0
		}
		return x[row[len(row)-1]] + width[row[len(row)-1]]/2
	}
	widest := 0.0
	for _, row := range l.Rows {
		widest = max(widest, span(row))
	}
	for _, row := range l.Rows {
		d := (widest - span(row)) / 2
		for _, it := range row {
			x[it] += d
		}
	}
	nbrs := make([][]int, len(l.Items))
	for _, e := range l.Edges {
		chain := append(append([]int{l.Of[e.From]}, e.Via...), l.Of[e.To])
		for i := 1; i < len(chain); i++ {
			nbrs[chain[i-1]] = append(nbrs[chain[i-1]], chain[i])
			nbrs[chain[i]] = append(nbrs[chain[i]], chain[i-1])
		}
	}
	sep := func(a, b int) float64 { return (width[a]+width[b])/2 + gap }
	settle := func(row []int) {
		want := make([]float64, len(row))
		for i, it := range row {
			want[i] = x[it]
			if len(nbrs[it]) > 0 {
				s := 0.0
				for _, n := range nbrs[it] {
					s += x[n]
				}
				want[i] = s / float64(len(nbrs[it]))
			}
		}
		// Pushed right from the left, pushed left from the right: both
		// keep the gaps, and so does their mean.
		fwd, bwd := slices.Clone(want), slices.Clone(want)
		for i := 1; i < len(row); i++ {
			fwd[i] = max(fwd[i], fwd[i-1]+sep(row[i-1], row[i]))
		}
		for i := len(row) - 2; i >= 0; i-- {
			bwd[i] = min(bwd[i], bwd[i+1]-sep(row[i], row[i+1]))
		}
		for i, it := range row {
			x[it] = (fwd[i] + bwd[i]) / 2
		}
	}
	for range 8 {
		for r := len(l.Rows) - 1; r >= 0; r-- {
			settle(l.Rows[r])
		}
		for r := range l.Rows {
			settle(l.Rows[r])
		}
	}
	left := 0.0
	first := true
	for _, row := range l.Rows {
		if len(row) > 0 && (first || x[row[0]]-width[row[0]]/2 < left) {
			left, first = x[row[0]]-width[row[0]]/2, false
		}
	}
	for i := range x {
		x[i] -= left
	}
	return x
}
