package main

import (
	"fmt"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/prometheus/client_golang/prometheus"
)

// collector reads pnapd's counters when Prometheus scrapes, so nothing on
// the fast path knows about metrics. Label cardinality is bounded: ports,
// queues, drop reasons, backbones, decision reasons, and per-prefix series
// only for the busiest [api] metrics_top_prefixes prefixes.
type collector struct {
	s *daemon
}

var (
	descPortPackets  = prometheus.NewDesc("pnap_port_packets_total", "Packets by port, queue and direction (rx, tx).", []string{"port", "interface", "queue", "direction"}, nil)
	descPortBytes    = prometheus.NewDesc("pnap_port_bytes_total", "Bytes by port, queue and direction (rx, tx).", []string{"port", "interface", "queue", "direction"}, nil)
	descPortDrops    = prometheus.NewDesc("pnap_port_drops_total", "Packets received and not forwarded, by port, queue and reason.", []string{"port", "interface", "queue", "reason"}, nil)
	descBBTxBytes    = prometheus.NewDesc("pnap_backbone_tx_bytes_total", "Bytes sent out of each backbone's port.", []string{"backbone"}, nil)
	descBBSelected   = prometheus.NewDesc("pnap_backbone_prefixes_selected", "Prefixes whose traffic each backbone carries now.", []string{"backbone"}, nil)
	descBBHeld       = prometheus.NewDesc("pnap_backbone_routes_held", "Routes each backbone holds.", []string{"backbone"}, nil)
	descBBProbeLoss  = prometheus.NewDesc("pnap_backbone_probe_loss_ratio", "Share of each backbone's recent active probes that went unanswered.", []string{"backbone"}, nil)
	descBBProbes     = prometheus.NewDesc("pnap_backbone_probes_recent", "Active probes in the store's window, by backbone and outcome (sent, lost).", []string{"backbone", "outcome"}, nil)
	descBBRTT        = prometheus.NewDesc("pnap_backbone_rtt_seconds", "Median over measured prefixes of each backbone's median RTT.", []string{"backbone"}, nil)
	descBBFailed     = prometheus.NewDesc("pnap_backbone_failed", "1 while the optimizer holds the backbone failed.", []string{"backbone"}, nil)
	descPrefixRTT    = prometheus.NewDesc("pnap_prefix_rtt_seconds", "Median RTT of the busiest prefixes by backbone (bounded by [api] metrics_top_prefixes).", []string{"prefix", "backbone"}, nil)
	descDecisions    = prometheus.NewDesc("pnap_optimizer_decisions_total", "Selection changes by the optimizer (and pins), by reason.", []string{"reason"}, nil)
	descBlocked      = prometheus.NewDesc("pnap_optimizer_blocked_total", "Moves not made, by limit (commit, capacity, max_overrides).", []string{"limit"}, nil)
	descOverrides    = prometheus.NewDesc("pnap_fib_overrides", "Prefixes routed away from their default backbone.", nil, nil)
	descFIBRoutes    = prometheus.NewDesc("pnap_fib_routes", "Distinct prefixes in the FIB by family.", []string{"family"}, nil)
	descFIBGen       = prometheus.NewDesc("pnap_fib_generation", "FIB versions published (grows with every route change).", nil, nil)
	descFIBBytes     = prometheus.NewDesc("pnap_fib_lookup_bytes", "Bytes of the lookup structure (trie nodes, root pages, selections).", nil, nil)
	descRingDrops    = prometheus.NewDesc("pnap_sample_ring_drops_total", "In-band samples dropped because a worker's ring was full.", nil, nil)
	descSamples      = prometheus.NewDesc("pnap_samples_total", "In-band samples read by probes.", nil, nil)
	descRTTSamples   = prometheus.NewDesc("pnap_rtt_samples_total", "RTT samples by source (syn, ts, echo: passive; probe: active).", []string{"source"}, nil)
	descProbesSent   = prometheus.NewDesc("pnap_probes_total", "Active probes by outcome (sent, answered, lost, unreachable, not_sent_no_path, not_sent_tx_full).", []string{"outcome"}, nil)
	descInjectRefuse = prometheus.NewDesc("pnap_probe_inject_refused_total", "Probe frames the workers' inject ring refused.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	for i, p := range s.d.plane.Ports {
		name := s.portName(i)
		for q, w := range s.d.workers {
			var st forwarder.PortStats
			w.Stats(i, &st)
			qs := fmt.Sprint(q)
			counter(descPortPackets, float64(st.RxPackets), name, p.Name, qs, "rx")
			counter(descPortPackets, float64(st.TxPackets), name, p.Name, qs, "tx")
			counter(descPortBytes, float64(st.RxBytes), name, p.Name, qs, "rx")
			counter(descPortBytes, float64(st.TxBytes), name, p.Name, qs, "tx")
			for r, n := range st.Drops {
				if forwarder.Reason(r) != forwarder.ReasonNone {
					counter(descPortDrops, float64(n), name, p.Name, qs, forwarder.Reason(r).String())
				}
			}
		}
	}
	st := s.fib.Stats()
	_, over := s.fib.Selections()
	for _, b := range s.backbones() {
		counter(descBBTxBytes, float64(b.TxBytes), b.Name)
		gauge(descBBSelected, float64(b.Selected), b.Name)
		gauge(descBBHeld, float64(b.RoutesHeld), b.Name)
		gauge(descBBFailed, boolFloat(b.Failed), b.Name)
		if s.ctl.probes != nil {
			gauge(descBBProbeLoss, b.ProbeLoss, b.Name)
			gauge(descBBProbes, float64(b.ProbesSent), b.Name, "sent")
			gauge(descBBProbes, float64(b.ProbesLost), b.Name, "lost")
			if b.MedianRTTms != nil {
				gauge(descBBRTT, *b.MedianRTTms/1e3, b.Name)
			}
		}
	}
	gauge(descOverrides, float64(over))
	gauge(descFIBRoutes, float64(st.IPv4Routes), "ipv4")
	gauge(descFIBRoutes, float64(st.IPv6Routes), "ipv6")
	counter(descFIBGen, float64(s.fib.Load().Generation()))
	gauge(descFIBBytes, float64(st.TrieBytes+st.SelectionBytes))
	if p := s.ctl.probes; p != nil {
		pc := p.Counters()
		counter(descRingDrops, float64(pc.RingDrops))
		counter(descSamples, float64(pc.Samples))
		counter(descRTTSamples, float64(pc.MatchedSYN), "syn")
		counter(descRTTSamples, float64(pc.MatchedTS), "ts")
		counter(descRTTSamples, float64(pc.MatchedEcho), "echo")
		counter(descRTTSamples, float64(pc.ProbesAnswered), "probe")
		counter(descProbesSent, float64(pc.ProbesSent), "sent")
		counter(descProbesSent, float64(pc.ProbesAnswered), "answered")
		counter(descProbesSent, float64(pc.ProbesLost), "lost")
		counter(descProbesSent, float64(pc.ProbesUnreachable), "unreachable")
		counter(descProbesSent, float64(pc.NoPath), "not_sent_no_path")
		counter(descProbesSent, float64(pc.TXFull), "not_sent_tx_full")
		if top := s.cfg.API.MetricsTopPrefixes; top > 0 {
			snap := p.Snapshot()
			for i, ps := range snap.Prefixes {
				if i == top {
					break
				}
				for b, bs := range ps.Backbones {
					if bs.RTTSamples() > 0 {
						gauge(descPrefixRTT, bs.P50.Seconds(), ps.Prefix.String(), s.cfg.Backbones[b].Name)
					}
				}
			}
		}
	}
	if s.d.inject != nil {
		counter(descInjectRefuse, float64(s.d.inject.Refused()))
	}
	if o := s.ctl.opt; o != nil {
		oc := o.Counters()
		for r := optimizer.Reason(0); r < optimizer.NumReasons; r++ {
			counter(descDecisions, float64(oc.Moves[r]), r.String())
		}
		counter(descBlocked, float64(oc.BlockedCommit), "commit")
		counter(descBlocked, float64(oc.BlockedCapacity), "capacity")
		counter(descBlocked, float64(oc.BlockedCap), "max_overrides")
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
