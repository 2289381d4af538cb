// Command pnapd is the pnap daemon and its operator tools: it loads the TOML
// configuration, builds the per-backbone FIB from the configured route
// sources, attaches the XDP program and AF_XDP sockets to the configured
// interfaces and forwards until SIGINT or SIGTERM. It only wires packages
// together; it holds no forwarding or routing logic of its own. Its one
// piece of configuration logic is options.go, where the file's values meet
// the components' defaults and rules; it never defaults or checks a
// component's setting itself.
package main
