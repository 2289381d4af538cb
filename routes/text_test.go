package routes

import (
	"bytes"
	"compress/gzip"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/internal/shareddata"
)

func TestReadPrefixes(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"empty", "", nil},
		{"one", "10.0.0.0/8\n", []string{"10.0.0.0/8"}},
		{"no final newline", "10.0.0.0/8\n2001:db8::/32", []string{"10.0.0.0/8", "2001:db8::/32"}},
		{"blank and comments", "\n# header\n   \n\t# indented comment\n192.0.2.0/24\n", []string{"192.0.2.0/24"}},
		{"trailing comment", "192.0.2.0/24 # test net\n198.51.100.0/24#tight\n", []string{"192.0.2.0/24", "198.51.100.0/24"}},
		{"origin column", "1.0.0.0/24\t13335\n1.0.4.0/22\t38803_56203\n1.0.16.0/24\t2519,7500\n", []string{"1.0.0.0/24", "1.0.4.0/22", "1.0.16.0/24"}},
		{"space separated", "1.0.0.0/24 13335 extra columns\n", []string{"1.0.0.0/24"}},
		{"CRLF", "1.0.0.0/24\r\n2001:db8::/32\t64500\r\n", []string{"1.0.0.0/24", "2001:db8::/32"}},
		{"leading blanks", "  \t1.0.0.0/24\n", []string{"1.0.0.0/24"}},
		{"host routes and default", "0.0.0.0/0\n192.0.2.1/32\n::/0\n2001:db8::1/128\n", []string{"0.0.0.0/0", "192.0.2.1/32", "::/0", "2001:db8::1/128"}},
		{"sorted duplicate", "1.0.0.0/24\n1.0.0.0/24\t13335\n1.0.1.0/24\n", []string{"1.0.0.0/24", "1.0.1.0/24"}},
		{"unsorted duplicate keeps first", "9.0.0.0/8\n1.0.0.0/24\n2.0.0.0/8\n9.0.0.0/8\n1.0.0.0/24\n3.0.0.0/8\n", []string{"9.0.0.0/8", "1.0.0.0/24", "2.0.0.0/8", "3.0.0.0/8"}},
		{"same address other length", "10.0.0.0/8\n10.0.0.0/16\n10.0.0.0/8\n", []string{"10.0.0.0/8", "10.0.0.0/16"}},
		{"mapped range neighbours are fine", "::fffe:0:0/95\n::fffe:0:0/96\n", []string{"::fffe:0:0/95", "::fffe:0:0/96"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPrefixes(strings.NewReader(tt.in), "test")
			if err != nil {
				t.Fatal(err)
			}
			var gotS []string
			for _, r := range got {
				if r.PathLen != -1 || r.NextHop.IsValid() {
					t.Errorf("%v: text routes have no path or next hop", r)
				}
				gotS = append(gotS, r.Prefix.String())
			}
			if !slices.Equal(gotS, tt.want) {
				t.Errorf("got %q, want %q", gotS, tt.want)
			}
		})
	}
}

func TestReadPrefixesErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not a prefix", "1.0.0.0/24\nfoo\n", `test:2: bad prefix "foo": no '/'`},
		{"address only", "# c\n\n10.0.0.1\n", `test:3: bad prefix "10.0.0.1": no '/'`},
		{"bad length", "10.0.0.0/33\n", `test:1: bad prefix "10.0.0.0/33": prefix length out of range`},
		{"origin first", "13335\t1.0.0.0/24\n", `test:1: bad prefix "13335": no '/'`},
		{"host bits", "1.0.0.0/24\n10.0.0.1/8\n", "test:2: prefix 10.0.0.1/8 has host bits set; write 10.0.0.0/8"},
		{"host bits v6", "2001:db8::1/32\n", "test:1: prefix 2001:db8::1/32 has host bits set; write 2001:db8::/32"},
		{"mapped", "::ffff:10.0.0.0/104\n", "test:1: IPv4-mapped IPv6 prefix ::ffff:10.0.0.0/104; write it as an IPv4 prefix (10.0.0.0/8)"},
		{"mapped range itself", "\n::ffff:0.0.0.0/96\n", "test:2: IPv4-mapped IPv6 prefix ::ffff:0.0.0.0/96; write it as an IPv4 prefix (0.0.0.0/0)"},
		{"zone", "fe80::%eth0/64\n", `test:1: bad prefix "fe80::%eth0/64"`},
		{"long line", "1.0.0.0/24\n" + strings.Repeat("x", 70000) + "\n", "test:2: line longer than 65536 bytes"},
		{"long field clipped", strings.Repeat("1", 100) + "\n", `test:1: bad prefix "` + strings.Repeat("1", 64) + `..."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadPrefixes(strings.NewReader(tt.in), "test")
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %q, want prefix %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestReadPrefixFileGzipByMagic(t *testing.T) {
	const text = "# test\n1.0.0.0/24\t13335\n2001:db8::/32\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(text))
	zw.Close()
	dir := t.TempDir()
	// The names lie on purpose: detection goes by content.
	files := map[string][]byte{
		"plain.txt.gz":  []byte(text),
		"zipped.txt":    gz.Bytes(),
		"zipped.txt.gz": gz.Bytes(),
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rs, err := ReadPrefixFile(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := []netip.Prefix{netip.MustParsePrefix("1.0.0.0/24"), netip.MustParsePrefix("2001:db8::/32")}
		if len(rs) != 2 || rs[0].Prefix != want[0] || rs[1].Prefix != want[1] {
			t.Errorf("%s: got %v", name, rs)
		}
	}

	// A corrupt gzip stream is an error, not a short table.
	bad := slices.Clone(gz.Bytes())
	bad[len(bad)-8] ^= 0xff // CRC
	p := filepath.Join(dir, "bad.gz")
	os.WriteFile(p, bad, 0o644)
	if _, err := ReadPrefixFile(p); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("corrupt gzip: err = %v", err)
	}
	// Empty file: no routes, no error.
	p = filepath.Join(dir, "empty")
	os.WriteFile(p, nil, 0o644)
	if rs, err := ReadPrefixFile(p); err != nil || len(rs) != 0 {
		t.Errorf("empty file: %v, %v", rs, err)
	}
	if _, err := ReadPrefixFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}

func TestReadPrefixFileSharedData(t *testing.T) {
	tests := []struct {
		file string
		n    int
		v4   bool
	}{
		{shareddata.IPv4Full, 901_899, true},
		{shareddata.IPv6Full, 160_147, false},
		{shareddata.IPv4Origin, 998_042, true},
		{shareddata.IPv6Origin, 83_125, false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p := shareddata.File(t, tt.file)
			start := time.Now()
			rs, err := ReadPrefixFile(p)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("read in %v", time.Since(start))
			if len(rs) != tt.n {
				t.Errorf("%d routes, want %d", len(rs), tt.n)
			}
			for _, r := range rs {
				if r.Prefix.Addr().Is4() != tt.v4 || r.Prefix != r.Prefix.Masked() {
					t.Fatalf("route %v: wrong family or not canonical", r)
				}
			}
		})
	}
}

var lineError = regexp.MustCompile(`^fuzz:[0-9]+: `)

func FuzzReadPrefixes(f *testing.F) {
	for _, s := range []string{
		"1.0.0.0/24\n",
		"1.0.0.0/24\t13335\n1.0.4.0/22\t38803_56203\n# c\n\n2001:db8::/32 # x\r\n",
		"::ffff:10.0.0.0/104\n",
		"10.0.0.1/8\n",
		"9.0.0.0/8\n1.0.0.0/24\n9.0.0.0/8\n",
		"fe80::%eth0/64",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := ReadPrefixes(bytes.NewReader(data), "fuzz")
		if err != nil {
			if !lineError.MatchString(err.Error()) {
				t.Fatalf("error without line number: %q", err)
			}
			return
		}
		seen := make(map[netip.Prefix]bool)
		for _, r := range rs {
			p := r.Prefix
			if !p.IsValid() || p != p.Masked() || (p.Addr().Is4In6() && p.Bits() >= 96) || p.Addr().Zone() != "" {
				t.Fatalf("bad prefix accepted: %v", p)
			}
			if seen[p] {
				t.Fatalf("duplicate %v", p)
			}
			seen[p] = true
		}
	})
}
