// Package topo builds the benchmark labs: a traffic source namespace, the
// device under test's namespace (pnapd, or Linux forwarding for the
// baseline) with one customer port and N backbone ports, and one namespace
// per backbone where the traffic ends. It also loads full routing tables
// into a namespace's kernel over netlink, for the kernel baseline.
//
// Everything is built with bench/lab: unique names per run, removed when the
// test ends, fails, or is interrupted.
package topo
