package main

import (
	"image/color"
	"math"
	"os"
	"slices"
	"sort"
	"strings"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Sizes in points. The picture is drawn at 144 dpi: 2 pixels a point.
const (
	dpi       = 144
	margin    = 36.0
	padX      = 12.0
	padY      = 9.0
	roleMax   = 190.0 // widest role line
	boxMin    = 120.0
	gap       = 30.0 // between items of a row
	passWidth = 6.0  // an edge passing through a row
	rowGap    = 72.0 // between rows: room for curves, stubs and their labels
	stub      = 30.0 // an In or Out arrow
	offset    = 4.5  // a highlighted hop beside the import it follows
)

var (
	ink      = color.Gray{0x22}
	muted    = color.Gray{0x5a}
	edgeGrey = color.Gray{0xa8}
	border   = color.Gray{0x80}
	fills    = []color.Color{ // one per top-level directory, in order
		color.RGBA{0xe4, 0xef, 0xfa, 0xff}, color.RGBA{0xfd, 0xef, 0xd6, 0xff},
		color.RGBA{0xe5, 0xf4, 0xe3, 0xff}, color.RGBA{0xf1, 0xe6, 0xf5, 0xff},
		color.RGBA{0xfb, 0xe3, 0xe2, 0xff}, color.RGBA{0xe0, 0xf2, 0xf1, 0xff},
		color.RGBA{0xf8, 0xf4, 0xd0, 0xff}, color.RGBA{0xea, 0xea, 0xea, 0xff},
		color.RGBA{0xe8, 0xea, 0xf8, 0xff}, color.RGBA{0xf6, 0xe8, 0xdc, 0xff},
		color.RGBA{0xe9, 0xf5, 0xd8, 0xff}, color.RGBA{0xfc, 0xe4, 0xf0, 0xff},
	}
)

func style(size float64, bold bool, c color.Color) draw.TextStyle {
	f := font.Font{Typeface: "Liberation", Variant: "Sans", Size: vg.Length(size)}
	if bold {
		f.Weight = xfont.WeightBold
	}
	return draw.TextStyle{Color: c, Font: f, Handler: plot.DefaultTextHandler, YAlign: draw.YCenter}
}

var (
	titleStyle  = style(20, true, ink)
	nameStyle   = style(14.5, true, ink)
	roleStyle   = style(10, false, muted)
	legendStyle = style(11.5, false, ink)
	noteStyle   = style(9.5, false, muted)
	stubStyle   = style(10, true, ink)
)

func width(s draw.TextStyle, txt string) float64 { return float64(s.Width(txt)) }
func height(s draw.TextStyle) float64            { return float64(s.Font.Size) * 1.25 }

// wrap breaks txt into at most two lines no wider than max, ending the
// second with an ellipsis when it does not fit.
func wrap(s draw.TextStyle, txt string, max float64) []string {
	lines := wrapAll(s, txt, max)
	if len(lines) > 2 {
		last := lines[1]
		for width(s, last+" …") > max && strings.Contains(last, " ") {
			last = last[:strings.LastIndex(last, " ")]
		}
		lines = []string{lines[0], last + " …"}
	}
	return lines
}

type pt struct{ x, y float64 } // y grows downwards until drawn

// picture is everything placed, in points, y from the top.
type picture struct {
	w, h    float64
	boxes   map[string]box
	lay     Layout
	x       []float64
	rowTop  []float64 // per row
	rowBot  []float64
	paths   []placedPath
	omitted []string
	note    []string      // lines under the picture
	out     map[int][]int // per package item, the edges leaving its bottom
	in      map[int][]int // per package item, the edges reaching its top
}

type box struct {
	cx, top, w, h float64
	name          string
	role          []string
	fill          color.Color
}

type placedPath struct {
	Path
	pkgs []string
}

func (b box) bottom() float64 { return b.top + b.h }

func drawTo(file string, pkgs []Package, omitted []string, ps []Path) error {
	pic, err := newPicture(pkgs, omitted, ps)
	if err != nil {
		return err
	}
	c := vgimg.NewWith(vgimg.UseWH(vg.Length(pic.w), vg.Length(pic.h)), vgimg.UseDPI(dpi), vgimg.UseBackgroundColor(color.White))
	pic.draw(draw.New(c))
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newPicture lays the packages out: layers, rows in order, boxes sized to
// their text, then everything placed on a canvas that fits it.
func newPicture(pkgs []Package, omitted []string, ps []Path) (*picture, error) {
	g := Graph{Imports: map[string][]string{}}
	var rels []string
	for _, p := range pkgs {
		g.Imports[p.Rel] = append([]string(nil), p.Imports...)
		rels = append(rels, p.Rel)
	}
	layer, err := Layers(g)
	if err != nil {
		return nil, err
	}
	var placed []placedPath
	var near [][2]string
	for _, p := range ps {
		steps := resolve(p.Steps, rels)
		placed = append(placed, placedPath{Path: p, pkgs: steps})
		for i := 1; i < len(steps); i++ {
			near = append(near, [2]string{steps[i-1], steps[i]})
		}
	}
	pic := &picture{boxes: boxes(pkgs), lay: Arrange(g, layer, near), paths: placed, omitted: omitted}
	pic.place()
	pic.ports()
	return pic, nil
}

// boxes are the packages' boxes, all of one height, each as wide as its
// text, filled by top-level directory.
func boxes(pkgs []Package) map[string]box {
	fill := map[string]color.Color{}
	var tops []string
	for _, p := range pkgs {
		t, _, _ := strings.Cut(p.Rel, "/")
		if _, ok := fill[t]; !ok {
			fill[t] = nil
			tops = append(tops, t)
		}
	}
	sort.Strings(tops)
	for i, t := range tops {
		fill[t] = fills[i%len(fills)]
	}
	h := 2*padY + height(nameStyle) + 2*height(roleStyle)
	bs := map[string]box{}
	for _, p := range pkgs {
		t, _, _ := strings.Cut(p.Rel, "/")
		b := box{name: p.Rel, role: wrap(roleStyle, p.Role, roleMax), h: h, fill: fill[t]}
		b.w = width(nameStyle, b.name)
		for _, l := range b.role {
			b.w = max(b.w, width(roleStyle, l))
		}
		b.w = max(boxMin, b.w+2*padX)
		bs[p.Rel] = b
	}
	return bs
}

// place puts the rows top down under the title and legend, centred, and
// sizes the canvas to fit them, the stubs under the last row and the note.
func (pic *picture) place() {
	lay := pic.lay
	widths := make([]float64, len(lay.Items))
	boxH := 0.0
	for i, it := range lay.Items {
		widths[i] = passWidth
		if it.Pkg != "" {
			widths[i] = pic.boxes[it.Pkg].w
			boxH = pic.boxes[it.Pkg].h
		}
	}
	pic.x = lay.Place(widths, gap)
	header := margin + height(titleStyle) + 8 + float64(len(pic.paths)+1)*height(legendStyle) + 28
	pic.rowTop = make([]float64, len(lay.Rows))
	pic.rowBot = make([]float64, len(lay.Rows))
	y := header
	for r := len(lay.Rows) - 1; r >= 0; r-- {
		pic.rowTop[r], pic.rowBot[r] = y, y+boxH
		y += boxH + rowGap
	}
	right := 0.0
	for i := range lay.Items {
		right = max(right, pic.x[i]+widths[i]/2)
	}
	pic.w = max(right+2*margin, pic.legendWidth()+2*margin)
	shift := (pic.w - right) / 2
	for i := range pic.x {
		pic.x[i] += shift
	}
	for name, b := range pic.boxes {
		it := lay.Of[name]
		b.cx, b.top = pic.x[it], pic.rowTop[lay.Row[it]]
		pic.boxes[name] = b
	}
	pic.note = wrapAll(noteStyle, pic.noteText(), pic.w-2*margin)
	pic.h = y - rowGap + stub + height(stubStyle) + 16 + float64(len(pic.note))*height(noteStyle) + margin
}

// ports orders the edges at each box's bottom and top by where their other
// end lies, so that they leave and arrive side by side without crossing.
func (p *picture) ports() {
	p.out, p.in = map[int][]int{}, map[int][]int{}
	next := func(e Edge) int { // the item below the importer
		if len(e.Via) > 0 {
			return e.Via[0]
		}
		return p.lay.Of[e.To]
	}
	prev := func(e Edge) int {
		if len(e.Via) > 0 {
			return e.Via[len(e.Via)-1]
		}
		return p.lay.Of[e.From]
	}
	for i, e := range p.lay.Edges {
		p.out[p.lay.Of[e.From]] = append(p.out[p.lay.Of[e.From]], i)
		p.in[p.lay.Of[e.To]] = append(p.in[p.lay.Of[e.To]], i)
	}
	for _, es := range p.out {
		sort.SliceStable(es, func(a, b int) bool { return p.x[next(p.lay.Edges[es[a]])] < p.x[next(p.lay.Edges[es[b]])] })
	}
	for _, es := range p.in {
		sort.SliceStable(es, func(a, b int) bool { return p.x[prev(p.lay.Edges[es[a]])] < p.x[prev(p.lay.Edges[es[b]])] })
	}
}

// port is the x of the k-th of n edges on a box's side.
func port(b box, k, n int) float64 {
	span := b.w * 0.7
	return b.cx - span/2 + span*float64(k+1)/float64(n+1)
}

// route is edge e's points, importer first: pairs of points within rows
// it passes, joined by curves between rows.
func (p *picture) route(ei int) []pt {
	e := p.lay.Edges[ei]
	from, to := p.boxes[e.From], p.boxes[e.To]
	fi, ti := p.lay.Of[e.From], p.lay.Of[e.To]
	pts := []pt{{port(from, index(p.out[fi], ei), len(p.out[fi])), from.bottom()}}
	for _, v := range e.Via {
		r := p.lay.Row[v]
		pts = append(pts, pt{p.x[v], p.rowTop[r]}, pt{p.x[v], p.rowBot[r]})
	}
	return append(pts, pt{port(to, index(p.in[ti], ei), len(p.in[ti])), to.top})
}

func index(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return 0
}

// canvas helpers: points from the top-left to vg's bottom-left.
type pen struct {
	dc draw.Canvas
	h  float64
}

func (p pen) at(q pt) vg.Point { return vg.Point{X: vg.Length(q.x), Y: vg.Length(p.h - q.y)} }

// curve strokes pts: odd segments (inside a row) straight, the others
// (between rows) S-curves that leave and arrive vertically, turning bend
// below halfway; a flat segment dips by sag below its ends.
func (p pen) curve(pts []pt, c color.Color, w, sag, bend float64) {
	var path vg.Path
	path.Move(p.at(pts[0]))
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		switch {
		case i%2 == 0:
			path.Line(p.at(b))
		case math.Abs(a.y-b.y) < 1:
			path.CubeTo(p.at(pt{a.x, a.y + sag}), p.at(pt{b.x, b.y + sag}), p.at(b))
		default:
			m := (a.y+b.y)/2 + bend
			path.CubeTo(p.at(pt{a.x, m}), p.at(pt{b.x, m}), p.at(b))
		}
	}
	p.dc.SetLineWidth(vg.Length(w))
	p.dc.SetColor(c)
	p.dc.SetLineDash(nil, 0)
	p.dc.Stroke(path)
}

// head fills an arrowhead at tip, pointing from where it came.
func (p pen) head(from, tip pt, c color.Color, size float64) {
	dx, dy := tip.x-from.x, tip.y-from.y
	l := math.Hypot(dx, dy)
	if l == 0 {
		return
	}
	dx, dy = dx/l, dy/l
	base := pt{tip.x - dx*size, tip.y - dy*size}
	wing := size * 0.45
	p.dc.FillPolygon(c, []vg.Point{p.at(tip), p.at(pt{base.x - dy*wing, base.y + dx*wing}), p.at(pt{base.x + dy*wing, base.y - dx*wing})})
}

func (p pen) text(s draw.TextStyle, q pt, txt string, align draw.XAlignment) {
	s.XAlign = align
	p.dc.FillText(s, p.at(q), txt)
}

func (p pen) roundRect(b box, r float64) vg.Path {
	l, rt, t, bt := b.cx-b.w/2, b.cx+b.w/2, b.top, b.bottom()
	var path vg.Path
	path.Move(p.at(pt{l + r, bt}))
	path.Line(p.at(pt{rt - r, bt}))
	path.Arc(p.at(pt{rt - r, bt - r}), vg.Length(r), -math.Pi/2, math.Pi/2)
	path.Line(p.at(pt{rt, t + r}))
	path.Arc(p.at(pt{rt - r, t + r}), vg.Length(r), 0, math.Pi/2)
	path.Line(p.at(pt{l + r, t}))
	path.Arc(p.at(pt{l + r, t + r}), vg.Length(r), math.Pi/2, math.Pi/2)
	path.Line(p.at(pt{l, bt - r}))
	path.Arc(p.at(pt{l + r, bt - r}), vg.Length(r), math.Pi, math.Pi/2)
	path.Close()
	return path
}

const importsLegend = "imports: importer → imported (a package sits above all it imports)"

func (pic *picture) legendWidth() float64 {
	w := max(width(titleStyle, pic.title()), 40+width(legendStyle, importsLegend))
	for _, pp := range pic.paths {
		w = max(w, 40+width(legendStyle, pp.legend()))
	}
	return w
}

func (pic *picture) title() string { return "pnap: packages by import depth, and where data flows" }

func (pp placedPath) legend() string {
	var in, out []string
	if pp.In != "" {
		in = []string{pp.In}
	}
	if pp.Out != "" {
		out = []string{pp.Out}
	}
	steps := slices.Concat(in, pp.pkgs, out)
	return pp.Name + ": " + strings.Join(steps, " → ")
}

// draw paints the title and legend, the boxes, the import edges, the
// highlighted paths, the boxes' text on top, and the note.
func (pic *picture) draw(dc draw.Canvas) {
	p := pen{dc: dc, h: pic.h}
	pic.drawLegend(p)
	names := make([]string, 0, len(pic.boxes))
	for n := range pic.boxes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b := pic.boxes[n]
		path := p.roundRect(b, 7)
		dc.SetColor(b.fill)
		dc.Fill(path)
		dc.SetColor(border)
		dc.SetLineWidth(1)
		dc.Stroke(path)
	}
	for i := range pic.lay.Edges {
		pts := pic.route(i)
		p.curve(pts, edgeGrey, 1, 0, 0)
		p.head(pt{pts[len(pts)-1].x, pts[len(pts)-1].y - 10}, pts[len(pts)-1], edgeGrey, 7)
	}
	for _, pp := range pic.paths {
		pic.drawPath(p, pp)
	}
	for _, n := range names {
		b := pic.boxes[n]
		textH := height(nameStyle) + float64(len(b.role))*height(roleStyle)
		y := b.top + (b.h-textH)/2 + height(nameStyle)/2
		p.text(nameStyle, pt{b.cx, y}, b.name, draw.XCenter)
		y += height(nameStyle)/2 + height(roleStyle)/2
		for _, l := range b.role {
			p.text(roleStyle, pt{b.cx, y}, l, draw.XCenter)
			y += height(roleStyle)
		}
	}
	y := pic.h - margin - float64(len(pic.note)-1)*height(noteStyle) - height(noteStyle)/2
	for _, l := range pic.note {
		p.text(noteStyle, pt{margin, y}, l, draw.XLeft)
		y += height(noteStyle)
	}
}

