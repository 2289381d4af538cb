// Command pnapd is the pnap daemon and its operator tools: it loads the TOML
// configuration, builds the per-backbone FIB from the configured route
// sources and (once the data plane lands) forwards. It only wires packages
// together; it holds no forwarding or routing logic of its own.
package main
