// Package configs loads and validates the pnapd configuration file: one TOML
// document describing the forwarder, the transit backbones and their route
// sources, the customer ports, the prober, the optimizer and the API. Load
// fills in every default and checks every value once, so the rest of the
// daemon works with plain, already-valid structs of netip and duration
// types; a mistake in the file comes back as a one-line *Error naming the
// file, the line and what to change. It only checks that route and MRT
// files exist: it never reads routes, opens sockets or touches interfaces,
// and it imports nothing else from this project.
package configs
