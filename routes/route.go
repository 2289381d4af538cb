package routes

import (
	"bufio"
	"compress/gzip"
	"fmt"
	"io"
	"iter"
	"net/netip"
)

// Route is one route as a source gives it.
type Route struct {
	// Prefix is canonical (masked). IPv4 prefixes are true IPv4, never
	// IPv4-mapped IPv6: the FIB keeps the families apart.
	Prefix netip.Prefix
	// PathLen is the AS_PATH length as BGP best-path selection counts it
	// (RFC 4271 9.1.2.2: an AS_SET counts 1; RFC 5065: confederation
	// segments count 0), or -1 when the source gives no path.
	PathLen int
	// NextHop is the source's next hop when it has one (MRT), else the zero
	// Addr.
	NextHop netip.Addr
}

// PathLens yields each route's prefix and PathLen, in order: the shape in
// which fib.FIB.Replace takes a table, so that fib need not import this
// package (and GoBGP with it).
func PathLens(rs []Route) iter.Seq2[netip.Prefix, int] {
	return func(yield func(netip.Prefix, int) bool) {
		for _, r := range rs {
			if !yield(r.Prefix, r.PathLen) {
				return
			}
		}
	}
}

// gzipMagic starts every gzip member (RFC 1952 2.3.1).
var gzipMagic = [2]byte{0x1f, 0x8b}

// maybeGunzip returns a reader of r's content, gunzipped when r starts with
// the gzip magic. Detection is by content because files get renamed and
// operators pipe data in.
func maybeGunzip(r io.Reader, size int) (io.Reader, bool, error) {
	br := bufio.NewReaderSize(r, size)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		return nil, false, err
	}
	if len(magic) < 2 || magic[0] != gzipMagic[0] || magic[1] != gzipMagic[1] {
		return br, false, nil
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, true, fmt.Errorf("gzip: %w", err)
	}
	return zr, true, nil
}
