package daemon

import (
	"fmt"
	"runtime"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/steering"
	"github.com/pnap-project/pnap/forwarder/xsk"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads pnapd's counters when Prometheus scrapes, so nothing on
// the fast path knows about metrics. Label cardinality is bounded: ports,
// queues, drop reasons, backbones, decision reasons, and per-prefix series
// only for the busiest [api] metrics_top_prefixes prefixes. A port's series
// carry one identity, its configured name (port), as the backbone label and
// the API do; its Linux interface and role are on pnap_port_info, to join on
// port, rather than repeated on every series.
type collector struct {
	d *Daemon
}

var (
	descPortPackets   = prometheus.NewDesc("pnap_port_packets_total", "Packets by port, queue and direction (rx, tx).", []string{"port", "queue", "direction"}, nil)
	descPortBytes     = prometheus.NewDesc("pnap_port_bytes_total", "Bytes by port, queue and direction (rx, tx).", []string{"port", "queue", "direction"}, nil)
	descPortDrops     = prometheus.NewDesc("pnap_port_drops_total", "Packets received and not forwarded, by port, queue and reason.", []string{"port", "queue", "reason"}, nil)
	descBBTxBytes     = prometheus.NewDesc("pnap_backbone_tx_bytes_total", "Bytes sent out of each backbone's port.", []string{"backbone"}, nil)
	descBBSelected    = prometheus.NewDesc("pnap_backbone_prefixes_selected", "Prefixes whose traffic each backbone carries now.", []string{"backbone"}, nil)
	descBBHeld        = prometheus.NewDesc("pnap_backbone_routes_held", "Routes each backbone holds.", []string{"backbone"}, nil)
	descBBProbeLoss   = prometheus.NewDesc("pnap_backbone_probe_loss_ratio", "Share of each backbone's recent active probes that went unanswered.", []string{"backbone"}, nil)
	descBBProbes      = prometheus.NewDesc("pnap_backbone_probes_recent", "Active probes sent in the store's window, by backbone.", []string{"backbone"}, nil)
	descBBProbesLost  = prometheus.NewDesc("pnap_backbone_probes_lost_recent", "Of those, the probes that went unanswered.", []string{"backbone"}, nil)
	descBBRTT         = prometheus.NewDesc("pnap_backbone_rtt_seconds", "Median over measured prefixes of each backbone's median RTT.", []string{"backbone"}, nil)
	descBBFailed      = prometheus.NewDesc("pnap_backbone_failed", "1 while the optimizer holds the backbone failed.", []string{"backbone"}, nil)
	descPrefixRTT     = prometheus.NewDesc("pnap_prefix_rtt_seconds", "Median RTT of the busiest prefixes by backbone (bounded by [api] metrics_top_prefixes).", []string{"prefix", "backbone"}, nil)
	descDecisions     = prometheus.NewDesc("pnap_optimizer_decisions_total", "Selection changes by the optimizer (and pins), by reason.", []string{"reason"}, nil)
	descBlocked       = prometheus.NewDesc("pnap_optimizer_blocked_total", "Moves not made, by limit (commit, capacity, max_overrides).", []string{"limit"}, nil)
	descOverrides     = prometheus.NewDesc("pnap_fib_overrides", "Prefixes routed away from their default backbone.", nil, nil)
	descFIBRoutes     = prometheus.NewDesc("pnap_fib_routes", "Distinct prefixes in the FIB by family.", []string{"family"}, nil)
	descFIBGen        = prometheus.NewDesc("pnap_fib_versions_total", "FIB versions published (one per route change or batch of them).", nil, nil)
	descFIBBytes      = prometheus.NewDesc("pnap_fib_lookup_bytes", "Bytes of the lookup structure (trie nodes, root pages, selections).", nil, nil)
	descRingDrops     = prometheus.NewDesc("pnap_sample_ring_drops_total", "In-band samples dropped because a worker's ring was full.", nil, nil)
	descSamples       = prometheus.NewDesc("pnap_samples_total", "In-band samples read by probes.", nil, nil)
	descRTTSamples    = prometheus.NewDesc("pnap_rtt_samples_total", "RTT samples by source (syn, ts, echo: passive; probe: active).", []string{"source"}, nil)
	descProbesSent    = prometheus.NewDesc("pnap_probes_sent_total", "Active probes sent.", nil, nil)
	descProbeReplies  = prometheus.NewDesc("pnap_probe_replies_unused_total", "Frames addressed to the probe source that the probes did not match to a probe, by reason (queue_full: dropped before the probes goroutine took them; not_a_probe: not an answer to any probe; unmatched: no such probe awaited, as when its answer came more than two timeouts after it left): a growing count is probes charged as lost that were answered.", []string{"reason"}, nil)
	descProbeLate     = prometheus.NewDesc("pnap_probe_late_answers_total", "Probes charged as lost whose answer came within one more timeout: the loss is taken back from the measurements (a stall, not the backbone). They are still counted lost in pnap_probe_results_total.", nil, nil)
	descProbeResults  = prometheus.NewDesc("pnap_probe_results_total", "What became of the active probes sent, by result (answered, lost, unreachable): they add up to the probes sent less those still awaited.", []string{"result"}, nil)
	descProbesNotSent = prometheus.NewDesc("pnap_probes_not_sent_total", "Active probes not sent, by reason (no_path: no route or next hop; tx_full: the inject ring was full).", []string{"reason"}, nil)
	descBGPUp         = prometheus.NewDesc("pnap_bgp_session_up", "1 while the BGP session is Established.", []string{"session", "role", "neighbor"}, nil)
	descBGPFlaps      = prometheus.NewDesc("pnap_bgp_session_flaps_total", "Times the BGP session left Established.", []string{"session", "role", "neighbor"}, nil)
	descBGPUpdates    = prometheus.NewDesc("pnap_bgp_updates_total", "BGP UPDATE messages by direction (in, out).", []string{"session", "role", "neighbor", "direction"}, nil)
	descBGPPrefixes   = prometheus.NewDesc("pnap_bgp_prefixes", "A session's prefixes now, by family and kind (held: in the FIB from this session; announced: the peer has them from pnapd).", []string{"session", "role", "neighbor", "family", "kind"}, nil)
	descBGPReceived   = prometheus.NewDesc("pnap_bgp_prefixes_received_total", "Prefixes the peer announced, every UPDATE counted, by family.", []string{"session", "role", "neighbor", "family"}, nil)
	descBGPRefused    = prometheus.NewDesc("pnap_bgp_prefixes_refused_total", "Announced prefixes the import rules refused, by reason (policy, next_hop, max_prefixes).", []string{"session", "role", "neighbor", "reason"}, nil)
	descXSKDrops      = prometheus.NewDesc("pnap_xsk_drops_total", "Frames the kernel's AF_XDP socket dropped or refused, by port, queue and reason (rx_dropped, rx_ring_full: the worker fell behind; fill_ring_empty; rx_invalid, tx_invalid: descriptors).", []string{"port", "queue", "reason"}, nil)
	descXSKCopied     = prometheus.NewDesc("pnap_xsk_copied_frames_total", "Frames copied into the UMEM to be sent (probes); forwarding moves frames without copying.", []string{"port", "queue"}, nil)
	descWorkerSpin    = prometheus.NewDesc("pnap_worker_spin_seconds_total", "CPU time each worker spent polling empty rings before sleeping ([forwarder] spin_us): what low latency costs.", []string{"queue"}, nil)
	descWorkerSleeps  = prometheus.NewDesc("pnap_worker_sleeps_total", "Times each worker slept in poll(2) for want of work.", []string{"queue"}, nil)
	descXDPPassed     = prometheus.NewDesc("pnap_xdp_passed_total", "Frames the XDP program gave to the kernel rather than to the workers, by port and reason (short: truncated headers; not_ip: ARP, QinQ and other ethertypes; multicast; ndp; local: addressed to the box).", []string{"port", "reason"}, nil)
	descBBCommit      = prometheus.NewDesc("pnap_backbone_commit_bps", "Each backbone's committed rate ([[backbone]] commit_mbps), bits/s; absent when none.", []string{"backbone"}, nil)
	descBBRateP95     = prometheus.NewDesc("pnap_backbone_rate_p95_bps", "The 95th percentile of each backbone's traffic over the optimizer's rate window, bits/s: what the commit is billed on.", []string{"backbone"}, nil)
	descBuildInfo     = prometheus.NewDesc("pnap_build_info", "Always 1: the version pnapd was built as and its Go.", []string{"version", "goversion"}, nil)
	descReloads       = prometheus.NewDesc("pnap_reloads_total", "Configuration reloads by result (applied, refused).", []string{"result"}, nil)
	descReloadTime    = prometheus.NewDesc("pnap_last_reload_timestamp_seconds", "When the configuration was last applied (start-up or reload), Unix time.", nil, nil)
	descXDPMode       = prometheus.NewDesc("pnap_port_xdp_mode", "Always 1: how each port's XDP program is attached (native, generic).", []string{"port", "mode"}, nil)
	descPortInfo      = prometheus.NewDesc("pnap_port_info", "Always 1: each port's Linux interface and role (customer, backbone), to join on port.", []string{"port", "interface", "role"}, nil)
	descICMP          = prometheus.NewDesc("pnap_icmp_errors_total", "ICMP errors the slow path handled, by outcome (sent; rate_limited: over the rate limit; suppressed: owed none, as for errors about errors; failed).", []string{"outcome"}, nil)
	descInjectRefuse  = prometheus.NewDesc("pnap_probe_inject_refused_total", "Probe frames the workers' inject ring refused.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	m := sink(ch)
	c.collectDaemon(m)
	c.collectPorts(m)
	c.collectBackbones(m)
	c.collectFIB(m)
	c.collectBGP(m)
	if p := c.d.ctl.probes; p != nil {
		c.collectProbes(m, p)
	}
	if o := c.d.ctl.opt; o != nil {
		oc := o.Counters()
		for r := optimizer.Reason(0); r < optimizer.NumReasons; r++ {
			m.counter(descDecisions, float64(oc.Moves[r]), r.String())
		}
		m.counter(descBlocked, float64(oc.BlockedCommit), "commit")
		m.counter(descBlocked, float64(oc.BlockedCapacity), "capacity")
		m.counter(descBlocked, float64(oc.BlockedCap), "max_overrides")
	}
}

// collectDaemon: build, reloads, the slow path's ICMP errors.
func (c collector) collectDaemon(m sink) {
	d := c.d
	m.gauge(descBuildInfo, 1, d.version, runtime.Version())
	m.counter(descReloads, float64(d.reloads.applied.Load()), "applied")
	m.counter(descReloads, float64(d.reloads.refused.Load()), "refused")
	if at := d.reloads.last.Load(); at != 0 {
		m.gauge(descReloadTime, float64(at)/1e9)
	}
	if d.slow != nil && d.slow.path != nil {
		r := d.slow.path
		m.counter(descICMP, float64(r.Sent.Load()), "sent")
		m.counter(descICMP, float64(r.Limited.Load()), "rate_limited")
		m.counter(descICMP, float64(r.Suppressed.Load()), "suppressed")
		m.counter(descICMP, float64(r.Failed.Load()), "failed")
	}
}

// sink is where Collect's metrics go.
type sink chan<- prometheus.Metric

func (m sink) counter(d *prometheus.Desc, v float64, l ...string) {
	m <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
}

func (m sink) gauge(d *prometheus.Desc, v float64, l ...string) {
	m <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
}

// collectPorts: every port's counters per worker queue.
func (c collector) collectPorts(m sink) {
	d := c.d
	for i, p := range d.dp.plane.Ports {
		name := d.portName(i)
		m.gauge(descPortInfo, 1, name, p.Name, roleName(p.Role))
		for q, w := range d.dp.workers {
			var st forwarder.PortStats
			w.Stats(i, &st)
			qs := fmt.Sprint(q)
			m.counter(descPortPackets, float64(st.RxPackets), name, qs, "rx")
			m.counter(descPortPackets, float64(st.TxPackets), name, qs, "tx")
			m.counter(descPortBytes, float64(st.RxBytes), name, qs, "rx")
			m.counter(descPortBytes, float64(st.TxBytes), name, qs, "tx")
			for r, n := range st.Drops {
				if forwarder.Reason(r) != forwarder.ReasonNone {
					m.counter(descPortDrops, float64(n), name, qs, forwarder.Reason(r).String())
				}
			}
			c.collectSocket(m, d.dp.byQueue[q][i], name, qs)
		}
		if i < len(d.dp.xdpModes) {
			m.gauge(descXDPMode, 1, name, d.dp.xdpModes[i])
		}
		if i < len(d.dp.steering) {
			if passed, err := d.dp.steering[i].PassCounts(); err == nil {
				for r, n := range passed {
					m.counter(descXDPPassed, float64(n), name, steering.PassReason(r).String())
				}
			}
		}
	}
	if loops := d.dp.running.Load(); loops != nil {
		for q, l := range *loops {
			st := l.Stats()
			m.counter(descWorkerSpin, st.SpinSeconds, fmt.Sprint(q))
			m.counter(descWorkerSleeps, float64(st.Sleeps), fmt.Sprint(q))
		}
	}
}

// collectSocket: the kernel's counters of one AF_XDP socket.
func (c collector) collectSocket(m sink, s *xsk.Port, name, queue string) {
	st, err := s.Stats()
	if err != nil {
		return
	}
	for _, r := range []struct {
		reason string
		n      uint64
	}{{"rx_dropped", st.RxDropped}, {"rx_ring_full", st.RxRingFull}, {"fill_ring_empty", st.RxFillRingEmpty}, {"rx_invalid", st.RxInvalid}, {"tx_invalid", st.TxInvalid}} {
		m.counter(descXSKDrops, float64(r.n), name, queue, r.reason)
	}
	m.counter(descXSKCopied, float64(st.Copied), name, queue)
}

// collectBackbones: what the status API says of each backbone.
func (c collector) collectBackbones(m sink) {
	if o := c.d.ctl.opt; o != nil {
		for _, b := range o.Backbones() {
			if b.CommitBps > 0 {
				m.gauge(descBBCommit, b.CommitBps, b.Name)
			}
			m.gauge(descBBRateP95, b.P95Bps, b.Name)
		}
	}
	for _, b := range c.d.backbones() {
		m.counter(descBBTxBytes, float64(b.TxBytes), b.Name)
		m.gauge(descBBSelected, float64(b.Selected), b.Name)
		m.gauge(descBBHeld, float64(b.RoutesHeld), b.Name)
		m.gauge(descBBFailed, boolFloat(b.Failed), b.Name)
		if c.d.ctl.probes != nil {
			m.gauge(descBBProbeLoss, b.ProbeLoss, b.Name)
			m.gauge(descBBProbes, float64(b.ProbesSent), b.Name)
			m.gauge(descBBProbesLost, float64(b.ProbesLost), b.Name)
			if b.MedianRTTms != nil {
				m.gauge(descBBRTT, *b.MedianRTTms/1e3, b.Name)
			}
		}
	}
}

func (c collector) collectFIB(m sink) {
	f := c.d.fib
	st := f.Stats()
	_, over := f.Selections()
	m.gauge(descOverrides, float64(over))
	m.gauge(descFIBRoutes, float64(st.IPv4Routes), "ipv4")
	m.gauge(descFIBRoutes, float64(st.IPv6Routes), "ipv6")
	m.counter(descFIBGen, float64(f.Load().Generation()))
	m.gauge(descFIBBytes, float64(st.TrieBytes+st.SelectionBytes))
}

// collectBGP: every BGP session's state and prefixes, as /v1/bgp.
func (c collector) collectBGP(m sink) {
	for _, bs := range c.d.bgp {
		st := bs.status()
		l := []string{st.Name, st.Role, st.Neighbor}
		m.gauge(descBGPUp, boolFloat(st.State == "Established"), l...)
		m.counter(descBGPFlaps, float64(st.Flaps), l...)
		m.counter(descBGPUpdates, float64(st.UpdatesIn), append(l, "in")...)
		m.counter(descBGPUpdates, float64(st.UpdatesOut), append(l, "out")...)
		for fam, f := range map[string]BGPFamily{"ipv4": st.IPv4, "ipv6": st.IPv6} {
			m.gauge(descBGPPrefixes, float64(f.Held), append(l, fam, "held")...)
			m.gauge(descBGPPrefixes, float64(f.Announced), append(l, fam, "announced")...)
			m.counter(descBGPReceived, float64(f.Received), append(l, fam)...)
		}
		for reason, n := range st.Refused {
			m.counter(descBGPRefused, float64(n), append(l, reason)...)
		}
	}
}

// collectProbes: sampling and probing counters, and the RTTs of the
// busiest prefixes.
func (c collector) collectProbes(m sink, p *probes.Probes) {
	pc := p.Counters()
	m.counter(descRingDrops, float64(pc.RingDrops))
	m.counter(descSamples, float64(pc.Samples))
	m.counter(descRTTSamples, float64(pc.MatchedSYN), "syn")
	m.counter(descRTTSamples, float64(pc.MatchedTS), "ts")
	m.counter(descRTTSamples, float64(pc.MatchedEcho), "echo")
	m.counter(descRTTSamples, float64(pc.ProbesAnswered), "probe")
	m.counter(descProbesSent, float64(pc.ProbesSent))
	m.counter(descProbeResults, float64(pc.ProbesAnswered), "answered")
	m.counter(descProbeResults, float64(pc.ProbesLost), "lost")
	m.counter(descProbeResults, float64(pc.ProbesUnreachable), "unreachable")
	m.counter(descProbeLate, float64(pc.LateAnswers))
	m.counter(descProbeReplies, float64(pc.RepliesDropped), "queue_full")
	m.counter(descProbeReplies, float64(pc.RepliesIgnored), "not_a_probe")
	m.counter(descProbeReplies, float64(pc.RepliesUnmatched), "unmatched")
	m.counter(descProbesNotSent, float64(pc.NoPath), "no_path")
	m.counter(descProbesNotSent, float64(pc.TXFull), "tx_full")
	if inject := c.d.dp.inject; inject != nil {
		m.counter(descInjectRefuse, float64(inject.Refused()))
	}
	cfg := c.d.cfg.Load()
	top := cfg.API.MetricsTopPrefixes
	if top <= 0 {
		return
	}
	for i, ps := range p.Snapshot().Prefixes {
		if i >= top {
			break
		}
		for b, bs := range ps.Backbones {
			if bs.RTTSamples() > 0 {
				m.gauge(descPrefixRTT, bs.P50.Seconds(), ps.Prefix.String(), cfg.Backbones[b].Name)
			}
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
