// Command archplot draws pnap's architecture (`make arch`, or
// `go run ./internal/archplot -o docs/architecture.png`): the module's
// packages from `go list`, in layers by import depth, their imports as thin
// grey arrows, and two highlighted paths, a packet's and a decision's,
// given as package path suffixes so that the picture follows the tree as it
// is reorganised. It only reads the module and writes the one PNG.
package main
