//go:build linux

package main

import (
	"strings"
	"testing"
)

// The command line refuses what it does not know before building anything.
func TestRunArgs(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-demo"}, "flag provided but not defined: -demo"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-plot"}, "flag needs an argument: -plot"},
	} {
		var out, errs strings.Builder
		if code := run(c.args, &out, &errs); code != 2 || !strings.Contains(errs.String(), c.want) || out.Len() != 0 {
			t.Errorf("run(%q) = %d, stderr %q, stdout %q; want 2 and %q", c.args, code, errs.String(), out.String(), c.want)
		}
	}
}
