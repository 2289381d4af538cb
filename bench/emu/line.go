//go:build linux

package emu

import "math/bits"

// line is one direction's delay line: the frames waiting to leave, each with
// its due time, stored in arrival order back to back in a byte ring. Both
// rings are fixed at creation: memory is bounded and a full line refuses
// frames instead of growing.
//
// Frames leave by due time, equal ones by arrival. A frame queued without a
// key (no per-destination delays) is due no earlier than any frame ahead of
// it, so it overtakes none. A frame queued with a key, its destination
// prefix, is due no earlier than the frames ahead of it with the same key or
// without one, but may leave before frames to other prefixes: a frame to a
// 10 ms prefix is not held behind one to a 100 ms prefix, as on a real
// backbone.
//
// While due times rise with arrival (always, without keys), the ring's head
// is the next to leave and the line costs what a FIFO does. The first frame
// due before one ahead of it turns on a heap of the queued frames by due
// time, until the line empties. A frame that leaves from the middle of the
// ring leaves a hole: room is freed from the head only, so the rings hold
// every frame that arrived since the oldest one still queued, as a FIFO's do.
type line struct {
	ents    []entry  // ring of queued frames and holes, oldest at head
	holes   []uint64 // bit i: ents[i] has left (sent or dropped), while mixed
	head    int
	n       int
	headSeq uint64 // arrival number of ents[head]; frame seq is at slot(seq)
	buf     []byte // ring of frame bytes

	// maxDue is the latest due time queued yet, fifoDue that of the newest
	// frame without a key.
	maxDue, fifoDue int64
	keys            keyTable // by key, the newest queued frame's due time
	mixed           bool     // due times do not rise with arrival: sorted orders the frames
	sorted          schedule
	picked          []pending // the frames ready handed out, for settle
}

// entry is 24 bytes, as before keys (holes are a bitmap, offsets 32-bit):
// at 32 bytes the FIFO line cost about 10 % more per frame (BenchmarkLine).
type entry struct {
	due      int64  // monotonic ns since the emulator's epoch
	key      uint64 // destination prefix (destKey), 0 if queued without
	off, len int32  // bytes in buf: [off, off+len)
}

// pending is a queued frame by due time and arrival.
type pending struct {
	due int64
	seq uint64
}

// newLine makes a line for frames and bytes. Its per-prefix table and heap
// (4 MiB at the default 65536 frames) are made now, though a line without
// keys never uses them, so that the loop's thread does not allocate
// megabytes, and perhaps start a garbage collection, while frames wait.
func newLine(frames, bytes int) line {
	return line{
		ents:   make([]entry, frames),
		holes:  make([]uint64, (frames+63)/64),
		buf:    make([]byte, bytes),
		keys:   newKeyTable(frames),
		sorted: make(schedule, 0, frames),
		picked: make([]pending, 0, batch),
	}
}

// push queues a copy of f, due at due or, if later, when the frames it must
// not overtake are: all those ahead of it if key is 0, else those with the
// same key or none. It returns false, queueing nothing, when the line has no
// room.
func (l *line) push(due int64, key uint64, f []byte) bool {
	if l.n == len(l.ents) || len(f) == 0 {
		return false
	}
	off, ok := l.place(len(f))
	if !ok {
		return false
	}
	seq := l.headSeq + uint64(l.n)
	if key == 0 {
		due = max(due, l.maxDue)
		l.fifoDue = due
	} else {
		due = max(due, l.fifoDue, l.keys.due(key))
		l.keys.set(key, due, seq)
	}
	if due < l.maxDue && !l.mixed {
		l.mix()
	}
	l.maxDue = max(l.maxDue, due)
	copy(l.buf[off:], f)
	l.ents[(l.head+l.n)%len(l.ents)] = entry{due: due, key: key, off: int32(off), len: int32(len(f))}
	l.n++
	if l.mixed {
		l.sorted.push(pending{due, seq})
	}
	return true
}

// mix turns the heap on. The frames queued so far are in due order, which
// makes them a heap as they stand.
func (l *line) mix() {
	l.sorted = l.sorted[:0]
	for k := range l.n {
		l.sorted = append(l.sorted, pending{l.ents[(l.head+k)%len(l.ents)].due, l.headSeq + uint64(k)})
	}
	l.mixed = true
}

// place finds room for size bytes after the newest frame, or at the start of
// buf once the frames there have left.
func (l *line) place(size int) (int, bool) {
	if l.n == 0 {
		return 0, size <= len(l.buf)
	}
	h := l.ents[l.head]
	t := l.ents[(l.head+l.n-1)%len(l.ents)]
	end, hoff := int(t.off+t.len), int(h.off)
	if t.off < h.off { // wrapped: free bytes are [end, h.off)
		return end, hoff-end >= size
	}
	// In use: [h.off, end); free: [end, len) and [0, h.off).
	if len(l.buf)-end >= size {
		return end, true
	}
	return 0, hoff >= size
}

// at returns the due time and bytes of the k-th entry (0 is the head).
func (l *line) at(k int) (int64, []byte) {
	e := l.ents[(l.head+k)%len(l.ents)]
	return e.due, l.buf[e.off : e.off+e.len]
}

// slot returns the index in ents of frame seq.
func (l *line) slot(seq uint64) int {
	return l.wrap(l.head + int(seq-l.headSeq))
}

// wrap returns ring index i, less than 2*len(ents), within ents. It spares
// the per-frame paths a division.
func (l *line) wrap(i int) int {
	if i >= len(l.ents) {
		i -= len(l.ents)
	}
	return i
}