func (pic *picture) drawLegend(p pen) {
	y := margin + height(titleStyle)/2
	p.text(titleStyle, pt{margin, y}, pic.title(), draw.XLeft)
	y += height(titleStyle)/2 + 8
	for _, pp := range pic.paths {
		y += height(legendStyle)
		p.curve([]pt{{margin, y}, {margin + 28, y}}, pp.Color, 3, 0, 0)
		p.head(pt{margin, y}, pt{margin + 32, y}, pp.Color, 9)
		p.text(legendStyle, pt{margin + 40, y}, pp.legend(), draw.XLeft)
	}
	y += height(legendStyle)
	p.curve([]pt{{margin, y}, {margin + 28, y}}, edgeGrey, 1, 0, 0)
	p.head(pt{margin, y}, pt{margin + 32, y}, edgeGrey, 7)
	p.text(legendStyle, pt{margin + 40, y}, importsLegend, draw.XLeft)
}

func (pic *picture) noteText() string {
	note := "Layers: the longest import chain below a package, then raised to just under its lowest importer. Drawn by internal/archplot (make arch) from go list."
	if len(pic.omitted) > 0 {
		note = "Not drawn: " + strings.Join(pic.omitted, ", ") + ". " + note
	}
	return note
}

// wrapAll breaks txt into lines no wider than max.
func wrapAll(s draw.TextStyle, txt string, max float64) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(txt) {
		if try := strings.TrimSpace(line + " " + w); line == "" || width(s, try) <= max {
			line = try
			continue
		}
		lines = append(lines, line)
		line = w
	}
	return append(lines, line)
}

