// Package configs reads the pnapd configuration file: one TOML document
// describing the forwarder, the transit backbones and their route sources,
// the customer ports, the prober, the optimizer, the API and the BGP
// sessions. It turns the file into plain netip and duration values, checks
// their types and the rules of the file itself (names, interfaces,
// gateways, prefixes, the API's listener, the BGP neighbors, AS numbers and
// communities), and keeps where each key is written (Config.Line), so
// that a mistake comes back as a one-line *Error naming the file, the line
// and what to change. The settings a component owns (probes.Options,
// optimizer.Options, xsk.Options, the loops' batch, the BGP speaker's
// timers, limits and import policy) it hands over as written: their
// defaults and rules are the component's, never repeated here. It only
// checks that route and MRT files exist and reads BGP password files: it
// never reads routes, opens sockets or touches interfaces, and it imports
// nothing else from this project.
package configs
