// Package bench holds the benchmark lab: network-namespace topologies, the
// traffic generator and the reports that compare pnap with its peers. It
// never sends traffic outside the namespaces it creates. (Being built: see the
// issues.)
package bench
