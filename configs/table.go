package configs

import (
	"cmp"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// decoder walks the document that toml parsed, converting and checking
// values and turning problems into *Error with the position of the value.
//
// Value errors are sticky: the first one is kept and later checks are
// skipped, so one mistake does not cascade into others. The walk itself
// goes on to the end, though, so that every table learns its known keys and
// unknown keys (usually typos, which explain any value error) are found
// everywhere; they are reported first.
type decoder struct {
	file   string // for messages
	dir    string // relative paths resolve against it
	at     positions
	err    *Error
	tables []*table // every table seen, to find unknown keys at the end
}

// result returns the error to report, if any: the first unknown key in the
// file, else the first value error.
func (d *decoder) result() error {
	var unknown []*Error
	for _, t := range d.tables {
		unknown = append(unknown, t.unknownKeys()...)
	}
	if len(unknown) > 0 {
		return slices.MinFunc(unknown, func(a, b *Error) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
	}
	if d.err != nil {
		return d.err
	}
	return nil
}

// ok reports whether no value error has been found, so checks that combine
// several values may run.
func (d *decoder) ok() bool { return d.err == nil }

// where returns the position of path or, for a value that is not written
// (a default), of the nearest enclosing table that is.
func (d *decoder) where(path string) pos { return d.at.where(path) }

// errAt records a value error at the line of path.
func (d *decoder) errAt(path, prefix, format string, args ...any) {
	if d.err != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if prefix != "" {
		msg = prefix + ": " + msg
	}
	d.err = &Error{File: d.file, Line: d.where(path).line, Msg: msg}
}

// table is one TOML table being decoded. Its accessors leave the
// destination (holding the default) alone when the key is absent.
type table struct {
	d     *decoder
	path  string // "" for the document itself
	name  string // how messages name it: `backbone "bb-a"`; "" for the document
	m     map[string]any
	known []string // keys asked for, in order
}

func (d *decoder) newTable(path, name string, m map[string]any) *table {
	t := &table{d: d, path: path, name: name, m: m}
	d.tables = append(d.tables, t)
	return t
}

// unknownKeys reports the keys of t that no accessor asked for.
func (t *table) unknownKeys() []*Error {
	var errs []*Error
	for k, v := range t.m {
		if slices.Contains(t.known, k) {
			continue
		}
		what := "key"
		switch v.(type) {
		case map[string]any, []map[string]any:
			what = "table"
		}
		msg := fmt.Sprintf("unknown %s %q", what, k)
		if s := suggest(k, t.known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		} else if o := t.d.owner(k, t); o != nil && strings.HasPrefix(t.path, o.path+".") {
			// The classic TOML slip: a key written after a sub-table's
			// header belongs to the sub-table.
			msg += fmt.Sprintf("; it is a %s key: move it above the %s header", header(o.path), header(t.path))
		} else if o != nil {
			msg += fmt.Sprintf("; it is a %s key: move it there", header(o.path))
		} else if t.path == "" {
			msg += "; the tables are " + strings.Join(t.known, ", ")
		} else {
			msg += "; remove it"
		}
		if t.name != "" {
			msg = t.name + ": " + msg
		}
		p := t.d.where(child(t.path, k))
		errs = append(errs, &Error{File: t.d.file, Line: p.line, Col: p.col, Msg: msg})
	}
	return errs
}

// owner returns a table other than t that knows key, preferring one that
// encloses t, or nil.
func (d *decoder) owner(key string, t *table) *table {
	var found *table
	for _, o := range d.tables {
		if o == t || !slices.Contains(o.known, key) {
			continue
		}
		if strings.HasPrefix(t.path, o.path+".") {
			return o
		}
		if found == nil {
			found = o
		}
	}
	return found
}

// header is how a table at path is written: "[[backbone.route_file]]" for
// "backbone[1].route_file[0]".
func header(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); i++ {
		if j := strings.IndexByte(path[i:], ']'); path[i] == '[' && j > 0 {
			i += j
			continue
		}
		b.WriteByte(path[i])
	}
	if strings.HasSuffix(path, "]") {
		return "[[" + b.String() + "]]"
	}
	return "[" + b.String() + "]"
}

// lookup returns the value of key, marking key as known.
func (t *table) lookup(key string) (any, bool) {
	t.known = append(t.known, key)
	v, ok := t.m[key]
	return v, ok
}

// value is lookup for scalars: once there is an error, it reports nothing,
// so no further checks run.
func (t *table) value(key string) (any, bool) {
	v, ok := t.lookup(key)
	return v, ok && t.d.ok()
}

// errf records a value error at key's line (the table's when key is unset).
func (t *table) errf(key, format string, args ...any) {
	t.d.errAt(child(t.path, key), t.name, format, args...)
}

// typeErr reports that key holds the wrong type of value.
func (t *table) typeErr(key, want string, v any) {
	hint := ""
	if s, ok := v.(string); ok && want != "a string" {
		if _, err := strconv.ParseFloat(s, 64); err == nil || s == "true" || s == "false" {
			hint = fmt.Sprintf("; write %s = %s without quotes", key, s)
		}
	}
	t.errf(key, "%s must be %s, not %s%s", key, want, describe(v), hint)
}

// describe names the TOML type of a decoded value.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any, []map[string]any:
		return "a table"
	}
	return "a date-time"
}

