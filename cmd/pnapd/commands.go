package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// A command is one entry of pnapd's command table. Dispatch, the usage
// text, the completion scripts and the man page are all made from the
// table, so a command added to it is in every one of them.
type command struct {
	name    string   // "status"; "fib show" for a subcommand of the group fib
	aliases []string // other spellings of name ("--version")
	args    string   // argument synopsis; a client command's [-c FILE | --api ADDR] goes before it
	summary string   // one line for the usage text and the man page
	help    string   // a paragraph more, for --help and the man page (optional)
	words   []string // what the first argument can be, for completion (optional)
	// define adds the command's flags to fs and returns its work. It runs
	// nothing: completion and the man page call it to learn the flags.
	define func(fs *flag.FlagSet) action
}

// An action is a command's work once its flags are parsed into what
// define bound them to; args are the arguments left, in order.
type action func(args []string, stdin io.Reader, stdout, stderr io.Writer) error

// commands is filled in init so that a command may read the table
// (completion and man do): a variable whose initializer reaches itself
// does not compile.
var commands []command

func init() {
	commands = []command{
		{name: "run", args: "-c FILE", summary: "run the daemon", define: defineRun},
		{name: "check", args: "-c FILE [--host]", summary: "validate a configuration and load its routes", define: defineCheck},
		{name: "fib lookup", args: "(--routes FILE [--routes FILE ...] | -c CONFIG) [--backbone] < addresses",
			summary: "longest-prefix match for addresses on stdin", help: fibLookupHelp, define: defineFIBLookup},
		{name: "status", args: "[--json]", summary: "ports, backbones, FIB of a running pnapd", define: clientOnly(0, 0, cmdStatus)},
		{name: "fib show", args: "ADDRESS", summary: "which backbone carries ADDRESS, and why", define: clientOnly(1, 1, cmdFIBShow)},
		{name: "decisions", args: "[-n N]", summary: "the optimizer's latest decisions", define: defineDecisions},
		{name: "pin", args: "PREFIX BACKBONE", summary: "send PREFIX over BACKBONE until unpinned", define: clientOnly(2, 2, cmdPin)},
		{name: "unpin", args: "PREFIX", summary: "hand PREFIX back to the optimizer", define: clientOnly(1, 1, cmdUnpin)},
		{name: "pins", summary: "the operator's pins", define: clientOnly(0, 0, cmdPins)},
		{name: "measurements", args: "[PREFIX]", summary: "RTT and loss per backbone of the busiest prefixes, or of PREFIX",
			define: clientOnly(0, 1, cmdMeasurements)},
		{name: "routes", args: "[-n N] BACKBONE [PREFIX]", summary: "what BACKBONE holds (AS path length, selected)", define: defineRoutes},
		{name: "bgp", args: "[--json]", summary: "BGP sessions: state, prefixes received, held, announced", define: clientOnly(0, 0, cmdBGP)},
		{name: "reload", summary: "apply the configuration file again; fails with the reason if refused", define: clientOnly(0, 0, cmdReload)},
		{name: "version", aliases: []string{"--version", "-version", "-V"}, summary: "print the version (also --version)", define: defineVersion},
		{name: "completion", args: "bash|zsh", words: []string{"bash", "zsh"}, summary: "print the shell's completion script",
			help: completionHelp, define: defineCompletion},
		{name: "man", summary: "print pnapd's manual page (roff, section 8)", define: defineMan},
	}
}

// findCommand returns the command args name and the arguments after its
// name, or nil.
func findCommand(args []string) (*command, []string) {
	for i := range commands {
		c := &commands[i]
		words := strings.Fields(c.name)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c, args[len(words):]
		}
		if slices.Contains(c.aliases, args[0]) {
			return c, args[1:]
		}
	}
	return nil, nil
}

// group returns the subcommands of name ("fib"), or none.
func group(name string) []*command {
	var g []*command
	for i := range commands {
		if words := strings.Fields(commands[i].name); len(words) > 1 && words[0] == name {
			g = append(g, &commands[i])
		}
	}
	return g
}

