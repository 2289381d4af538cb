package daemon

import (
	"net/http"
	"sort"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/optimizer"
	"github.com/pnap-project/pnap/probes"
)

// The status API's answers are exported: cmd/pnapd's client decodes them.

type Status struct {
	Version    string           `json:"version"`
	Config     string           `json:"config"`
	UptimeSec  float64          `json:"uptime_seconds"`
	Workers    int              `json:"workers"`
	IPv4Routes int              `json:"ipv4_routes"`
	IPv6Routes int              `json:"ipv6_routes"`
	Generation uint64           `json:"fib_generation"`
	Overrides  int              `json:"overrides"`
	Probes     bool             `json:"probes"`
	Optimizer  bool             `json:"optimizer"`
	Ports      []PortStatus     `json:"ports"`
	Backbones  []BackboneStatus `json:"backbones"`

	// ActiveProbes is false when probes measure from in-band samples
	// alone ([probes] active = false), or do not run.
	ActiveProbes bool `json:"active_probes"`
}

func (d *Daemon) status(*http.Request) (any, error) {
	cfg := d.cfg.Load()
	st := d.fib.Stats()
	_, over := d.fib.Selections()
	return Status{
		Version: d.version, Config: cfg.Path, UptimeSec: time.Since(d.start).Seconds(), Workers: len(d.dp.workers),
		IPv4Routes: st.IPv4Routes, IPv6Routes: st.IPv6Routes, Generation: d.fib.Load().Generation(), Overrides: over,
		Probes: d.ctl.probes != nil, Optimizer: d.ctl.opt != nil, Ports: d.ports(), Backbones: d.backbones(),
		ActiveProbes: d.ctl.probes != nil && d.ctl.probes.Active(),
	}, nil
}

type PortStatus struct {
	Name      string            `json:"name"`
	Interface string            `json:"interface"`
	Role      string            `json:"role"`
	Queues    []QueueCounters   `json:"queues"`
	Total     QueueCounters     `json:"total"`
	Drops     map[string]uint64 `json:"drops"`
}

type QueueCounters struct {
	Queue     int    `json:"queue"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Dropped   uint64 `json:"dropped"`
}

// portName is the configured name of the customer or backbone on port i.
func (d *Daemon) portName(i int) string {
	cfg := d.cfg.Load()
	if i < len(cfg.Customers) {
		return cfg.Customers[i].Name
	}
	return cfg.Backbones[i-len(cfg.Customers)].Name
}

func (d *Daemon) ports() []PortStatus {
	var out []PortStatus
	for i, p := range d.dp.plane.Ports {
		pj := PortStatus{Name: d.portName(i), Interface: p.Name, Role: roleName(p.Role), Drops: map[string]uint64{}}
		var total forwarder.PortStats
		for q, w := range d.dp.workers {
			var st forwarder.PortStats
			w.Stats(i, &st)
			w.Stats(i, &total)
			pj.Queues = append(pj.Queues, QueueCounters{Queue: q, RxPackets: st.RxPackets, RxBytes: st.RxBytes, TxPackets: st.TxPackets, TxBytes: st.TxBytes, Dropped: sum(st.Drops[:])})
		}
		pj.Total = QueueCounters{Queue: -1, RxPackets: total.RxPackets, RxBytes: total.RxBytes, TxPackets: total.TxPackets, TxBytes: total.TxBytes, Dropped: sum(total.Drops[:])}
		for r, n := range total.Drops {
			if n > 0 {
				pj.Drops[forwarder.Reason(r).String()] = n
			}
		}
		out = append(out, pj)
	}
	return out
}

func sum(xs []uint64) (n uint64) {
	for _, x := range xs {
		n += x
	}
	return n
}

type BackboneStatus struct {
	Name        string   `json:"name"`
	Interface   string   `json:"interface"`
	GatewayV4   string   `json:"gateway_v4,omitempty"`
	GatewayV6   string   `json:"gateway_v6,omitempty"`
	ResolvedV4  bool     `json:"gateway_v4_resolved"`
	ResolvedV6  bool     `json:"gateway_v6_resolved"`
	RoutesHeld  int      `json:"routes_held"`
	Selected    int      `json:"prefixes_selected"`
	TxBytes     uint64   `json:"tx_bytes"`
	Failed      bool     `json:"failed"`
	FailedUntil string   `json:"failed_until,omitempty"`
	RateBps     float64  `json:"rate_bps"`
	P95Bps      float64  `json:"p95_bps"`
	ProbesSent  uint64   `json:"probes_sent"`
	ProbesLost  uint64   `json:"probes_lost"`
	ProbeLoss   float64  `json:"probe_loss"`
	MedianRTTms *float64 `json:"median_rtt_ms,omitempty"`
}

func (d *Daemon) backbones() []BackboneStatus {
	cfg := d.cfg.Load()
	st := d.fib.Stats()
	sel, _ := d.fib.Selections()
	hops := d.dp.plane.CurrentHops()
	var snap probes.Snapshot
	if d.ctl.probes != nil {
		snap = d.ctl.probes.Snapshot()
	}
	var ostat []optimizer.BackboneStatus
	if d.ctl.opt != nil {
		ostat = d.ctl.opt.Backbones()
	}
	var out []BackboneStatus
	for i, b := range cfg.Backbones {
		j := BackboneStatus{Name: b.Name, Interface: b.Interface, RoutesHeld: st.Held[i], Selected: sel[i]}
		if b.GatewayV4.IsValid() {
			j.GatewayV4 = b.GatewayV4.String()
		}
		if b.GatewayV6.IsValid() {
			j.GatewayV6 = b.GatewayV6.String()
		}
		if hops != nil {
			j.ResolvedV4, j.ResolvedV6 = hops.Backbone[i][0].Resolved, hops.Backbone[i][1].Resolved
		}
		j.TxBytes = d.dp.portStats(int(d.dp.backbonePort[i])).TxBytes
		if i < len(ostat) {
			j.Failed, j.RateBps, j.P95Bps = ostat[i].Failed, ostat[i].RateBps, ostat[i].P95Bps
			if !ostat[i].FailedUntil.IsZero() && ostat[i].Failed {
				j.FailedUntil = ostat[i].FailedUntil.UTC().Format(time.RFC3339)
			}
		}
		if bs, ok := snap.Backbones[fib.BackboneID(i)]; ok {
			j.ProbesSent, j.ProbesLost, j.ProbeLoss = bs.ProbesSent, bs.ProbesLost, bs.Loss
		}
		if m, ok := medianRTT(snap, fib.BackboneID(i)); ok {
			j.MedianRTTms = &m
		}
		out = append(out, j)
	}
	return out
}

// medianRTT is the median over prefixes of backbone b's p50 RTT, in ms.
func medianRTT(snap probes.Snapshot, b fib.BackboneID) (float64, bool) {
	var v []float64
	for _, p := range snap.Prefixes {
		if st, ok := p.Backbones[b]; ok && st.RTTSamples() > 0 {
			v = append(v, float64(st.P50)/1e6)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	return v[len(v)/2], true
}
