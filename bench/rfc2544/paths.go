package rfc2544

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/gaissmai/bart"
)

// backboneRoutes is the loaded tables split over the backbones, so that a
// forwarder with a lookup spreads destinations over all of them and the
// receivers can tell a frame that took the wrong one. Backbone i holds
// the distinct prefixes whose index (in file order) is i mod the number of
// backbones: a deterministic share of each family and of each prefix
// length.
type backboneRoutes struct {
	sets  [][]netip.Prefix // backbone i's prefixes
	files [][]string       // the same as route files, for pnapd
	// all holds every prefix, valued with its backbone: the expected
	// backbone of an address is its longest match's. It is gaissmai/bart,
	// not pnap's fib, so that a bug in fib cannot hide in its own yardstick.
	all bart.Table[int]
}

// splitRoutes deals prefixes out to n backbones and, with dir, writes each
// backbone's share as a route file there.
func splitRoutes(prefixes []netip.Prefix, n int, dir string) (*backboneRoutes, error) {
	if n < 1 {
		return nil, fmt.Errorf("split routes over %d backbones: need at least 1", n)
	}
	r := &backboneRoutes{sets: make([][]netip.Prefix, n)}
	k := 0
	for _, p := range prefixes {
		if _, dup := r.all.Get(p); dup {
			continue // a prefix on two backbones would make pnapd choose
		}
		r.all.Insert(p, k%n)
		r.sets[k%n] = append(r.sets[k%n], p)
		k++
	}
	if dir == "" {
		return r, nil
	}
	for i, set := range r.sets {
		f := filepath.Join(dir, fmt.Sprintf("backbone-%d.routes", i))
		if err := writePrefixes(f, set); err != nil {
			return nil, err
		}
		r.files = append(r.files, []string{f})
	}
	return r, nil
}

// writePrefixes writes one prefix per line, the format routes.ReadPrefixFile reads.
func writePrefixes(path string, set []netip.Prefix) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, p := range set {
		w.WriteString(p.String())
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

// expect returns the backbone of each destination's longest matching
// prefix across all backbones' sets. A destination that no prefix covers
// is an error: no forwarder has a path for it.
func (r *backboneRoutes) expect(dests []netip.Addr) ([]int, error) {
	out := make([]int, len(dests))
	for i, d := range dests {
		b, ok := r.all.Lookup(d)
		if !ok {
			return nil, fmt.Errorf("destination %v: no route on any backbone", d)
		}
		out[i] = b
	}
	return out, nil
}
