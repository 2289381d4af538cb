// Command pnapd is the pnap daemon's command line and its operator tools:
// one table of commands (commands.go) from which dispatch, the usage
// text, the bash and zsh completions and the man page are all made;
// `run` (which hands the loaded configuration to package daemon, with
// signals as its stop and reload), `check` and `fib lookup` offline, and
// the status API's client with its printing (status, fib show, decisions,
// pin, unpin, ...). It holds no forwarding, routing or wiring logic of its
// own: that is daemon's and below.
package main
