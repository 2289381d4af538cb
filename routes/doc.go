// Package routes reads route sources into plain Route values: text prefix
// files (plain or gzip) and MRT TABLE_DUMP_V2 RIB dumps, validated on the way
// so that a bad line or record is reported with its position rather than
// silently dropped. A live BGP feed is to live here too, beside the file
// readers: this is where GoBGP enters pnap, while fib takes a table as
// prefix and path-length pairs (PathLens) and stays on the standard library.
// routes never touches the FIB or the forwarder, and its file readers never
// touch the network, so tests, tools and the daemon use them alike.
package routes
