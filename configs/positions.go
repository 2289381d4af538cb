package configs

import (
	"strconv"
	"strings"
)

// pos is where something was written: a 1-based line and byte column, like
// toml.Position. The zero pos means "not written in the file".
type pos struct{ line, col int }

// positions maps the path of every key, table and array element written in
// the file to where it starts. Paths are built with child and elem, so the
// decoder can look up the value it is holding: "backbone[1].static[0]".
//
// The toml package keeps key positions private, and keeps one per dotted
// name, so the elements of [[backbone]] would overwrite each other. Instead
// this scanner re-reads the text, which toml has already accepted: it
// tracks table headers and array-of-tables counts, records keys, and skips
// over values, descending into arrays and inline tables.
type positions map[string]pos

// where returns the position of path or, for a value that is not written
// (a default), of the nearest enclosing table that is.
func (at positions) where(path string) pos {
	for {
		if p, ok := at[path]; ok || path == "" {
			return p
		}
		path = parent(path)
	}
}

// child is the path of key inside the table at path. Keys that would make
// the path ambiguous are quoted.
func child(path, key string) string {
	if key == "" || strings.ContainsAny(key, `.[]"`) {
		key = strconv.Quote(key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// elem is the path of element i of the array at path.
func elem(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parent is the path of the table or array holding path, "" at the top.
func parent(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// scanPositions finds the positions in src, a document toml accepted.
func scanPositions(src string) positions {
	// toml skips a UTF-8 BOM before counting columns; so do we.
	src = strings.TrimPrefix(src, "\xef\xbb\xbf")
	s := &scanner{src: src, line: 1, at: positions{}, arrays: map[string]int{}}
	table := ""
	for {
		s.skipSpace(true)
		if s.eof() {
			return s.at
		}
		switch p := s.here(); {
		case strings.HasPrefix(s.src[s.i:], "[["):
			s.i += 2
			table = s.arrayTable(s.key(), p)
			s.skipSpace(false)
			s.i = min(s.i+len("]]"), len(s.src))
		case s.src[s.i] == '[':
			s.i++
			table = s.table(s.key(), p)
			s.skipSpace(false)
			s.i = min(s.i+len("]"), len(s.src))
		default:
			s.keyValue(table)
		}
	}
}

type scanner struct {
	src       string
	i         int // next byte
	line      int // line of src[i]
	lineStart int // offset of the first byte of line
	at        positions
	arrays    map[string]int // array-of-tables path → elements seen so far
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

func (s *scanner) here() pos { return pos{s.line, s.i - s.lineStart + 1} }

// mark records where path starts, unless it was recorded already: an
// implicit table is placed where it is first mentioned.
func (s *scanner) mark(path string, p pos) {
	if _, ok := s.at[path]; !ok {
		s.at[path] = p
	}
}

// next consumes one byte, keeping count of lines.
func (s *scanner) next() {
	if s.src[s.i] == '\n' {
		s.line++
		s.lineStart = s.i + 1
	}
	s.i++
}

// skipSpace skips blanks and, when newlines is set, line ends and comments
// too; without it a comment still ends the line's content.
func (s *scanner) skipSpace(newlines bool) {
	for !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t':
			s.i++
		case '\r', '\n':
			if !newlines {
				return
			}
			s.next()
		case '#':
			if !newlines {
				return
			}
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// key reads a possibly dotted key and returns its parts.
func (s *scanner) key() []string {
	var parts []string
	for {
		s.skipSpace(false)
		parts = append(parts, s.keyPart())
		s.skipSpace(false)
		if s.eof() || s.src[s.i] != '.' {
			return parts
		}
		s.i++
	}
}

func (s *scanner) keyPart() string {
	if s.eof() {
		return ""
	}
	switch s.src[s.i] {
	case '"', '\'':
		start := s.i
		s.skipString()
		raw := s.src[start:s.i]
		if k, err := strconv.Unquote(raw); err == nil && raw[0] == '"' {
			return k
		}
		// A literal string, or an escape Go lacks (like \e): close enough.
		return strings.TrimSuffix(raw[1:], raw[:1])
	}
	start := s.i
	for !s.eof() && isBare(s.src[s.i]) {
		s.i++
	}
	if s.i == start { // not a key at all; never stall
		s.next()
	}
	return s.src[start:s.i]
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// resolve turns header parts into a path, stepping into the latest element
// of each array of tables on the way, as TOML does.
func (s *scanner) resolve(parts []string, p pos) string {
	path := ""
	for _, k := range parts {
		path = child(path, k)
		s.mark(path, p)
		if n, ok := s.arrays[path]; ok {
			path = elem(path, n-1)
		}
	}
	return path
}

// table handles a [table] header and returns the table's path.
func (s *scanner) table(parts []string, p pos) string {
	path := child(s.resolve(parts[:len(parts)-1], p), parts[len(parts)-1])
	s.mark(path, p)
	return path
}

// arrayTable handles an [[array]] header and returns the new element's path.
func (s *scanner) arrayTable(parts []string, p pos) string {
	array := child(s.resolve(parts[:len(parts)-1], p), parts[len(parts)-1])
	n := s.arrays[array]
	s.arrays[array] = n + 1
	s.mark(array, p)
	path := elem(array, n)
	s.mark(path, p)
	return path
}

// keyValue reads "key = value" inside table.
func (s *scanner) keyValue(table string) {
	p := s.here()
	path := table
	for _, k := range s.key() {
		path = child(path, k)
		s.mark(path, p)
	}
	s.skipSpace(false)
	if !s.eof() && s.src[s.i] == '=' {
		s.i++
	}
	s.skipSpace(false)
	s.value(path)
}

// value skips one value, recording the positions of what is inside it.
func (s *scanner) value(path string) {
	if s.eof() {
		return
	}
	switch s.src[s.i] {
	case '"', '\'':
		s.skipString()
	case '[':
		n := 0
		s.items(']', func() {
			e := elem(path, n)
			s.mark(e, s.here())
			s.value(e)
			n++
		})
	case '{':
		s.items('}', func() { s.keyValue(path) })
	default:
		s.skipScalar()
	}
}

// items skips the comma-separated items of an array or inline table, from
// its opening bracket to end, calling item at the start of each.
func (s *scanner) items(end byte, item func()) {
	s.i++
	for {
		s.skipSpace(true)
		if s.eof() {
			return
		}
		switch s.src[s.i] {
		case end:
			s.i++
			return
		case ',':
			s.i++
		default:
			item()
		}
	}
}

// skipScalar skips a number, boolean or date-time.
func (s *scanner) skipScalar() {
	start := s.i
	for !s.eof() && !strings.ContainsRune(" \t\r\n,]}#", rune(s.src[s.i])) {
		s.i++
	}
	// A date and a time may be separated by a space: 1979-05-27 07:32:00.
	if s.i-start == len("1979-05-27") && s.src[start+4] == '-' &&
		s.i+1 < len(s.src) && s.src[s.i] == ' ' && '0' <= s.src[s.i+1] && s.src[s.i+1] <= '9' {
		s.i++
		s.skipScalar()
	}
	if s.i == start { // not a value at all; never stall
		s.next()
	}
}

// skipString skips a basic, literal or multi-line string.
func (s *scanner) skipString() {
	q := s.src[s.i]
	if strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3)) {
		s.i += 3
		for !s.eof() {
			switch c := s.src[s.i]; {
			case c == '\\' && q == '"':
				s.next()
				if !s.eof() {
					s.next()
				}
			case c == q && strings.HasPrefix(s.src[s.i:], strings.Repeat(string(q), 3)):
				s.i += 3
				// Up to two more quotes belong to the content, before the
				// closing three: """a""""" is `a""`.
				for k := 0; k < 2 && !s.eof() && s.src[s.i] == q; k++ {
					s.i++
				}
				return
			default:
				s.next()
			}
		}
		return
	}
	s.i++
	for !s.eof() && s.src[s.i] != '\n' {
		c := s.src[s.i]
		s.i++
		if c == '\\' && q == '"' && !s.eof() {
			s.i++
		} else if c == q {
			return
		}
	}
}
