// Package cmdline reads the command line of pnap's small programs (the
// lab demo, archplot) one way: flags only, -h ends with 0, a wrong flag or
// a stray argument with 2 and one line that says what to do. It never
// exits the process: the program's run returns the code.
package cmdline
