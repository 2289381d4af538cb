module github.com/pnap-project/pnap

go 1.26

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/gaissmai/bart v0.30.0
	github.com/osrg/gobgp/v4 v4.8.0
)

require (
	github.com/cilium/ebpf v0.22.0
	github.com/google/gopacket v1.1.19
)

require golang.org/x/sys v0.45.0 // indirect
