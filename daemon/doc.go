// Package daemon runs pnapd from a loaded configuration: it turns the
// configuration into running components and runs them until told to stop. It translates configuration
// values into each component's own Options, builds the FIB from the route
// sources, then starts the components in stages (data plane, neighbours,
// slow path, probes and optimizer, workers, status API), each of which
// returns a stop function; a failed stage unwinds the ones before it, so a
// start that fails leaves nothing attached. It also serves the status API
// and applies reloads.
//
// daemon holds wiring and operator-facing policy only: it never looks at a
// packet (that is forwarder's), never decides a route (optimizer's) and never
// parses a file itself (configs and routes do). cmd/pnapd is its only user.
package daemon
