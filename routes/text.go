package routes

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// maxLine bounds a text line. Real lines are under 64 bytes; the bound only
// keeps a binary file fed in by mistake from growing the buffer unboundedly.
const maxLine = 64 << 10

// mappedV4 is ::ffff:0:0/96, the IPv4-mapped IPv6 range.
var mappedV4 = netip.MustParsePrefix("::ffff:0:0/96")

// ReadPrefixes parses a text prefix file: one prefix first on each line,
// optionally followed by TAB- or space-separated columns (such as an origin
// AS, plain, MOAS "A_B" or AS-set "A,B") which are ignored, because an origin
// is not a path length. Blank lines and lines starting with '#' are skipped,
// and a "# comment" may follow the prefix. A prefix that appears again later
// in the file is dropped: the first one wins. Every Route has PathLen -1.
// name is used in errors, which have the form "name:LINE: ...".
func ReadPrefixes(r io.Reader, name string) ([]Route, error) {
	return readPrefixes(r, name, 0)
}

// ReadPrefixFile reads a text prefix file with ReadPrefixes, gunzipping it
// when it starts with the gzip magic, whatever its name.
func ReadPrefixFile(path string) ([]Route, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, gz, err := maybeGunzip(f, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return readPrefixes(r, path, sizeHint(f, gz))
}

// bytesPerLine is a little under the shortest average line length of the
// shared tables (16.7 bytes v4 prefix-only, 19.3 v6, 21.7 v4 with origin),
// so the estimate errs on the large side and the slice is allocated once.
const bytesPerLine = 16

// maxHint caps the preallocation at about four full Internet tables
// (4M routes, 256 MB); a larger file still loads, by appending.
const maxHint = 1 << 22

// sizeHint guesses the number of lines in f so the result slice is allocated
// once. For gzip it uses the ISIZE trailer (uncompressed size mod 2^32 of the
// last member), capped at one line per compressed byte — real tables compress
// to about 2.7 bytes a line — so a crafted trailer cannot force a huge
// allocation.
func sizeHint(f *os.File, gz bool) int {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return 0
	}
	size := st.Size()
	if !gz {
		return int(min(size/bytesPerLine, maxHint))
	}
	var trailer [4]byte
	if size < 18 {
		return 0
	}
	if _, err := f.ReadAt(trailer[:], size-4); err != nil {
		return 0
	}
	return int(min(int64(binary.LittleEndian.Uint32(trailer[:]))/bytesPerLine, size, maxHint))
}

func readPrefixes(r io.Reader, name string, hint int) ([]Route, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < maxLine {
		br = bufio.NewReaderSize(r, maxLine)
	}
	routes := make([]Route, 0, hint)
	var d dedup
	for lineno := 1; ; lineno++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%s:%d: line longer than %d bytes", name, lineno, maxLine)
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("%s:%d: %w", name, lineno, err)
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		field := firstField(line)
		if len(field) > 0 {
			p, perr := parsePrefix(field)
			if perr != nil {
				return nil, fmt.Errorf("%s:%d: %w", name, lineno, perr)
			}
			if d.firstTime(p, routes) {
				routes = append(routes, Route{Prefix: p, PathLen: -1})
			}
		}
		if err == io.EOF {
			break
		}
	}
	return routes, nil
}

// dedup tells whether a prefix is new. Tables are usually sorted, and a
// strictly increasing sequence has no duplicates, so the set of seen
// prefixes is only built (from the routes kept so far) once the order
// breaks. That saves a 900k-entry map on the common path.
type dedup struct {
	last netip.Prefix
	seen map[netip.Prefix]struct{}
}

// firstTime reports whether p is not among rs, the distinct routes kept so
// far, and records it.
func (d *dedup) firstTime(p netip.Prefix, rs []Route) bool {
	if d.seen == nil {
		if len(rs) == 0 || comparePrefix(d.last, p) < 0 {
			d.last = p
			return true
		}
		d.seen = make(map[netip.Prefix]struct{}, max(cap(rs), 2*len(rs)))
		for _, r := range rs {
			d.seen[r.Prefix] = struct{}{}
		}
	}
	if _, dup := d.seen[p]; dup {
		return false
	}
	d.seen[p] = struct{}{}
	return true
}

// firstField returns the prefix field of a line: leading blanks skipped, cut
// at the first blank or '#'. It is empty for blank and comment lines.
func firstField(line []byte) []byte {
	i := 0
	for i < len(line) && isBlank(line[i]) {
		i++
	}
	j := i
	for j < len(line) && !isBlank(line[j]) && line[j] != '#' {
		j++
	}
	return line[i:j]
}

func isBlank(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

// parsePrefix parses and validates one prefix field. Errors say what to
// write instead, since they end up in front of whoever edits the file.
func parsePrefix(field []byte) (netip.Prefix, error) {
	s := string(field)
	p, err := netip.ParsePrefix(s)
	if err != nil {
		// netip's message repeats the input as `netip.ParsePrefix("x"): why`;
		// keep only the why. The field holds no blanks, so "): " cannot
		// occur inside the quoted input.
		reason := err.Error()
		if _, after, ok := strings.Cut(reason, "): "); ok && strings.HasPrefix(reason, "netip.ParsePrefix(") {
			reason = after
		}
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: %s", clip(s), reason)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("prefix %s has host bits set; write %s", p, m)
	}
	if p.Addr().Is6() && p.Bits() >= mappedV4.Bits() && mappedV4.Contains(p.Addr()) {
		v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-mappedV4.Bits())
		return netip.Prefix{}, fmt.Errorf("IPv4-mapped IPv6 prefix %s; write it as an IPv4 prefix (%s)", p, v4)
	}
	return p, nil
}

// clip shortens s for an error message that must stay one readable line.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// comparePrefix orders by address, then length: the order sorted tables
// are written in. (netip.Prefix.Compare puts length before address.)
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
