package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// A corpus of malformed and edge-case frames, interleaved with good
// traffic, into a customer port of a running pnapd: it keeps running,
// every frame is counted (forwarded, dropped under a reason, or given to
// the kernel under a reason), nothing malformed leaves a backbone port, and
// all the good traffic arrives.
func TestMalformedTrafficThroughPnapd(t *testing.T) {
	x := newAPILab(t, nil)
	caps := map[string]*lab.Capture{"bb-a": x.al.Capture(t), "bb-b": x.bl.Capture(t), "bb-c": x.dl.Capture(t)}
	warmUp(t, x)

	corpus := buildCorpus(x.cl.MAC, x.pc0.MAC, 200)
	seen := make(map[string][][]byte)
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for name, c := range caps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if f, err := c.Next(50 * time.Millisecond); err == nil {
					mu.Lock()
					seen[name] = append(seen[name], f)
					mu.Unlock()
				}
			}
		}()
	}
	before := scrapePort(t, x, "pnap-c0")
	txBefore := txPackets(t, x.cust, "c")
	for _, f := range corpus {
		if err := x.cl.SendFrame(f.frame); err != nil {
			t.Fatalf("%s (%d bytes): %v", f.name, len(f.frame), err)
		}
	}
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	after := scrapePort(t, x, "pnap-c0")
	sent := txPackets(t, x.cust, "c") - txBefore

	select {
	case <-x.logs.Exited():
		t.Fatalf("pnapd exited:\n%s", x.logs)
	default:
	}
	d := after.delta(before)
	checkAccounting(t, corpus, d, sent)
	forwarded := checkCaptures(t, corpus, seen)
	// What the worker received it forwarded or dropped under a reason
	// (the slow path's, too).
	if d["rx"] != float64(forwarded)+d.sum("drop/") {
		t.Errorf("pnap-c0 received %v frames: %d forwarded, %v dropped", d["rx"], forwarded, d.sum("drop/"))
	}
}

// warmUpIndex marks the warm-up's frames, which may still arrive while the
// corpus is captured.
const warmUpIndex = 0xffffffff

// warmUp sends good frames of each family until one arrives, so that
// pnapd has resolved backbone a's gateways before the corpus runs.
func warmUp(t *testing.T, x *apiLab) {
	t.Helper()
	b := &corpusBuilder{src: x.cl.MAC, dst: x.pc0.MAC}
	for _, s := range []packetSpec{{src: cust4, dst: transit4}, {src: cust6, dst: transit6}} {
		f := b.eth(b.udp(s), false)
		binary.BigEndian.PutUint32(f[indexOf(f, corpusMarker)+8:], warmUpIndex)
		c := x.al.Capture(t)
		arrived := false
		for deadline := time.Now().Add(5 * time.Second); !arrived && time.Now().Before(deadline); {
			if err := x.cl.SendFrame(f); err != nil {
				t.Fatal(err)
			}
			_, err := c.NextMatch(50*time.Millisecond, func(g []byte) bool { return bytes.Contains(g, corpusMarker) })
			arrived = err == nil
		}
		c.Close()
		if !arrived {
			t.Fatalf("nothing from %v reached backbone a within 5 s:\n%s", s.dst, x.logs)
		}
	}
}

func txPackets(t *testing.T, ns *lab.NS, name string) uint64 {
	t.Helper()
	l, err := ns.Handle().LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Statistics.TxPackets
}

// portCounts are one port's counters from /metrics, summed over queues:
// "rx", "drop/<reason>", "passed/<reason>", "xsk/<reason>".
type portCounts map[string]float64

