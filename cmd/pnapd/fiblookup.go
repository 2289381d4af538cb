package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/pnap-project/pnap/daemon"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/routes"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

const fibLookupHelp = `Reads addresses from stdin, one per line, and writes "ADDRESS PREFIX" per
line: the longest match across all route files (or the configuration's
backbones), "-" when none matches. Blank lines and lines starting with '#'
are skipped. A line that is not an address stops the run with its line
number and exit status 1.`

func defineFIBLookup(fs *flag.FlagSet) action {
	var files stringList
	fs.Var(&files, "routes", "route `file` (text prefixes, plain or gzip); repeat for more")
	cfgPath := fs.String("c", "", "take routes from this configuration `file` instead")
	showBackbone := fs.Bool("backbone", false, "add a third column: the backbone selected for the prefix")
	return func(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
		if err := noArgs(fs, args); err != nil {
			return err
		}
		if (len(files) == 0) == (*cfgPath == "") {
			fmt.Fprintln(stderr, "pnapd fib lookup: give either --routes FILE (one or more) or -c CONFIG")
			fs.Usage()
			return errUsage
		}
		f, err := lookupFIB(files, *cfgPath)
		if err != nil {
			return err
		}
		return lookupStream(f, stdin, stdout, *showBackbone)
	}
}

// lookupFIB loads the FIB fib lookup answers from: the route files, or
// the configuration's backbones.
func lookupFIB(files []string, cfgPath string) (*fib.FIB, error) {
	if cfgPath == "" {
		return fibFromFiles(files)
	}
	cfg, err := daemon.LoadConfig(cfgPath)
	if err != nil {
		return nil, err
	}
	f, _, err := daemon.LoadFIB(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfgPath, err)
	}
	return f, nil
}

// fibFromFiles makes one backbone per route file, named after the file.
func fibFromFiles(files []string) (*fib.FIB, error) {
	if len(files) > fib.MaxBackbones {
		return nil, fmt.Errorf("%d route files; at most %d", len(files), fib.MaxBackbones)
	}
	bbs := make([]fib.Backbone, len(files))
	tables := make([][]routes.Route, len(files))
	for i, path := range files {
		bbs[i] = fib.Backbone{Name: fmt.Sprintf("%d:%s", i, filepath.Base(path)), Preference: i}
		rs, err := routes.ReadPrefixFile(path)
		if err != nil {
			return nil, err
		}
		tables[i] = rs
	}
	f, err := fib.New(bbs, fib.Options{})
	if err != nil {
		return nil, err
	}
	err = f.Update(func(tx *fib.Txn) error {
		for i, rs := range tables {
			for _, r := range rs {
				if err := tx.Add(fib.BackboneID(i), r.Prefix, r.PathLen); err != nil {
					return fmt.Errorf("%s: %v: %w", files[i], r.Prefix, err)
				}
			}
		}
		return nil
	})
	return f, err
}

func lookupStream(f *fib.FIB, stdin io.Reader, stdout io.Writer, showBackbone bool) error {
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64<<10), 64<<10)
	out := bufio.NewWriterSize(stdout, 256<<10)
	v := f.Load()
	names := f.Backbones()
	line := 0
	for in.Scan() {
		line++
		text := bytes.TrimSpace(in.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		a, err := netip.ParseAddr(string(text))
		if err != nil {
			out.Flush()
			return fmt.Errorf("stdin:%d: bad address %q: write one IPv4 or IPv6 address per line", line, text)
		}
		out.Write(text)
		e, ok := v.Lookup(a)
		if !ok {
			out.WriteString(" -\n")
			continue
		}
		out.WriteByte(' ')
		out.WriteString(f.Prefix(e.Route).String())
		if showBackbone {
			out.WriteByte(' ')
			out.WriteString(names[e.Backbone].Name)
		}
		out.WriteByte('\n')
	}
	if err := in.Err(); err != nil {
		out.Flush()
		return fmt.Errorf("stdin:%d: %w", line+1, err)
	}
	return out.Flush()
}
