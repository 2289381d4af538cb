// Command pnapd is the pnap daemon's command line and its operator tools:
// one table of commands (commands.go) from which dispatch and the usage
// text are made;
// `run` (which hands the loaded configuration to package daemon, with
// signals as its stop and reload), `check` and `fib lookup` offline, and
// the status API's client with its printing (status, fib show, decisions,
// pin, unpin, ...). It holds no forwarding, routing or wiring logic of its
// own: that is daemon's and below.
package main
