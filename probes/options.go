package probes

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pnap-project/pnap/internal/monotime"
	"github.com/pnap-project/pnap/internal/setting"
)

// Options configure Probes. The first fields are the [probes] settings of
// pnapd's configuration file, named after their keys; the rest are not in
// the file. Start from DefaultOptions: the zero value is not valid.
type Options struct {
	// TopPrefixes is how many of the busiest prefixes are probed
	// (top_prefixes): 1 to 1,000,000.
	TopPrefixes int
	// Interval is how often a round of probes starts (interval).
	Interval time.Duration
	// Timeout is how long a probe's answer is waited for (timeout). It is
	// shorter than Interval: otherwise a round's probes would still be
	// out when the next round starts, and late replies would be charged
	// to it.
	Timeout time.Duration
	// RatePerBackbone is probes sent per second on each backbone
	// (rate_per_backbone): 1 to 100,000.
	RatePerBackbone int
	// SourceV4 and SourceV6 are the probes' source addresses (source_v4,
	// source_v6); a family without one is not probed.
	SourceV4, SourceV6 netip.Addr
	// TCPPorts are the ports a SYN probe goes to when the traffic shows
	// none (tcp_ports): at least one, distinct, 1 to 65535. Only the first
	// is used today.
	TCPPorts []int
	// SampleRing is how many samples each forwarder worker's ring holds
	// (sample_ring): a power of two, 16 to 1<<24. Run drains as many at once.
	SampleRing int
	// FlowTable is how many flows passive RTT matching tracks
	// (flow_table): 1 to 1<<24.
	FlowTable int
	// Window is how much history the measurements cover (window): a
	// backbone's RTT and loss for a prefix are those of the last Window/2
	// to Window, so a shorter window reacts sooner to a change and a
	// longer one is steadier.
	Window time.Duration

	// Now is the monotonic clock, in nanoseconds, that Samples and replies
	// are stamped with: monotime.Now, the forwarder's, or a test's fake.
	Now func() int64
	// Tick is how often Run drains the rings and paces probes.
	Tick time.Duration
	// ReplyQueue is how many reply frames OfferReply holds until Run
	// takes them; more are dropped, and counted.
	ReplyQueue int
	// TurnRounds is how many rounds in a row a prefix taking its turn is
	// probed, when the rate cannot probe every top prefix each round (see
	// Prober.pick): enough for the optimizer's min_samples (two probes a
	// round), or a turn would measure nothing it can use. pnapd sets it
	// from [optimizer] min_samples.
	TurnRounds int
	// Traffic tunes the traffic ranking; SampleEvery should be the
	// forwarder's 1-in-N traffic sampling. Zero fields take NewTraffic's
	// defaults.
	Traffic TrafficOptions
}

// DefaultOptions are the defaults of every setting, those the
// configuration file leaves out included.
func DefaultOptions() Options {
	return Options{
		TopPrefixes: 1000,
		// 5 s: the default window's last half (15 s) then holds three
		// rounds, six samples per backbone, min_samples' default.
		Interval:        5 * time.Second,
		Timeout:         2 * time.Second,
		RatePerBackbone: 100,
		TCPPorts:        []int{443, 80},
		SampleRing:      4096,
		FlowTable:       65536,
		Window:          30 * time.Second,
		Now:             monotime.Now,
		// 1 ms: a 4096-sample ring then overflows only above 4 M
		// samples/s per worker, and probes go out within 1 ms of their slot.
		Tick: time.Millisecond,
		// 2 MB of slots hold 2 s of the scale lab's 4,000 replies/s. 1024
		// held 250 ms: the probes goroutine stalling that long on a 2-core
		// VM dropped 200-700 replies a run, each charged as a lost probe
		// and followed by lower-loss moves that read as flaps.
		ReplyQueue: 8192,
		TurnRounds: 3,
	}
}

// RouteHold is the longest probes credits a measurement to a RouteID it
// took from a sample or a probe without checking it against the FIB:
// passive matching keeps an outbound sample up to two Timeouts, a probe
// waits a Timeout for its answer, and samples wait up to a Tick in the
// rings. The FIB must not give a withdrawn route's ID to another prefix
// sooner (fib.Options.Grace), or an RTT could be charged to the prefix that
// took the ID.
func (o Options) RouteHold() time.Duration {
	return 2*o.Timeout + 2*o.Tick
}

// Validate checks every setting. A wrong one comes back as a
// *setting.Error naming its key.
func (o Options) Validate() error {
	var timeout error
	if o.Timeout >= o.Interval {
		timeout = &setting.Error{Keys: []string{"timeout", "interval"}, Msg: fmt.Sprintf(
			"timeout = %q is not shorter than interval = %q; lower timeout or raise interval", o.Timeout, o.Interval)}
	}
	var clock error
	if o.Now == nil {
		clock = setting.Errorf("Now", "Now is nil; use monotime.Now")
	}
	return setting.First(
		setting.Int("top_prefixes", o.TopPrefixes, 1, 1_000_000),
		setting.Positive("interval", o.Interval),
		setting.Positive("timeout", o.Timeout),
		timeout,
		setting.Int("rate_per_backbone", o.RatePerBackbone, 1, 100_000),
		checkPorts(o.TCPPorts),
		setting.PowerOfTwo("sample_ring", o.SampleRing, 16, 1<<24),
		setting.Int("flow_table", o.FlowTable, 1, 1<<24),
		setting.Positive("window", o.Window),
		clock,
		setting.Positive("Tick", o.Tick),
		setting.Int("ReplyQueue", o.ReplyQueue, 1, 1<<20),
		setting.Int("TurnRounds", o.TurnRounds, 1, 1000),
	)
}

// checkPorts checks tcp_ports, naming a wrong port by its place in the list.
func checkPorts(ports []int) error {
	if len(ports) == 0 {
		return setting.Errorf("tcp_ports", "tcp_ports is empty; list at least one port, or remove the key for the default [443, 80]")
	}
	for i, p := range ports {
		key := fmt.Sprintf("tcp_ports[%d]", i)
		if p < 1 || p > 65535 {
			return setting.Errorf(key, "tcp_ports value %d is out of range; use 1 to 65535", p)
		}
		if slices.Contains(ports[:i], p) {
			return setting.Errorf(key, "tcp_ports lists %d twice; remove one", p)
		}
	}
	return nil
}
