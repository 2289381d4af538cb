package configs

import (
	"testing"

	"github.com/BurntSushi/toml"
)

func TestScanPositions(t *testing.T) {
	const src = `# comment [not.a.table]
top = "x" # trailing
a.b = 'lit'
multi = """
[not.a.table]
x = "y" """
ml = '''
'''
date = 1979-05-27 07:32:00Z

[[backbone]]
name = "a\"b"   # escaped quote
static = [
  "192.0.2.0/24", # one
  # a comment line
  "198.51.100.0/24",
]

  [[backbone.route_file]]
  path = "x"

  [[backbone.route_file]]
	path = "y"

[[backbone]]
"quoted.key" = 1
rf = [ { path = "z" }, {path="w"} ]
inline = { a = { b = [1, 2] }, c = 3 }

  [[backbone.route_file]]
  path = "v"

  [backbone.sub]
  k = true

[ probes ]
interval = "1s"
`
	// The scanner is only ever given documents toml accepts.
	var doc map[string]any
	if _, err := toml.Decode(src, &doc); err != nil {
		t.Fatal(err)
	}
	at := scanPositions(src)
	tests := []struct {
		path string
		want pos
	}{
		{"top", pos{2, 1}},
		{"a", pos{3, 1}},
		{"a.b", pos{3, 1}},
		{"multi", pos{4, 1}},
		{"ml", pos{7, 1}},
		{"date", pos{9, 1}},
		{"backbone", pos{11, 1}},
		{"backbone[0]", pos{11, 1}},
		{"backbone[0].name", pos{12, 1}},
		{"backbone[0].static", pos{13, 1}},
		{"backbone[0].static[0]", pos{14, 3}},
		{"backbone[0].static[1]", pos{16, 3}},
		{"backbone[0].route_file[0]", pos{19, 3}},
		{"backbone[0].route_file[0].path", pos{20, 3}},
		{"backbone[0].route_file[1].path", pos{23, 2}},
		{"backbone[1]", pos{25, 1}},
		{`backbone[1]."quoted.key"`, pos{26, 1}},
		{"backbone[1].rf[0].path", pos{27, 10}},
		{"backbone[1].rf[1].path", pos{27, 25}},
		{"backbone[1].inline.a.b[1]", pos{28, 26}},
		{"backbone[1].inline.c", pos{28, 32}},
		{"backbone[1].route_file[0].path", pos{31, 3}},
		{"backbone[1].sub.k", pos{34, 3}},
		{"probes", pos{36, 1}},
		{"probes.interval", pos{37, 1}},
	}
	for _, tt := range tests {
		if got, ok := at[tt.path]; !ok || got != tt.want {
			t.Errorf("%s: got %v (found %v), want %v", tt.path, got, ok, tt.want)
		}
	}
	for _, path := range []string{"not", "x", "backbone[0].route_file[2]", "backbone[2]"} {
		if p, ok := at[path]; ok {
			t.Errorf("%s recorded at %v", path, p)
		}
	}
}

func TestScanPositionsBOM(t *testing.T) {
	at := scanPositions("\xef\xbb\xbfa = 1\n  b = 2")
	if at["a"] != (pos{1, 1}) || at["b"] != (pos{2, 3}) {
		t.Errorf("got %v", at)
	}
}

// FuzzScanPositions checks that the scanner ends, without panicking, on
// anything: it is meant for documents toml accepted, but must not hang
// the daemon on a document toml's next version accepts and it does not.
func FuzzScanPositions(f *testing.F) {
	addDocuments(f)
	f.Add("[[a]")
	f.Add("[")
	f.Add("a = \"\"\"x")
	f.Fuzz(func(t *testing.T, src string) {
		scanPositions(src)
	})
}

func TestLine(t *testing.T) {
	src := backbone + "cost = 3\n\n[probes]\ninterval = \"5s\"\ntcp_ports = [\n  443,\n  8443,\n]\n"
	c, err := Parse([]byte(src), "x.toml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key     string
		line    int
		written bool
	}{
		{"backbone[0].cost", 6, true},
		{"backbone[0].capacity_mbps", 2, false}, // the [[backbone]] header
		{"probes.interval", 9, true},
		{"probes.tcp_ports[1]", 12, true},
		{"probes.timeout", 8, false},
		{"optimizer.hold_down", 0, false},
	}
	for _, tt := range tests {
		if line, written := c.Line(tt.key); line != tt.line || written != tt.written {
			t.Errorf("Line(%q) = %d, %v; want %d, %v", tt.key, line, written, tt.line, tt.written)
		}
	}
}
