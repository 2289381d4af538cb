package forwarder

import "sync/atomic"

// Reason is why a packet was not forwarded.
type Reason uint8

// The drop reasons, counted per port.
const (
	ReasonNone        Reason = iota
	ReasonMalformed          // truncated, bad version, IHL, length or header checksum
	ReasonNotIP              // neither IPv4 nor IPv6 (the XDP program passes these to the kernel)
	ReasonNoRoute            // no route for the destination
	ReasonTTL                // TTL or hop limit expired
	ReasonNoNeighbour        // next hop's MAC not resolved yet
	ReasonMTU                // larger than the egress MTU
	ReasonTxRingFull         // the egress port's TX ring had no room
	ReasonMartian            // source or destination that is never forwarded (loopback, link-local, multicast, IPv4-mapped, ...)
	ReasonOtherHost          // Ethernet destination not this port (flooded, broadcast, promiscuous)
	ReasonProbeReply         // an answer to pnap's own probe: consumed, handed to probes
	numReasons
)

var reasonNames = [numReasons]string{"none", "malformed", "not_ip", "no_route", "ttl", "no_neighbour", "mtu", "tx_ring_full", "martian", "other_host", "probe_reply"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// portCounters are one worker's counters for one port. Only the worker
// writes them, with plain atomic stores (no read-modify-write, so no locked
// instruction per packet); readers sum the workers' copies. The padding keeps
// two workers' counters off one cache line.
type portCounters struct {
	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	drops              [numReasons]atomic.Uint64
	_                  [64]byte
}

// PortStats is a sum of counters for one port.
type PortStats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	Drops              [numReasons]uint64
}

func (s *PortStats) add(c *portCounters) {
	s.RxPackets += c.rxPackets.Load()
	s.RxBytes += c.rxBytes.Load()
	s.TxPackets += c.txPackets.Load()
	s.TxBytes += c.txBytes.Load()
	for i := range s.Drops {
		s.Drops[i] += c.drops[i].Load()
	}
}

// bump adds n to a counter only its owner writes.
func bump(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }
