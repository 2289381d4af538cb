package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time (make build) with
// -ldflags "-X main.version=$(git describe --tags --always --dirty)".
// A plain go build leaves "dev", and fullVersion adds the commit Go recorded.
var version = "dev"

// errUsage marks errors that were already explained with a usage message.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return 2
	}
	var err error
	if c, rest := findCommand(args); c != nil {
		err = c.run(rest, stdin, stdout, stderr)
	} else if g := group(args[0]); len(g) > 0 {
		err = groupUsage(g, args[1:], stdout, stderr)
	} else if isHelp(args[0]) || args[0] == "help" {
		fmt.Fprint(stdout, usage())
		return 0
	} else {
		fmt.Fprintf(stderr, "pnapd: unknown command %q\n\n%s", args[0], usage())
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "pnapd %s: %v\n", args[0], err)
	return 1
}

// noArgs refuses arguments to a command that takes none.
func noArgs(fs *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", args[0])
		fs.Usage()
		return errUsage
	}
	return nil
}

// parseAnywhere parses flags before, between and after the arguments
// (`pnapd fib show ADDR --api X` as well as `--api X ADDR`), which the flag
// package alone does not: it stops at the first argument. "--" ends the
// flags. It returns the arguments in order; failures are errUsage, or
// flag.ErrHelp for -h.
func parseAnywhere(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		left := fs.Args()
		if len(left) == 0 {
			return rest, nil
		}
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			return append(rest, left...), nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

func defineVersion(fs *flag.FlagSet) action {
	return func(args []string, _ io.Reader, stdout, _ io.Writer) error {
		if err := noArgs(fs, args); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "pnapd %s %s %s/%s\n", fullVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	}
}

// fullVersion is version, and for a plain go build the commit Go recorded.
func fullVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && version == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return version + " " + s.Value[:12]
			}
		}
	}
	return version
}
