// Package steering is the XDP program in front of pnap's AF_XDP sockets
// and its maps: transit IPv4 and IPv6 go to the queue's socket, everything
// else (ARP, NDP, multicast, packets for the box itself) to the kernel. A
// Program owns its BPF program and maps and closes them; attaching it is
// its caller's (a bpf_link, so the kernel detaches it with the process). It
// must never drop what it cannot steer: a queue without a socket falls back
// to the kernel (fail-open; only tests choose otherwise, through
// Options.NoSocketAction), and it never needs clang to build or run.
package steering