func scrapePort(t *testing.T, x *apiLab, iface string) portCounts {
	t.Helper()
	fams := scrapeMetrics(t, x.c)
	port := portOn(t, fams, iface)
	out := portCounts{}
	for name, key := range map[string]string{"pnap_port_packets_total": "direction", "pnap_port_drops_total": "reason", "pnap_xdp_passed_total": "reason", "pnap_xsk_drops_total": "reason"} {
		prefix := map[string]string{"pnap_port_packets_total": "", "pnap_port_drops_total": "drop/", "pnap_xdp_passed_total": "passed/", "pnap_xsk_drops_total": "xsk/"}[name]
		if fams[name] == nil {
			t.Fatalf("metric %s missing", name)
		}
		for _, m := range fams[name].GetMetric() {
			if l := metricLabels(m); l["port"] == port {
				out[prefix+l[key]] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func (c portCounts) delta(before portCounts) portCounts {
	d := portCounts{}
	for k, v := range c {
		if v-before[k] != 0 {
			d[k] = v - before[k]
		}
	}
	return d
}

func (c portCounts) sum(prefix string) float64 {
	var n float64
	for k, v := range c {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

func (c portCounts) String() string {
	var ks []string
	for k, v := range c {
		ks = append(ks, fmt.Sprintf("%s=%v", k, v))
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

// checkAccounting: every frame the customer's end sent is either given to
// the kernel by the XDP program or received by a worker (both under a
// reason when not forwarded), and the reasons the corpus must hit are hit.
func checkAccounting(t *testing.T, corpus []corpusFrame, d portCounts, sent uint64) {
	t.Helper()
	t.Logf("%d frames in the corpus, %d sent by the customer's end; pnap-c0: %v", len(corpus), sent, d)
	if sent < uint64(len(corpus)) {
		t.Fatalf("the customer's end sent %d frames, fewer than the corpus's %d", sent, len(corpus))
	}
	if got := d.sum("passed/") + d["rx"] + d.sum("xsk/"); got != float64(sent) {
		t.Errorf("pnap-c0 accounts for %v frames (given to the kernel %v, received %v, socket drops %v) of the %d sent", got, d.sum("passed/"), d["rx"], d.sum("xsk/"), sent)
	}
	for _, k := range []string{"drop/malformed", "drop/martian", "drop/ttl", "drop/other_host", "drop/no_route", "passed/short", "passed/not_ip", "passed/multicast"} {
		if d[k] == 0 {
			t.Errorf("no frame counted under %s", k)
		}
	}
	// Nothing the corpus sends fills a ring: a socket drop would hide a
	// frame from the reasons.
	if d.sum("xsk/") != 0 || d["drop/tx_ring_full"] != 0 {
		t.Errorf("frames dropped for want of room: %v", d)
	}
}

// checkCaptures: every IP frame on a backbone is well-formed; no bad
// frame of the corpus is among them; every good one arrived on backbone a
// exactly once with its TTL decremented. It returns how many of the
// corpus's frames were forwarded.
func checkCaptures(t *testing.T, corpus []corpusFrame, seen map[string][][]byte) int {
	t.Helper()
	arrived := make(map[int]int)
	edges := 0
	for bb, frames := range seen {
		for _, f := range frames {
			if kernelControl(f) {
				continue // the kernel's own neighbour discovery and MLD
			}
			if why := malformedIP(f); why != "" {
				t.Errorf("a malformed frame left %s (%s): %x", bb, why, f)
				continue
			}
			at := indexOf(f, corpusMarker)
			if at < 0 || at+12 > len(f) {
				continue // pnapd's own: ARP, neighbour discovery, probes
			}
			i := int(binary.BigEndian.Uint32(f[at+8:]))
			if i == warmUpIndex {
				continue
			}
			if i >= len(corpus) {
				t.Errorf("%s: a frame marked %d, past the corpus", bb, i)
				continue
			}
			switch c := corpus[i]; c.kind {
			case kindBad:
				t.Errorf("%q (corpus frame %d) left %s: %x", c.name, i, bb, f)
			case kindEdge:
				edges++
			case kindGood:
				arrived[i]++
				if bb != "bb-a" || ttlOf(f) != 63 {
					t.Errorf("%s frame %d arrived on %s with TTL %d", c.name, i, bb, ttlOf(f))
				}
			}
		}
	}
	goods := 0
	for i, c := range corpus {
		if c.kind != kindGood {
			continue
		}
		goods++
		if arrived[i] != 1 {
			t.Errorf("%s frame %d arrived %d times", c.name, i, arrived[i])
		}
	}
	t.Logf("%d good frames arrived, %d edge-case frames forwarded", goods, edges)
	n := edges
	for _, k := range arrived {
		n += k
	}
	return n
}

// kernelControl: frames pnapd never forwards, which the kernel of pnap's
// namespace sends out of the backbone ports itself: to a multicast MAC,
// or ICMPv6 neighbour discovery and MLD.
func kernelControl(f []byte) bool {
	if f[0]&1 == 1 {
		return true
	}
	if len(f) > 54 && binary.BigEndian.Uint16(f[12:14]) == 0x86dd && f[14+6] == 58 {
		typ := f[54]
		return typ >= 130 && typ <= 137 || typ == 143
	}
	return false
}

// malformedIP says what is wrong with an IPv4 or IPv6 frame (untagged, as
// pnap sends them), or "" if nothing is or it is neither.
func malformedIP(f []byte) string {
	if len(f) < 14 {
		return "runt"
	}
	ip := f[14:]
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return "IPv4 header"
		}
		ihl, total := int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:4]))
		// Ethernet pads short frames to 60 bytes.
		if ihl < 20 || total < ihl || total > len(ip) || total < len(ip) && len(f) > 60 {
			return fmt.Sprintf("IHL %d, total length %d, %d bytes", ihl, total, len(ip))
		}
		if inetSum(ip[:ihl], 0) != 0 {
			return "header checksum"
		}
		if martianAddr(netip.AddrFrom4([4]byte(ip[12:16]))) || martianAddr(netip.AddrFrom4([4]byte(ip[16:20]))) {
			return "martian address"
		}
	case 0x86dd:
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return "IPv6 header"
		}
		if plen := int(binary.BigEndian.Uint16(ip[4:6])); 40+plen != len(ip) && !(40+plen < len(ip) && len(f) <= 60) {
			return fmt.Sprintf("payload length %d, %d bytes", plen, len(ip))
		}
		if martianAddr(netip.AddrFrom16([16]byte(ip[8:24]))) || martianAddr(netip.AddrFrom16([16]byte(ip[24:40]))) {
			return "martian address"
		}
	case 0x8100, 0x88a8:
		return "still tagged"
	}
	return ""
}

func martianAddr(a netip.Addr) bool {
	if a.Is4() {
		b := a.As4()
		return b[0] == 0 || b[0] == 127 || b[0] >= 224 || b[0] == 169 && b[1] == 254
	}
	return a.IsUnspecified() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.Is4In6()
}

func ttlOf(f []byte) int {
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		return int(f[14+8])
	case 0x86dd:
		return int(f[14+7])
	}
	return -1
}
