//go:build linux

package emu

// line is one direction's delay line: the frames waiting to leave, in
// arrival order, each with its due time, stored back to back in a byte ring.
// Frames leave from the head only, so a frame never overtakes the one ahead
// of it. Both rings are fixed at creation: memory is bounded and a full line
// refuses frames instead of growing.
type line struct {
	ents []entry // ring of queued frames, oldest at head
	head int
	n    int
	buf  []byte // ring of frame bytes
	// lastDue is the due time of the newest frame; a frame is never due
	// before it, which is what keeps the order.
	lastDue int64
}

type entry struct {
	due      int64 // monotonic ns since the emulator's epoch
	off, len int   // bytes in buf
}

func newLine(frames, bytes int) line {
	return line{ents: make([]entry, frames), buf: make([]byte, bytes)}
}

// push queues a copy of f, due at due or when the frame ahead of it is,
// whichever is later. It returns false, queueing nothing, when the line has
// no room.
func (l *line) push(due int64, f []byte) bool {
	if l.n == len(l.ents) || len(f) == 0 {
		return false
	}
	off, ok := l.place(len(f))
	if !ok {
		return false
	}
	due = max(due, l.lastDue)
	l.lastDue = due
	copy(l.buf[off:], f)
	l.ents[(l.head+l.n)%len(l.ents)] = entry{due: due, off: off, len: len(f)}
	l.n++
	return true
}

// place finds room for size bytes after the newest frame, or at the start of
// buf once the frames there have left.
func (l *line) place(size int) (int, bool) {
	if l.n == 0 {
		return 0, size <= len(l.buf)
	}
	h := l.ents[l.head]
	t := l.ents[(l.head+l.n-1)%len(l.ents)]
	end := t.off + t.len
	if t.off < h.off { // wrapped: free bytes are [end, h.off)
		return end, h.off-end >= size
	}
	// In use: [h.off, end); free: [end, len) and [0, h.off).
	if len(l.buf)-end >= size {
		return end, true
	}
	return 0, h.off >= size
}

// at returns the due time and bytes of the k-th queued frame (0 is the head).
func (l *line) at(k int) (int64, []byte) {
	e := l.ents[(l.head+k)%len(l.ents)]
	return e.due, l.buf[e.off : e.off+e.len]
}

// pop drops the k oldest frames.
func (l *line) pop(k int) {
	l.head = (l.head + k) % len(l.ents)
	l.n -= k
}
