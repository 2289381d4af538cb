// Package routes reads route sources — text prefix files (plain or gzip) and
// MRT TABLE_DUMP_V2 RIB dumps — into plain Route values, validating them on
// the way so that a bad line or record is reported with its position rather
// than silently dropped. It only parses: it never touches the FIB, the
// forwarder or the network, so it can be used from tests, tools and the
// daemon alike.
package routes
