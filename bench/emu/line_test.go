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

// BenchmarkLine is the delay line's share of the loop's work per frame at
// 100 kpps and 100 ms (10k frames queued): one push per frame, and every
// four frames (a loop turn) a drain of what is due, as transmit does it.
func BenchmarkLine(b *testing.B) {
	l := newLine(1<<16, 32<<20)
	f := make([]byte, vnetHdrLen+60)
	txb := make([][]byte, 0, batch)
	const gap, delay = 10_000, 100_000_000
	var at int64
	step := func(i int) {
		at += gap
		if !l.push(at+delay, f) {
			b.Fatal("line full")
		}
		if i%4 == 3 {
			txb = drain(&l, at, txb)
		}
	}
	// One lap of the byte ring first: its pages fault in on first use (an
	// emulator's first seconds), which is not what this measures.
	for i := range len(l.buf)/len(f) + 1 {
		step(i)
	}
	for i := 0; b.Loop(); i++ {
		step(i)
	}
}

// drain sends (nowhere) the frames due by now, batch by batch.
func drain(l *line, now int64, txb [][]byte) [][]byte {
	for l.n > 0 {
		txb = txb[:0]
		for k := 0; k < l.n && k < batch; k++ {
			due, f := l.at(k)
			if due > now {
				break
			}
			txb = append(txb, f)
		}
		if len(txb) == 0 {
			break
		}
		l.pop(len(txb))
	}
	return txb
}