// table returns the table at key, empty when absent.
func (t *table) table(key, name string) *table {
	v, _ := t.lookup(key)
	m, ok := v.(map[string]any)
	if _, isArray := v.([]map[string]any); isArray {
		t.errf(key, "%s must be one table; write %s with single brackets", key, header(child(t.path, key)))
	} else if v != nil && !ok {
		t.typeErr(key, fmt.Sprintf("a table, [%s]", key), v)
	}
	return t.d.newTable(child(t.path, key), name, m)
}

// tables returns the array of tables at key. Each table is named by name
// and its 1-based index until the caller renames it.
func (t *table) tables(key, name string) []*table {
	v, _ := t.lookup(key)
	var ms []map[string]any
	switch v := v.(type) {
	case nil:
	case []map[string]any:
		ms = v
	case []any: // an array of inline tables
		for _, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				t.typeErr(key, "an array of tables", e)
				return nil
			}
			ms = append(ms, m)
		}
	case map[string]any:
		t.errf(key, "%s must be an array of tables; write [[%s]] with double brackets", key, child(t.path, key))
		return nil
	default:
		t.typeErr(key, "an array of tables", v)
		return nil
	}
	ts := make([]*table, len(ms))
	for i, m := range ms {
		ts[i] = t.d.newTable(elem(child(t.path, key), i), fmt.Sprintf("%s #%d", name, i+1), m)
	}
	return ts
}

// valueAs is value for one type of value: ok is false when key is absent
// or holds another type, which is an error saying it must be want.
func valueAs[T any](t *table, key, want string) (x T, ok bool) {
	v, ok := t.value(key)
	if !ok {
		return x, false
	}
	if x, ok = v.(T); !ok {
		t.typeErr(key, want, v)
	}
	return x, ok
}

// integer reads an integer in [lo, hi].
func (t *table) integer(key string, lo, hi int64) (int64, bool) {
	n, ok := valueAs[int64](t, key, "an integer")
	if !ok {
		return 0, false
	}
	if n < lo || n > hi {
		t.errf(key, "%s = %d is out of range; %s", key, n, between(lo, hi))
		return 0, false
	}
	return n, true
}

// int reads an integer in [lo, hi].
func (t *table) int(key string, dst *int, lo, hi int) {
	if n, ok := t.integer(key, int64(lo), int64(hi)); ok {
		*dst = int(n)
	}
}

// between says which values are allowed.
func between(lo, hi int64) string {
	if hi == math.MaxInt64 || hi == math.MaxInt {
		return fmt.Sprintf("use %d or more", lo)
	}
	return fmt.Sprintf("use %d to %d", lo, hi)
}

// float reads a number, integers included: cost = 5. Which numbers are
// allowed (NaN, inf, negative) is the owning component's rule.
func (t *table) float(key string, dst *float64) {
	v, ok := t.value(key)
	if !ok {
		return
	}
	var f float64
	switch v := v.(type) {
	case int64:
		f = float64(v)
	case float64:
		f = v
	default:
		t.typeErr(key, "a number", v)
		return
	}
	*dst = f
}

func (t *table) bool(key string, dst *bool) {
	if b, ok := valueAs[bool](t, key, "true or false"); ok {
		*dst = b
	}
}

// str returns the string at key; ok is false when it is absent or is not a
// string, which is an error.
func (t *table) str(key string) (s string, ok bool) {
	return valueAs[string](t, key, "a string")
}

func (t *table) string(key string, dst *string) {
	if s, ok := t.str(key); ok {
		*dst = s
	}
}

// oneOf reads a string that must be one of values.
func oneOf[T ~string](t *table, key string, dst *T, values ...T) {
	s, ok := t.str(key)
	if !ok {
		return
	}
	if !slices.Contains(values, T(s)) {
		quoted := make([]string, len(values))
		for i, v := range values {
			quoted[i] = strconv.Quote(string(v))
		}
		t.errf(key, "%s = %q is not allowed; use one of %s", key, s, strings.Join(quoted, ", "))
		return
	}
	*dst = T(s)
}

func (t *table) duration(key string, dst *Duration) {
	s, ok := valueAs[string](t, key, `a duration string like "10s"`)
	if !ok {
		return
	}
	if err := dst.UnmarshalText([]byte(s)); err != nil {
		t.errf(key, "%s %v", key, err)
	}
}

// family is the address family a key accepts.
type family int

const (
	anyFamily family = 0
	ipv4      family = 4
	ipv6      family = 6
)

// addr reads a unicast IP address of family f, without a zone.
func (t *table) addr(key string, dst *netip.Addr, f family) {
	s, ok := t.str(key)
	if !ok {
		return
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.errf(key, "%s %q is not an IP address (%s)", key, s, reason(err))
		return
	}
	if msg := checkFamily(key, a, f); msg != "" {
		t.errf(key, "%s %q %s", key, s, msg)
		return
	}
	if a.Zone() != "" {
		t.errf(key, "%s %q has a zone; write %q", key, s, a.WithZone("").String())
		return
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		t.errf(key, "%s %q is not a unicast address", key, s)
		return
	}
	*dst = a
}