// next returns the earliest due time of a queued frame.
func (l *line) next() (int64, bool) {
	if l.mixed {
		if len(l.sorted) == 0 {
			return 0, false
		}
		return l.sorted[0].due, true
	}
	if l.n == 0 {
		return 0, false
	}
	return l.ents[l.head].due, true
}

// ready appends to txb the frames due by now, earliest first, at most batch
// of them, and lists them in l.picked. They stay queued until settle.
func (l *line) ready(now int64, txb [][]byte) [][]byte {
	l.picked = l.picked[:0]
	if !l.mixed {
		for k, i := 0, l.head; k < l.n && k < batch; k, i = k+1, l.wrap(i+1) {
			e := &l.ents[i]
			if e.due > now {
				break
			}
			l.picked = append(l.picked, pending{e.due, l.headSeq + uint64(k)})
			txb = append(txb, l.buf[e.off:e.off+e.len])
		}
		return txb
	}
	for len(l.picked) < batch && len(l.sorted) > 0 && l.sorted[0].due <= now {
		p := l.sorted.pop()
		l.picked = append(l.picked, p)
		e := &l.ents[l.slot(p.seq)]
		txb = append(txb, l.buf[e.off:e.off+e.len])
	}
	return txb
}

// settle records that the first k frames of the last ready have left, or
// were dropped; the others stay queued.
func (l *line) settle(k int) {
	if !l.mixed {
		// The k frames at the head: no holes to mark and skip, and no keys
		// to release unless some are held.
		for j, i := 0, l.head; j < k && l.keys.n > 0; j, i = j+1, l.wrap(i+1) {
			if key := l.ents[i].key; key != 0 {
				l.keys.release(key, l.headSeq+uint64(j))
			}
		}
		l.head = l.wrap(l.head + k)
		l.n -= k
		l.headSeq += uint64(k)
		l.picked = l.picked[:0]
		return
	}
	for _, p := range l.picked[:k] {
		i := l.slot(p.seq)
		if key := l.ents[i].key; key != 0 {
			l.keys.release(key, p.seq)
		}
		l.holes[i/64] |= 1 << (i % 64)
	}
	for _, p := range l.picked[k:] {
		l.sorted.push(p)
	}
	l.picked = l.picked[:0]
	for l.n > 0 && l.holes[l.head/64]&(1<<(l.head%64)) != 0 {
		l.holes[l.head/64] &^= 1 << (l.head % 64)
		l.head = l.wrap(l.head + 1)
		l.n--
		l.headSeq++
	}
	if l.n == 0 {
		l.mixed = false
	}
}

// schedule is a binary min-heap of frames by due time, then arrival (which
// keeps frames of one prefix, clamped to equal due times, in order).
// container/heap would box every frame in an interface.
type schedule []pending

func (a pending) before(b pending) bool {
	return a.due < b.due || a.due == b.due && a.seq < b.seq
}

func (s *schedule) push(p pending) {
	h := append(*s, p)
	for i := len(h) - 1; i > 0; {
		up := (i - 1) / 2
		if !h[i].before(h[up]) {
			break
		}
		h[i], h[up] = h[up], h[i]
		i = up
	}
	*s = h
}

func (s *schedule) pop() pending {
	h := *s
	top := h[0]
	h[0] = h[len(h)-1]
	h = h[:len(h)-1]
	for i := 0; ; {
		c := 2*i + 1
		if c >= len(h) {
			break
		}
		if c+1 < len(h) && h[c+1].before(h[c]) {
			c++
		}
		if !h[c].before(h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	*s = h
	return top
}

// keyTable holds, per key, the due time and arrival number of the newest
// queued frame with that key: a fixed-size open-addressing hash table
// (linear probing, deletion by backward shift). A key stays only while its
// newest frame is queued, so the table, sized for twice the line's frames,
// is never more than half full. A Go map would do the same job, but under
// the steady insertions and deletions of a running line it may grow, and
// allocate, on the loop's thread.
type keyTable struct {
	slots []keySlot
	shift uint
	n     int // keys held
}

type keySlot struct {
	key uint64 // 0: empty
	due int64
	seq uint64
}

func newKeyTable(frames int) keyTable {
	b := bits.Len(uint(2*frames - 1))
	return keyTable{slots: make([]keySlot, 1<<b), shift: uint(64 - b)}
}

// home is the slot where key's probe starts (Fibonacci hashing: keys of
// neighbouring prefixes differ in their low bits only).
func (t *keyTable) home(key uint64) int {
	return int(key * 0x9e3779b97f4a7c15 >> t.shift)
}

// find returns key's slot, or the empty slot where it would go.
func (t *keyTable) find(key uint64) (int, bool) {
	mask := len(t.slots) - 1
	for i := t.home(key); ; i = (i + 1) & mask {
		switch t.slots[i].key {
		case key:
			return i, true
		case 0:
			return i, false
		}
	}
}

// due returns the due time of key's newest queued frame, or 0.
func (t *keyTable) due(key uint64) int64 {
	if i, ok := t.find(key); ok {
		return t.slots[i].due
	}
	return 0
}

func (t *keyTable) set(key uint64, due int64, seq uint64) {
	i, ok := t.find(key)
	if !ok {
		t.n++
	}
	t.slots[i] = keySlot{key: key, due: due, seq: seq}
}

// release forgets key if seq is its newest frame: none is queued any more.
func (t *keyTable) release(key, seq uint64) {
	i, ok := t.find(key)
	if !ok || t.slots[i].seq != seq {
		return
	}
	// Move back each later slot of the run whose probe starts at or before
	// the hole, so that no probe stops short at it.
	mask := len(t.slots) - 1
	for j := (i + 1) & mask; t.slots[j].key != 0; j = (j + 1) & mask {
		if h := t.home(t.slots[j].key); (i-h)&mask < (j-h)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = keySlot{}
	t.n--
}