// Highlighted paths: line width and arrowhead size.
const pathW, pathHead = 3.0, 10.0

// drawPath draws a highlighted path hop by hop: along the import between
// two steps where there is one, beside it so that the import stays
// visible, else from box to box.
func (pic *picture) drawPath(p pen, pp placedPath) {
	w, hs := pathW, pathHead
	edge := map[[2]string]int{}
	for i, e := range pic.lay.Edges {
		edge[[2]string{e.From, e.To}] = i
	}
	for i := 1; i < len(pp.pkgs); i++ {
		a, b := pp.pkgs[i-1], pp.pkgs[i]
		var pts []pt
		if ei, ok := edge[[2]string{a, b}]; ok {
			pts = pic.route(ei)
		} else if ei, ok := edge[[2]string{b, a}]; ok {
			pts = pic.route(ei)
			for l, r := 0, len(pts)-1; l < r; l, r = l+1, r-1 {
				pts[l], pts[r] = pts[r], pts[l]
			}
		} else {
			pts = pic.direct(a, b)
		}
		// A hop down runs right of its import and turns lower, a hop up
		// left of it and turns higher: a hop and its way back run apart.
		dx, bend := offset, 2*offset
		if pts[len(pts)-1].y < pts[0].y { // going up
			dx, bend = -offset, -2*offset
		}
		for k := range pts {
			pts[k].x += dx
		}
		sag := 0.0
		if len(pts) == 2 && math.Abs(pts[0].y-pts[1].y) < 1 {
			sag = 30
		}
		p.curve(pts, pp.Color, w, sag, bend)
		end := pts[len(pts)-1]
		from := pt{end.x, end.y - hs}
		if len(pts) >= 2 && pts[len(pts)-2].y > end.y {
			from.y = end.y + hs
		}
		if sag != 0 {
			from = pt{end.x, end.y + hs}
		}
		p.head(from, end, pp.Color, hs)
	}
	if len(pp.pkgs) > 0 {
		pic.drawStubs(p, pp)
	}
}

