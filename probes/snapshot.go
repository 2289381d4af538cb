package probes

import (
	"net/netip"
	"time"

	"github.com/pnap-project/pnap/fib"
)

// Source says where a measurement came from.
type Source uint8

// The measurement sources.
const (
	Passive Source = iota // in-band: TCP handshakes, TCP timestamps, ICMP echo of forwarded traffic
	Active                // pnap's own probes
	numSources
)

// Stats summarises one (prefix, backbone) pair's measurements over the
// store's window (between the last Window/2 and the last Window, see
// StoreOptions). Min is exact; the percentiles are from an HDR histogram:
// within 1%, or 33 µs below 8 ms.
type Stats struct {
	Min, P50, P95, P99 time.Duration
	// Loss is Lost/Sent: the share of active probes that got no answer or
	// an ICMP error from a router on the way, 0..1. Passive measurement
	// gives RTTs only: an unanswered handshake says more about the server
	// than about the backbone (see passive.go).
	Loss float64
	// Samples counts RTT samples by source.
	Samples [numSources]uint64
	// Sent counts active probes that ended (answered, lost or
	// unreachable); Lost those without an answer, Unreachable (a part of
	// Lost) those answered by an ICMP error from a router.
	Sent, Lost, Unreachable uint64
	Updated                 time.Time // last sample or probe outcome
	// Recent is the last RecentSamples RTTs, from any source: where the
	// path is now, while the window's percentiles still mix in where it
	// was (see the optimizer's level shifts).
	Recent Recent
}

// RecentSamples is how many of a pair's latest RTTs Stats.Recent covers.
const RecentSamples = 4

// Recent sums up a pair's latest RTTs: how many (0 until there are
// RecentSamples within the window), the smallest, the median and the
// largest.
type Recent struct {
	N           int
	Lo, P50, Hi time.Duration
	// Since is when the first of them was sent (taken, for a passive
	// sample): compared with BackboneStats.LastLossSent, whether the path
	// they show has lost anything yet.
	Since time.Time
}

// RTTSamples is the total number of RTT samples from all sources.
func (s Stats) RTTSamples() uint64 {
	var n uint64
	for _, c := range s.Samples {
		n += c
	}
	return n
}

// PrefixStats is one prefix's measurements, one entry per backbone that
// has any.
type PrefixStats struct {
	Prefix    netip.Prefix
	Route     fib.RouteID
	Backbones map[fib.BackboneID]Stats
	// Traffic is the prefix's estimated forwarded packets per second (from
	// the traffic samples), which ranks prefixes for active probing.
	Traffic float64
	// TrafficBps is the same in bits per second, from the sampled packets'
	// lengths; 0 when unknown.
	TrafficBps float64
}

// Snapshot is a consistent copy of the store at one moment, safe to read
// while the store goes on: the optimizer's and the status API's view.
type Snapshot struct {
	Taken    time.Time
	Prefixes []PrefixStats // sorted by Traffic, busiest first
	// Backbones summarises each backbone over all its prefixes: used to
	// detect backbone-wide failure (loss spike, or every probe lost).
	Backbones map[fib.BackboneID]BackboneStats
}

// BackboneStats is one backbone's recent totals.
type BackboneStats struct {
	// Over the store's window, all prefixes; evicted pairs still count.
	// ProbesLost includes Unreachable.
	ProbesSent, ProbesLost, Unreachable uint64
	Loss                                float64 // ProbesLost/ProbesSent
	Updated                             time.Time
	// LastLossSent is when the latest-sent of the probes lost on the
	// backbone was sent, however long ago; zero if none was.
	LastLossSent time.Time
	// SilentSince, if not zero, is when the customer's traffic on the
	// backbone stopped being answered: many packets that call for an
	// answer, to several prefixes, none answered for a probe timeout or
	// more, while they still go (see silence.go). Passive samples alone
	// give it.
	SilentSince time.Time
}