// groupUsage answers a group's name without a known subcommand: its
// subcommands' synopses, on stdout for -h and otherwise on stderr.
func groupUsage(g []*command, args []string, stdout, stderr io.Writer) error {
	var lines []string
	for _, c := range g {
		fs, _ := c.flags(io.Discard)
		lines = append(lines, c.synopsis(fs))
	}
	text := "Usage: " + strings.Join(lines, "\n       ") + "\n"
	if len(args) > 0 && isHelp(args[0]) {
		fmt.Fprint(stdout, text)
		return nil
	}
	fmt.Fprint(stderr, text)
	return errUsage
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// run parses args into the command's flags, wherever they are among its
// arguments, and runs it.
func (c *command) run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, act := c.flags(stderr)
	rest, err := parseAnywhere(fs, args)
	if err != nil {
		return err
	}
	return act(rest, stdin, stdout, stderr)
}

// flags returns the command's FlagSet, which reports to stderr and returns
// its errors rather than exiting, and the action its flags are bound to.
func (c *command) flags(stderr io.Writer) (*flag.FlagSet, action) {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\n", c.synopsis(fs))
		if c.help != "" {
			fmt.Fprintf(stderr, "%s\n\n", c.help)
		}
		fs.PrintDefaults()
	}
	return fs, c.define(fs)
}

// synopsis is the command's usage line. A client command (one with --api)
// shows how it finds pnapd.
func (c *command) synopsis(fs *flag.FlagSet) string {
	parts := []string{"pnapd", c.name}
	if isClient(fs) {
		parts = append(parts, "[-c FILE | --api ADDR]")
	}
	if c.args != "" {
		parts = append(parts, c.args)
	}
	return strings.Join(parts, " ")
}

// isClient tells a client command by its flags: every one takes --api.
func isClient(fs *flag.FlagSet) bool {
	return fs.Lookup("api") != nil
}

// usageWidth is the longest synopsis the usage text has a summary beside
// (routes'); a longer one gets a line of its own.
const usageWidth = 37

// usage is pnapd's overview: every command of the table, one line each.
func usage() string {
	var b strings.Builder
	b.WriteString("pnapd: route-optimizing packet forwarder\n\nUsage:\n")
	var clients []string
	for _, c := range commands {
		line := strings.TrimSpace("pnapd " + c.name + " " + c.args)
		if len(line) > usageWidth {
			fmt.Fprintf(&b, "  %s\n  %*s  %s\n", line, usageWidth, "", c.summary)
		} else {
			fmt.Fprintf(&b, "  %-*s  %s\n", usageWidth, line, c.summary)
		}
		if fs, _ := c.flags(io.Discard); isClient(fs) {
			clients = append(clients, c.name)
		}
	}
	fmt.Fprintf(&b, "\n%s\n\nRun 'pnapd COMMAND --help' for a command's flags.\n", wrap(clientsParagraph(clients), 80))
	return b.String()
}

// clientsParagraph says how the client commands find pnapd.
func clientsParagraph(clients []string) string {
	return fmt.Sprintf("The client commands (%s) reach pnapd's status API as [api] in -c FILE (default %s) says, or at --api.",
		strings.Join(clients, ", "), defaultConfig)
}

// wrap breaks text into lines of at most width characters, between words.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for _, w := range strings.Fields(text) {
		switch {
		case n == 0:
		case n+1+len(w) > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// A flagDoc is what the completion scripts and the man page say about one
// flag.
type flagDoc struct {
	name   string // as flag knows it, without dashes
	spell  string // "-c" for one letter, "--api" for more, as pnapd's docs write them
	value  string // what it takes ("file", "int"), "" for a switch
	usage  string
	def    string // its default, if it has one worth saying
	repeat bool   // may be given more than once
}

// flagDocs describes the command's flags, in flag's (alphabetical) order.
func (c *command) flagDocs() []flagDoc {
	fs, _ := c.flags(io.Discard)
	return docFlags(fs)
}

func docFlags(fs *flag.FlagSet) []flagDoc {
	var docs []flagDoc
	fs.VisitAll(func(f *flag.Flag) {
		value, usage := flag.UnquoteUsage(f)
		d := flagDoc{name: f.Name, spell: "--" + f.Name, value: value, usage: usage}
		if len(f.Name) == 1 {
			d.spell = "-" + f.Name
		}
		if value != "" && f.DefValue != "" && f.DefValue != "0" {
			d.def = f.DefValue
		}
		_, d.repeat = f.Value.(*stringList)
		docs = append(docs, d)
	})
	return docs
}
