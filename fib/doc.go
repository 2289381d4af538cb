// Package fib holds pnap's forwarding information base: one route set per
// transit backbone and one longest-prefix-match structure over the union of
// their prefixes, whose entries say which backbones hold a route for the
// prefix and which one is selected.
//
// Readers (forwarding workers) never lock and never allocate: they load the
// current Version with one atomic pointer load, look addresses up in it, and
// read each route's selection with one atomic load. Writers are serialised.
// A selection change is a single compare-and-swap on the route's state word,
// visible to the next lookup. Structural changes (route add, withdraw, reload
// of a backbone) build the changed trie nodes aside in an append-only arena and
// publish a new Version with one atomic store; lookups continue meanwhile.
// fib never blocks a reader, and it imports only the standard library
// (deps_test.go holds this), so a table reaches it as prefix and path-length
// pairs and no route parser's dependencies come with it.
package fib
