//go:build linux

package bgpbench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/topo"
)

// receiver is pnapd or the BIRD receiver, as the measurements see it.
type receiver interface {
	// pid is the receiver's process.
	pid() int
	// sample reads the receiver's counters now.
	sample() (sample, error)
	// flapPeer is the receiver's address toward the speaker.
	flapPeer() netip.Addr
	stop()
}

// sample is what a receiver says at one moment.
type sample struct {
	At      time.Time // when it was asked (the middle of the request)
	Up      int       // feed sessions Established
	FirstUp time.Time // when the earliest of them was established
	// Installed is the routes of the feed sessions the receiver holds:
	// pnapd's in its FIB, BIRD's in its table.
	Installed int
	FlapUp    bool
	// FlapChanges counts the prefixes the flap session received,
	// announced or withdrawn; FlapHeld is how many it holds.
	FlapChanges uint64
	FlapHeld    int
}

// pnapdReceiver is pnapd in topo's DUT namespace, with 4 fed backbones
// and the speaker's.
type pnapdReceiver struct {
	l   *labLayout
	p   *topo.Pnapd
	api *http.Client
}

// startPnapd writes pnapd's configuration and starts it; it returns once
// pnapd forwards.
func startPnapd(tb testing.TB, l *labLayout, binary string) *pnapdReceiver {
	tb.Helper()
	dir := tb.TempDir()
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "api.sock")
	conf := filepath.Join(dir, "pnapd.toml")
	if err := os.WriteFile(conf, []byte(l.pnapdConfig(sock)), 0o644); err != nil {
		tb.Fatal(err)
	}
	p, ready := topo.StartPnapd(tb, exec.Command(binary, "run", "-c", conf), l.x.DUT.Do)
	if !ready {
		tb.Fatalf("pnapd did not start:\n%s", p)
	}
	return &pnapdReceiver{l: l, p: p, api: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}}
}

// pnapdConfig: every backbone learns its routes from the router in its
// namespace only, over one session carrying both families; the import
// policy takes the whole table (lab addresses, host routes and all), as
// BIRD's import all does.
func (l *labLayout) pnapdConfig(sock string) string {
	x := l.x
	var b strings.Builder
	fmt.Fprintf(&b, "[forwarder]\nqueues = 1\nxdp_mode = \"native\"\n\n[bgp]\nlocal_as = %d\nrouter_id = %q\n", localAS, x.Backbones[0].Addr4.Addr())
	fmt.Fprintf(&b, "\n[[customer]]\nname = \"source\"\ninterface = %q\naddress_v4 = %q\naddress_v6 = %q\n", x.Customer.Name, x.CustomerAddr4, x.CustomerAddr6)
	for i, bb := range x.Backbones {
		as := feederAS + i
		if i == feeders {
			as = speakerAS
		}
		fmt.Fprintf(&b, "\n[[backbone]]\nname = %q\ninterface = %q\ngateway_v4 = %q\ngateway_v6 = %q\n", bb.Name, bb.Port.Name, bb.Gateway4, bb.Gateway6)
		fmt.Fprintf(&b, "\n  [backbone.bgp]\n  neighbors = [%q]\n  peer_as = %d\n  allow_default = true\n  allow_martians = true\n  max_length_v4 = 32\n  max_length_v6 = 128\n",
			bb.Gateway4, as)
	}
	fmt.Fprintf(&b, "\n[api]\nlisten = \"unix:%s\"\n\n[state]\ndir = \"\"\n", sock)
	return b.String()
}

func (r *pnapdReceiver) pid() int             { return r.p.Cmd.Process.Pid }
func (r *pnapdReceiver) flapPeer() netip.Addr { return r.l.x.Backbones[feeders].Addr4.Addr() }
func (r *pnapdReceiver) stop()                { r.p.Stop() }

// bgpSession is the part of GET /v1/bgp (daemon.BGPSession) read here.
type bgpSession struct {
	Name      string  `json:"name"`
	State     string  `json:"state"`
	UptimeSec float64 `json:"uptime_seconds"`
	IPv4      struct {
		Received, Withdrawn uint64
		Held                int
	} `json:"ipv4"`
	IPv6 struct {
		Held int
	} `json:"ipv6"`
}

