package configtest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Broken loads every file in dir/*.toml with load, one subtest a file, and
// fails unless there are at least min of them. Each file starts with
// "# want: <substring of the error>" and may follow it with "# line: N".
// The error must contain the substring, be one line starting with the
// file name, be an E (a *configs.Error) and, given a line, point at it:
// line reads an E's. (E, not *configs.Error: configs' own tests import
// this package.)
func Broken[E error](t *testing.T, dir string, min int, load func(file string) error, line func(E) int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < min {
		t.Fatalf("only %d broken configs", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, at := header(t, file)
			err := load(file)
			if err == nil {
				t.Fatalf("loaded; want an error containing %q", want)
			}
			msg := err.Error()
			if !strings.Contains(msg, want) {
				t.Errorf("error %q\ndoes not contain %q", msg, want)
			}
			if !strings.HasPrefix(msg, file+":") {
				t.Errorf("error %q does not start with the file name", msg)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q is not one line", msg)
			}
			var e E
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a %T", err, e)
			}
			if at != 0 && (line(e) != at || !strings.HasPrefix(msg, file+":"+strconv.Itoa(at)+":")) {
				t.Errorf("error %q is at line %d; want line %d", msg, line(e), at)
			}
		})
	}
}

// header reads file's "# want:" line and its optional "# line:" line; line
// is 0 without one.
func header(t *testing.T, file string) (want string, line int) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	want, ok := strings.CutPrefix(lines[0], "# want: ")
	if !ok {
		t.Fatal(`the first line must be "# want: <substring>"`)
	}
	if s, ok := strings.CutPrefix(lines[1], "# line: "); ok {
		if line, err = strconv.Atoi(s); err != nil {
			t.Fatal(err)
		}
	}
	return want, line
}