// checkFamily explains why a does not belong in key, which takes family f,
// or returns "". An IPv4-mapped IPv6 address is refused everywhere: the
// data plane keeps the families apart, so it would never match.
func checkFamily(key string, a netip.Addr, f family) string {
	other := func(v string) string {
		base := strings.TrimSuffix(strings.TrimSuffix(key, "_v4"), "_v6")
		return base + "_" + v
	}
	switch {
	case a.Is4In6():
		if f == ipv6 {
			return fmt.Sprintf("is an IPv4-mapped IPv6 address; write %s = %q instead", other("v4"), a.Unmap().String())
		}
		return fmt.Sprintf("is an IPv4-mapped IPv6 address; write %q instead", a.Unmap().String())
	case f == ipv4 && a.Is6():
		return fmt.Sprintf("is an IPv6 address; move it to %s", other("v6"))
	case f == ipv6 && a.Is4():
		return fmt.Sprintf("is an IPv4 address; move it to %s", other("v4"))
	}
	return ""
}

// reason is the useful part of a netip parse error, which repeats the input.
func reason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 {
		msg = msg[i+3:]
	}
	return oneLine(msg)
}

// parsePrefix parses s and explains what is wrong with it, if anything.
// A route must be canonical; an interface address keeps its host bits.
func parsePrefix(key, s string, f family, canonical bool) (netip.Prefix, string) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Sprintf("%s %q is not a prefix like 192.0.2.0/24 or 2001:db8::/32 (%s)", key, s, reason(err))
	}
	if msg := checkFamily(key, p.Addr(), f); msg != "" {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			msg = fmt.Sprintf("is an IPv4-mapped IPv6 prefix; write %s", netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96))
		}
		return p, fmt.Sprintf("%s %q %s", key, s, msg)
	}
	if canonical && p != p.Masked() {
		return p, fmt.Sprintf("%s %q has host bits set; write %s", key, s, p.Masked())
	}
	return p, ""
}

// prefix reads one prefix of family f, as in address_v4.
func (t *table) prefix(key string, dst *netip.Prefix, f family, canonical bool) {
	s, ok := t.str(key)
	if !ok {
		return
	}
	p, msg := parsePrefix(key, s, f, canonical)
	if msg != "" {
		t.errf(key, "%s", msg)
		return
	}
	*dst = p
}

// list reads an array.
func (t *table) list(key string) ([]any, bool) {
	return valueAs[[]any](t, key, "an array")
}

// elemErr records a value error at element i of key.
func (t *table) elemErr(key string, i int, format string, args ...any) {
	t.d.errAt(elem(child(t.path, key), i), t.name, format, args...)
}

// intList reads an array of integers; ok is false when key is absent or
// wrong. Written empty, it is empty but not nil.
func (t *table) intList(key string) (_ []int, ok bool) {
	vs, ok := t.list(key)
	if !ok {
		return nil, false
	}
	out := make([]int, 0, len(vs))
	for i, v := range vs {
		n, ok := v.(int64)
		if !ok {
			t.elemErr(key, i, "%s must hold integers, not %s", key, describe(v))
			return nil, false
		}
		out = append(out, int(n))
	}
	return out, true
}

// ints reads an array of distinct integers in [lo, hi]; ok is false when
// key is absent or wrong.
func (t *table) ints(key string, lo, hi int) (_ []int, ok bool) {
	ns, ok := t.intList(key)
	if !ok {
		return nil, false
	}
	for i, n := range ns {
		switch {
		case n < lo || n > hi:
			t.elemErr(key, i, "%s value %d is out of range; %s", key, n, between(int64(lo), int64(hi)))
		case slices.Contains(ns[:i], n):
			t.elemErr(key, i, "%s lists %d twice; remove one", key, n)
		default:
			continue
		}
		return nil, false
	}
	return ns, true
}

// prefixes reads an array of distinct canonical prefixes of any family;
// label names one in messages. It returns the line of each too, for checks
// across tables.
func (t *table) prefixes(key, label string) ([]netip.Prefix, []int) {
	vs, ok := t.list(key)
	if !ok {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(vs))
	lines := make([]int, 0, len(vs))
	first := make(map[netip.Prefix]int, len(vs)) // prefix → line
	for i, v := range vs {
		s, ok := v.(string)
		if !ok {
			t.elemErr(key, i, "%s must hold prefix strings like \"192.0.2.0/24\", not %s", key, describe(v))
			return nil, nil
		}
		p, msg := parsePrefix(label, s, anyFamily, true)
		if msg != "" {
			t.elemErr(key, i, "%s", msg)
			return nil, nil
		}
		if line, dup := first[p]; dup {
			t.elemErr(key, i, "%s lists %s twice (first at line %d); remove one", key, p, line)
			return nil, nil
		}
		line := t.d.where(elem(child(t.path, key), i)).line
		first[p] = line
		out = append(out, p)
		lines = append(lines, line)
	}
	return out, lines
}
