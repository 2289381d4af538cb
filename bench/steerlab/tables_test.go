package steerlab

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/pnap-project/pnap/routes"
)

// A synthesised table has the size, the distinctness and roughly the
// length mix asked for, and pnap's loader reads it.
func TestSynthesisedTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v4.txt")
	if err := synthesise(path, 4, 20_000, mix4, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	rs, err := routes.ReadPrefixFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	by := map[int]int{}
	for _, r := range rs {
		if !r.Prefix.Addr().Is4() || seen[r.Prefix.String()] {
			t.Fatalf("bad or repeated prefix %v", r.Prefix)
		}
		seen[r.Prefix.String()] = true
		by[r.Prefix.Bits()]++
	}
	if len(rs) != 20_000 {
		t.Fatalf("%d prefixes, want 20000", len(rs))
	}
	if share := float64(by[24]) / float64(len(rs)); share < 0.55 || share > 0.65 {
		t.Fatalf("/24 share %.2f, want about 0.6 as in the real table", share)
	}
}
