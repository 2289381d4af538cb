//go:build linux

package emu

import (
	"bytes"
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
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
			if l.push(due, 0, f) {
				model = append(model, f)
			} else if used(model)+len(f) <= 4096/3 && l.n < len(l.ents) {
				for j := range l.n {
					e := l.ents[(l.head+j)%len(l.ents)]
					t.Logf("ent %d: off %d len %d", j, e.off, e.len)
				}
				t.Fatalf("push %d refused with %d frames queued", len(f), len(model))
			}
		} else if len(model) > 0 {
			// Sent in batches, some only in part (sendmmsg may stop short).
			txb := l.ready(math.MaxInt64, nil)
			var last int64
			for j, f := range txb {
				if !bytes.Equal(f, model[j]) {
					t.Fatalf("frame %d of %d differs", j, len(model))
				}
				if d := l.picked[j].due; d < last {
					t.Fatalf("due times decrease: %d after %d", d, last)
				} else {
					last = d
				}
			}
			k := 1 + rng.IntN(len(txb))
			l.settle(k)
			model = model[k:]
		}
		if l.n != len(model) || l.mixed {
			t.Fatalf("line holds %d frames, model %d; heap on: %v", l.n, len(model), l.mixed)
		}
	}
}

// TestLinePrefixes: a frame to a fast prefix leaves before one to a slow
// prefix ahead of it; a frame without a key waits for it.
func TestLinePrefixes(t *testing.T) {
	const slow, fast = v4Key | 1, v4Key | 2
	for _, c := range []struct {
		name       string
		slow, fast uint64
		want       []byte
	}{
		{"by prefix", slow, fast, []byte{'f'}},
		{"without keys", 0, 0, nil},
		{"fast without a key", slow, 0, nil},
		{"slow without a key", 0, fast, nil},
	} {
		l := newLine(8, 1024)
		l.push(100, c.slow, []byte{'s'})
		l.push(10, c.fast, []byte{'f'})
		got := l.ready(50, nil)
		if len(got) != len(c.want) || len(got) == 1 && got[0][0] != c.want[0] {
			t.Errorf("%s: due at 50: %q, want %q", c.name, got, c.want)
		}
		l.settle(len(got))
		if got := l.ready(100, nil); len(got) != 2-len(c.want) {
			t.Errorf("%s: due at 100: %q, want the rest", c.name, got)
		}
	}
}

// TestLineKeys pushes frames to a few prefixes and without a key, with delays
// that change, jitter, and partial sends, against a model: frames leave by
// due time, then arrival; a frame is due at its own time or, if later, at the
// newest queued of its prefix or the newest without a key (a frame without a
// key: at the latest queued yet), never otherwise held; bytes come out as
// they went in; the per-prefix table holds exactly the prefixes queued.
func TestLineKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := newLine(256, 1<<16)
	var (
		queued      []modelFrame // by arrival
		mixed       int          // steps with the heap on
		now, maxDue int64
		fifoDue     int64
		seq         uint64
		delays      = map[uint64]int64{0: 50}
		keys        = []uint64{0, v4Key | 1, v4Key | 2, v6Key | 3, v6Key | 4, otherKey}
	)
	for i := range 100_000 {
		now += rng.Int64N(4)
		switch r := rng.IntN(100); {
		case r < 2: // a Set: one prefix's delay changes
			delays[keys[rng.IntN(len(keys))]] = rng.Int64N(200)
		case r < 55:
			key := keys[rng.IntN(len(keys))]
			want := now - rng.Int64N(5) + delays[key] + rng.Int64N(11) - 5
			if key == 0 {
				want = max(want, maxDue)
			} else {
				want = max(want, fifoDue)
				for _, f := range queued {
					if f.key == key {
						want = max(want, f.due)
					}
				}
			}
			b := []byte{byte(i), byte(i >> 8), byte(rng.IntN(256))}
			if !l.push(want, key, b) {
				continue
			}
			queued = append(queued, modelFrame{seq, key, want, b})
			seq++
			maxDue = max(maxDue, want)
			if key == 0 {
				fifoDue = want
			}
		default:
			queued = sendModel(t, &l, queued, now, rng)
		}
		held := map[uint64]bool{}
		for _, f := range queued {
			if f.key != 0 {
				held[f.key] = true
			}
		}
		if l.mixed {
			mixed++
		}
		if l.keys.n != len(held) || l.keys.count() != len(held) || l.n < len(queued) || l.n == 0 && l.mixed {
			t.Fatalf("line: %d prefixes held (%d counted), %d entries, heap on: %v; model: %d prefixes, %d frames", l.keys.n, l.keys.count(), l.n, l.mixed, len(held), len(queued))
		}
	}
	if mixed == 0 {
		t.Error("the heap never turned on")
	}
}

// modelFrame is a frame queued in TestLineKeys's model of a line.
type modelFrame struct {
	seq, key uint64
	due      int64
	b        []byte
}

