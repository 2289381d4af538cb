package configtest

// Backbone is the smallest configuration configs accepts: one backbone,
// "uunet", and nothing else. Tests append the settings they try to it.
const Backbone = `
[[backbone]]
name = "uunet"
interface = "eth1"
gateway_v4 = "192.0.2.1"
`

// TwoBackbones writes only what a configuration must: backbones "a" (an
// IPv4 gateway) and "b" (an IPv6 one). configs' TestDefaults checks the
// defaults configs fills in, the daemon's TestCheckDefaultsFromComponents
// those of the components.
const TwoBackbones = `
[[backbone]]
name = "a"
interface = "eth1"
gateway_v4 = "192.0.2.1"

[[backbone]]
name = "b"
interface = "eth2"
gateway_v6 = "2001:db8::1"
`
