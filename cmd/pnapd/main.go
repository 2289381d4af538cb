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
// A plain go build leaves "dev", and version adds the commit Go recorded.
var version = "dev"

const usage = `pnapd: route-optimizing packet forwarder

Usage:
  pnapd run -c FILE                  run the daemon
  pnapd check -c FILE                validate a configuration and load its routes
  pnapd fib lookup --routes FILE...  longest-prefix match for addresses on stdin
  pnapd status                       ports, backbones, FIB of a running pnapd
  pnapd fib show ADDRESS             which backbone carries ADDRESS, and why
  pnapd decisions [-n N]             the optimizer's latest decisions
  pnapd pin PREFIX BACKBONE          send PREFIX over BACKBONE until unpinned
  pnapd unpin PREFIX                 hand PREFIX back to the optimizer
  pnapd pins                         the operator's pins
  pnapd measurements [PREFIX]        RTT and loss per backbone of the busiest prefixes, or of PREFIX
  pnapd routes BACKBONE [PREFIX]     what BACKBONE holds (AS path length, selected)
  pnapd bgp                          BGP sessions: state, prefixes received, held, announced
  pnapd reload                       apply the configuration file again; fails with the reason if refused
  pnapd version                      print the version (also --version)

The client commands (status, fib show, decisions, pin, unpin, pins, measurements,
routes, bgp, reload) reach pnapd's
status API as [api] in -c FILE (default /etc/pnapd/pnapd.toml) says, or at --api.

Run 'pnapd COMMAND --help' for a command's flags.
`

// errUsage marks errors that were already explained with a usage message.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(args[1:], stdout, stderr)
	case "fib":
		err = cmdFIB(args[1:], stdin, stdout, stderr)
	case "status":
		err = cmdStatus(args[1:], stdout, stderr)
	case "decisions":
		err = cmdDecisions(args[1:], stdout, stderr)
	case "pin":
		err = cmdPin(args[1:], stdout, stderr)
	case "unpin":
		err = cmdUnpin(args[1:], stdout, stderr)
	case "bgp":
		err = cmdBGP(args[1:], stdout, stderr)
	case "reload":
		err = cmdReload(args[1:], stdout, stderr)
	case "pins":
		err = cmdPins(args[1:], stdout, stderr)
	case "measurements":
		err = cmdMeasurements(args[1:], stdout, stderr)
	case "routes":
		err = cmdRoutes(args[1:], stdout, stderr)
	case "version", "--version", "-version", "-V":
		err = cmdVersion(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "pnapd: unknown command %q\n\n%s", args[0], usage)
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

// newFlags makes a FlagSet that prints its usage to stderr and returns
// errors instead of exiting.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a command that takes no arguments, mapping its failures
// to errUsage.
func parse(fs *flag.FlagSet, args []string) error {
	rest, err := parseAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", rest[0])
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

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "pnapd version", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok && version == "dev" {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = " " + s.Value[:12]
			}
		}
	}
	fmt.Fprintf(stdout, "pnapd %s%s %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