// drawStubs draws where a path enters and leaves the picture: arrows at
// the bottom corner of its first and last box away from the next (or
// previous) step, or one corner each when both are the same box.
func (pic *picture) drawStubs(p pen, pp placedPath) {
	w, hs := pathW, pathHead
	first, last := pic.boxes[pp.pkgs[0]], pic.boxes[pp.pkgs[len(pp.pkgs)-1]]
	inSide, outSide := -1.0, 1.0
	if pp.pkgs[0] != pp.pkgs[len(pp.pkgs)-1] {
		inSide = -sign(pic.boxes[pp.pkgs[1]].cx - first.cx)
		outSide = -sign(pic.boxes[pp.pkgs[len(pp.pkgs)-2]].cx - last.cx)
	}
	label := func(b box, x float64, txt string) {
		p.text(stubStyle, pt{x, b.bottom() + stub + height(stubStyle)/2 + 2}, txt, draw.XCenter)
	}
	if pp.In != "" {
		b := first
		x := b.cx + inSide*b.w*0.42
		p.curve([]pt{{x, b.bottom() + stub}, {x, b.bottom()}}, pp.Color, w, 0, 0)
		p.head(pt{x, b.bottom() + hs}, pt{x, b.bottom()}, pp.Color, hs)
		label(b, x, pp.In)
	}
	if pp.Out != "" {
		b := last
		x := b.cx + outSide*b.w*0.42
		p.curve([]pt{{x, b.bottom()}, {x, b.bottom() + stub}}, pp.Color, w, 0, 0)
		p.head(pt{x, b.bottom() + stub - hs}, pt{x, b.bottom() + stub}, pp.Color, hs)
		label(b, x, pp.Out)
	}
}

// direct is a hop between two packages that no import joins: under the row
// when they share one, else from the upper's bottom to the lower's top.
func (pic *picture) direct(a, b string) []pt {
	ba, bb := pic.boxes[a], pic.boxes[b]
	switch {
	case ba.top == bb.top:
		return []pt{{ba.cx + sign(bb.cx-ba.cx)*ba.w/4, ba.bottom()}, {bb.cx - sign(bb.cx-ba.cx)*bb.w/4, bb.bottom()}}
	case ba.top < bb.top:
		return []pt{{ba.cx, ba.bottom()}, {bb.cx, bb.top}}
	default:
		return []pt{{ba.cx, ba.top}, {bb.cx, bb.bottom()}}
	}
}

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}