// sendModel checks that the line has ready the frames due by now that the
// model has, earliest first, settles some of them as sendmmsg might, and
// returns the model's frames still queued.
func sendModel(t *testing.T, l *line, queued []modelFrame, now int64, rng *rand.Rand) []modelFrame {
	t.Helper()
	due := slices.SortedFunc(slices.Values(queued), func(a, b modelFrame) int {
		return cmp.Or(cmp.Compare(a.due, b.due), cmp.Compare(a.seq, b.seq))
	})
	n := 0
	for n < len(due) && n < batch && due[n].due <= now {
		n++
	}
	txb := l.ready(now, nil)
	if len(txb) != n {
		t.Fatalf("at %d: %d frames ready, want %d", now, len(txb), n)
	}
	for j, f := range txb {
		if p := l.picked[j]; p.seq != due[j].seq || p.due != due[j].due || !bytes.Equal(f, due[j].b) {
			t.Fatalf("at %d: frame %d ready is %d due %d (%x), want %d due %d (%x)", now, j, p.seq, p.due, f, due[j].seq, due[j].due, due[j].b)
		}
	}
	k := rng.IntN(n + 1)
	l.settle(k)
	return slices.DeleteFunc(queued, func(f modelFrame) bool {
		return slices.ContainsFunc(due[:k], func(g modelFrame) bool { return g.seq == f.seq })
	})
}

// TestLineAllocs: queueing and sending frames by prefix, heap on, does not
// allocate.
func TestLineAllocs(t *testing.T) {
	l := newLine(1024, 1<<16)
	f := make([]byte, vnetHdrLen+60)
	txb := make([][]byte, 0, batch)
	var at int64
	n := testing.AllocsPerRun(10_000, func() {
		at += 10
		l.push(at+int64(at%7)*100, v4Key|uint64(at%7), f)
		txb = drain(&l, at, txb)
	})
	if n != 0 || !l.mixed {
		t.Errorf("%v allocations per frame (heap on: %v), want none", n, l.mixed)
	}
}

// TestKeyTable sets and releases keys against a map, in a table small
// enough that probes collide and deletions shift.
func TestKeyTable(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	kt := newKeyTable(8)
	if len(kt.slots) != 16 {
		t.Fatalf("%d slots for 8 frames, want 16", len(kt.slots))
	}
	type val struct {
		due int64
		seq uint64
	}
	model := map[uint64]val{}
	var pool []uint64
	for i := range 40 {
		pool = append(pool, v4Key|uint64(i))
	}
	for i := range 100_000 {
		k := pool[rng.IntN(len(pool))]
		if v, ok := model[k]; ok && rng.IntN(2) == 0 {
			seq := v.seq - uint64(rng.IntN(2)) // an older frame's release keeps the key
			kt.release(k, seq)
			if seq == v.seq {
				delete(model, k)
			}
		} else if ok || len(model) < 8 {
			v := val{int64(i), uint64(i)}
			kt.set(k, v.due, v.seq)
			model[k] = v
		}
		for _, k := range pool {
			if got, want := kt.due(k), model[k].due; got != want {
				t.Fatalf("step %d: key %#x due %d, want %d", i, k, got, want)
			}
		}
		if kt.n != len(model) || kt.count() != len(model) {
			t.Fatalf("step %d: %d keys held (%d counted), want %d", i, kt.n, kt.count(), len(model))
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
		if !l.push(at+delay, 0, f) {
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
	for {
		txb = l.ready(now, txb[:0])
		if len(txb) == 0 {
			return txb
		}
		l.settle(len(txb))
	}
}

// BenchmarkLinePrefixes is BenchmarkLine with the scale scenario's keys:
// frames to 10,000 prefixes at random, each prefix with its own delay of 10
// to 110 ms, so the heap orders the line (~6k frames queued).
func BenchmarkLinePrefixes(b *testing.B) {
	l := newLine(1<<16, 32<<20)
	f := make([]byte, vnetHdrLen+60)
	txb := make([][]byte, 0, batch)
	rng := rand.New(rand.NewPCG(7, 8))
	const gap, prefixes = 10_000, 10_000
	delays := make([]int64, prefixes)
	for i := range delays {
		delays[i] = 10_000_000 + rng.Int64N(100_000_000)
	}
	var at int64
	step := func(i int) {
		at += gap
		p := rng.IntN(prefixes)
		if !l.push(at+delays[p], v4Key|uint64(p), f) {
			b.Fatal("line full")
		}
		if i%4 == 3 {
			txb = drain(&l, at, txb)
		}
	}
	for i := range len(l.buf)/len(f) + 1 {
		step(i)
	}
	for i := 0; b.Loop(); i++ {
		step(i)
	}
}

// count counts the keys in t's slots.
func (t *keyTable) count() int {
	n := 0
	for _, s := range t.slots {
		if s.key != 0 {
			n++
		}
	}
	return n
}
