//go:build linux

package emu

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestLine pushes and pops frames of random sizes against a model: frames
// leave in order, unchanged, with due times never decreasing, and the line
// holds what fits: it never refuses a frame while it holds less than a third
// of its bytes (a ring wastes at most the frame that did not fit at its end,
// and the tail of the newest frame's lap).
func TestLine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := newLine(64, 4096)
	var model [][]byte
	var due int64
	for i := range 200_000 {
		if rng.IntN(2) == 0 {
			f := bytes.Repeat([]byte{byte(i)}, 1+rng.IntN(300))
			due += rng.Int64N(10) - 3
			if l.push(due, f) {
				model = append(model, f)
			} else if used(model)+len(f) <= 4096/3 && l.n < len(l.ents) {
				for j := range l.n {
					e := l.ents[(l.head+j)%len(l.ents)]
					t.Logf("ent %d: off %d len %d", j, e.off, e.len)
				}
				t.Fatalf("push %d refused with %d frames queued", len(f), len(model))
			}
		} else if len(model) > 0 {
			k := 1 + rng.IntN(len(model))
			var last int64
			for j := range k {
				d, f := l.at(j)
				if !bytes.Equal(f, model[j]) {
					t.Fatalf("frame %d of %d differs", j, len(model))
				}
				if d < last {
					t.Fatalf("due times decrease: %d after %d", d, last)
				}
				last = d
			}
			l.pop(k)
			model = model[k:]
		}
		if l.n != len(model) {
			t.Fatalf("line holds %d frames, model %d", l.n, len(model))
		}
	}
}

func used(fs [][]byte) int {
	n := 0
	for _, f := range fs {
		n += len(f)
	}
	return n
}
