// Package probes measures how fast each backbone reaches each destination
// prefix: passively from the traffic pnap forwards (TCP handshakes, TCP
// timestamps, ICMP echo, handed over by the forwarder's workers as Samples)
// and actively, by probing every backbone that has a route for the busiest
// prefixes. A Store keeps per (prefix, backbone) RTT histograms and loss, and
// hands out consistent Snapshots to the optimizer and the status API. Its
// Options carry their own defaults and rules, and every time it handles is
// monotime's, the clock the forwarder stamps with.
// probes never blocks the forwarder: workers hand over samples and replies
// through bounded rings and queues that drop, and count, when full. It
// never reads the configuration file and never changes a route.
package probes