func (r *pnapdReceiver) sample() (sample, error) {
	before := time.Now()
	var ss []bgpSession
	if err := r.get("/v1/bgp", &ss); err != nil {
		return sample{}, err
	}
	s := sample{At: before.Add(time.Since(before) / 2)}
	for _, bs := range ss {
		up := bs.State == "Established"
		if bs.Name == r.l.x.Backbones[feeders].Name {
			s.FlapUp, s.FlapChanges, s.FlapHeld = up, bs.IPv4.Received+bs.IPv4.Withdrawn, bs.IPv4.Held
			continue
		}
		s.Installed += bs.IPv4.Held + bs.IPv6.Held
		if up {
			s.Up++
			if t := s.At.Add(-time.Duration(bs.UptimeSec * float64(time.Second))); s.FirstUp.IsZero() || t.Before(s.FirstUp) {
				s.FirstUp = t
			}
		}
	}
	return s, nil
}

// get fetches a JSON document from pnapd's API.
func (r *pnapdReceiver) get(path string, out any) error {
	return topo.GetJSON(r.api, path, out)
}

// birdReceiver is a BIRD receiving the same feeds in a namespace of its
// own, keeping every route in its table (no kernel protocol: BIRD's table
// is the counterpart of pnapd's FIB).
type birdReceiver struct {
	l *labLayout
	b *bird
}

func startBIRDReceiver(tb testing.TB, l *labLayout) *birdReceiver {
	tb.Helper()
	return &birdReceiver{l: l, b: startBIRD(tb, l.bird, l.rcv, "receiver", l.dir, l.birdConfig())}
}

// birdConfig: a session to each feeder and to the speaker, importing
// everything; protocol times in milliseconds for the convergence time.
func (l *labLayout) birdConfig() string {
	var b strings.Builder
	fmt.Fprintf(&b, "log stderr { info, warning, error, fatal, bug };\nrouter id %s;\ntimeformat protocol iso long ms;\nprotocol device { }\n", rcvAddr4(0, true))
	for i := range l.x.Backbones {
		name, as, channels := fmt.Sprintf("feed%d", i), feederAS+i, "\tipv4 { import all; export none; };\n\tipv6 { import all; export none; };\n"
		if i == feeders {
			name, as, channels = "flap", speakerAS, "\tipv4 { import all; export none; };\n"
		}
		fmt.Fprintf(&b, "protocol bgp %s {\n\tlocal %s as %d;\n\tneighbor %s as %d;\n\tconnect delay time 1;\n%s}\n",
			name, rcvAddr4(i, true), localAS, rcvAddr4(i, false), as, channels)
	}
	return b.String()
}

func (r *birdReceiver) pid() int             { return r.b.pid() }
func (r *birdReceiver) flapPeer() netip.Addr { return rcvAddr4(feeders, true) }
func (r *birdReceiver) stop()                { r.b.stop() }

func (r *birdReceiver) sample() (sample, error) {
	before := time.Now()
	ps, err := r.b.protocols()
	if err != nil {
		return sample{}, err
	}
	s := sample{At: before.Add(time.Since(before) / 2)}
	for name, p := range ps {
		up := p.State == "up" && strings.HasPrefix(p.Info, "Established")
		switch {
		case name == "flap":
			s.FlapUp, s.FlapChanges, s.FlapHeld = up, p.Updates+p.Withdraws, p.Imported
		case strings.HasPrefix(name, "feed"):
			s.Installed += p.Imported
			if up {
				s.Up++
				if s.FirstUp.IsZero() || p.Since.Before(s.FirstUp) {
					s.FirstUp = p.Since
				}
			}
		}
	}
	return s, nil
}

// procStatus is a process's VmHWM (peak RSS) and VmRSS in bytes, and the
// CPU time it used, from /proc.
func procStatus(pid int) (hwm, rss int64, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmHWM":
			hwm = n << 10
		case "VmRSS":
			rss = n << 10
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return hwm, rss, 0, err
	}
	// Fields after the command (which may hold spaces) start at state,
	// field 3; utime and stime are fields 14 and 15, in clock ticks
	// (USER_HZ, 100 on Linux).
	s := string(st)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return hwm, rss, 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return hwm, rss, time.Duration(ut+stt) * 10 * time.Millisecond, nil
}
