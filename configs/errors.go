package configs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/BurntSushi/toml"
)

// Error is a problem with a configuration file. It prints as one line,
// "file:line:col: msg", with the column left out when it is 0 and the line
// too when that is 0.
type Error struct {
	File string // as given to Load or Parse
	Line int    // 1-based; 0 when the problem has no single place
	Col  int    // 1-based byte column; 0 when unknown
	Msg  string // what is wrong and what to change
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.File == "" {
		b.WriteString("config")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// syntaxError turns an error from the toml parser on src into an *Error.
func syntaxError(file, src string, err error) *Error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: file, Msg: "invalid TOML: " + oneLine(err.Error())}
	}
	e := &Error{File: file, Line: pe.Position.Line, Col: pe.Position.Col, Msg: "invalid TOML: " + oneLine(pe.Message)}
	// toml's Line is the lexer's, which has already moved past a newline
	// when the newline is the problem; Start is exact, so count from it.
	src = strings.TrimPrefix(src, "\xef\xbb\xbf") // as toml does
	if start := pe.Position.Start; start >= 0 && start <= len(src) {
		lineStart := strings.LastIndexByte(src[:start], '\n') + 1
		e.Line = strings.Count(src[:start], "\n") + 1
		e.Col = start - lineStart + 1
	}
	return e
}

// oneLine keeps a message from a library on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// suggest returns the candidate closest to key, or "" when none is close
// enough to be a likely typo.
func suggest(key string, candidates []string) string {
	best, bestDist := "", 0
	for _, c := range candidates {
		d := editDistance(strings.ToLower(key), c)
		if d <= 2 && d < len(c)/2+1 && (best == "" || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b,
// in bytes: the edits are insertion, deletion, substitution and swapping
// two adjacent bytes, the usual typos.
func editDistance(a, b string) int {
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
