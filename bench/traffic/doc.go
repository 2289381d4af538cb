// Package traffic generates and counts benchmark traffic for the lab: a
// Generator that sends tagged UDP frames out of a veth with XDP programs run
// by BPF_PROG_RUN in live-frames mode (paced inside the program, so one call
// keeps a steady rate), and a Receiver whose XDP program counts, de-duplicates
// and times the tagged frames and drops them; a frame's tag may name the path
// (backbone) it must arrive by, and a receiver that knows its own path counts
// frames meant for another as wrong-path, not received. Both are written in
// cilium/ebpf asm and loaded from Go; neither must ever become the bottleneck
// of what it measures, nor touch frames that are not its own: the Receiver
// passes everything untagged (ARP, neighbour discovery, other traffic) to the
// kernel.
package traffic
