package cmdline

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Flags is a FlagSet for the program name that reports to stderr and
// returns its errors rather than exiting.
func Flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// Parse parses args, flags only, into fs. When the program should end it
// returns ok false and the exit code: 0 after -h, 2 after a wrong flag
// (which fs has reported) or an argument, which it reports with hint, what
// to do instead.
func Parse(fs *flag.FlagSet, args []string, hint string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q: %s\n", fs.Name(), fs.Arg(0), hint)
		return 2, false
	}
	return 0, true
}
