package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pnap-project/pnap/daemon"
)

// defaultConfig is where the systemd unit keeps the configuration; the
// client commands read [api] from it unless told otherwise.
const defaultConfig = "/etc/pnapd/pnapd.toml"

// apiClient talks to a running pnapd's status API.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags are the flags every client command takes.
type clientFlags struct {
	cfg, api, token string
	asJSON          bool
}

func addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := new(clientFlags)
	fs.StringVar(&f.cfg, "c", defaultConfig, "configuration `file` whose [api] says where pnapd listens")
	fs.StringVar(&f.api, "api", "", "pnapd's API: host:port or unix:/path (overrides -c)")
	fs.StringVar(&f.token, "token", "", "bearer token (default: [api] token, or $PNAPD_TOKEN)")
	fs.BoolVar(&f.asJSON, "json", false, "print the API's JSON as it is")
	return f
}

func (f *clientFlags) client() (*apiClient, error) {
	return newAPIClient(f.cfg, f.api, f.token)
}

// clientOnly defines a client command whose flags are clientFlags alone:
// do gets the client, least to most arguments, and --json.
func clientOnly(least, most int, do func(c *apiClient, args []string, asJSON bool, stdout io.Writer) error) func(*flag.FlagSet) action {
	return func(fs *flag.FlagSet) action {
		f := addClientFlags(fs)
		return func(args []string, _ io.Reader, stdout, _ io.Writer) error {
			if len(args) < least || len(args) > most {
				want := fmt.Sprint(most)
				if least != most {
					want = fmt.Sprintf("%d to %d", least, most)
				}
				fmt.Fprintf(fs.Output(), "pnapd %s: want %s argument(s), got %d\n", fs.Name(), want, len(args))
				fs.Usage()
				return errUsage
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			return do(c, args, f.asJSON, stdout)
		}
	}
}

func newAPIClient(cfgPath, api, token string) (*apiClient, error) {
	if api == "" {
		cfg, err := daemon.LoadConfig(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("%w (or give --api host:port)", err)
		}
		api = cfg.API.Listen
		if token == "" {
			token = cfg.API.Token
		}
	}
	if token == "" {
		token = os.Getenv("PNAPD_TOKEN")
	}
	c := &apiClient{token: token, http: &http.Client{Timeout: 10 * time.Second}}
	if path, ok := strings.CutPrefix(api, "unix:"); ok {
		c.base = "http://pnapd"
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
	} else {
		host, port, err := net.SplitHostPort(api)
		if err != nil {
			return nil, fmt.Errorf("API address %q: %w", api, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.base = "http://" + net.JoinHostPort(host, port)
	}
	return c, nil
}

// do sends a request and decodes the JSON answer into out (if not nil).
// It returns the raw body too, for --json.
func (c *apiClient) do(method, path string, body any, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is pnapd running, with [api] enabled?)", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return raw, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return raw, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decoding the answer: %w", err)
		}
	}
	return raw, nil
}

func cmdStatus(c *apiClient, _ []string, asJSON bool, stdout io.Writer) error {
	var st daemon.Status
	raw, err := c.do("GET", "/v1/status", nil, &st)
	if err != nil {
		return err
	}
	if asJSON {
		stdout.Write(raw)
		return nil
	}
	probes := fmt.Sprint(st.Probes)
	if st.Probes && !st.ActiveProbes {
		probes = "passive only"
	}
	fmt.Fprintf(stdout, "pnapd %s, up %s, %d worker(s); FIB: %d IPv4 + %d IPv6 routes, generation %d, %d overrides; probes %s, optimizer %v\n\n",
		st.Version, (time.Duration(st.UptimeSec) * time.Second).String(), st.Workers, st.IPv4Routes, st.IPv6Routes, st.Generation, st.Overrides, probes, st.Optimizer)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tINTERFACE\tROLE\tRX PKTS\tTX PKTS\tDROPPED\tDROPS BY REASON")
	for _, p := range st.Ports {
		var reasons []string
		for r, n := range p.Drops {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
		}
		sort.Strings(reasons)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", p.Name, p.Interface, p.Role, p.Total.RxPackets, p.Total.TxPackets, p.Total.Dropped, strings.Join(reasons, " "))
	}
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKBONE\tINTERFACE\tGATEWAY\tROUTES\tSELECTED\tRATE\tRTT (median)\tPROBE LOSS\tSTATE")
	for _, b := range st.Backbones {
		gw := b.GatewayV4
		if gw == "" {
			gw = b.GatewayV6
		}
		if !b.ResolvedV4 && !b.ResolvedV6 {
			gw += " (unresolved)"
		}
		rtt := "-"
		if b.MedianRTTms != nil {
			rtt = fmt.Sprintf("%.1f ms", *b.MedianRTTms)
		}
		state := "ok"
		if b.Failed {
			state = "FAILED until " + b.FailedUntil
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.1f Mb/s\t%s\t%.1f %%\t%s\n", b.Name, b.Interface, gw, b.RoutesHeld, b.Selected, b.RateBps/1e6, rtt, 100*b.ProbeLoss, state)
	}
	return tw.Flush()
}

func cmdFIBShow(c *apiClient, args []string, asJSON bool, stdout io.Writer) error {
	var j daemon.FIBAnswer
	raw, err := c.do("GET", "/v1/fib?addr="+url.QueryEscape(args[0]), nil, &j)
	if err != nil {
		return err
	}
	if asJSON {
		stdout.Write(raw)
		return nil
	}
	fmt.Fprintf(stdout, "%s: %s via %s (%s; default %s; held by %s)\n", j.Address, j.Prefix, j.Backbone, j.Why, j.Default, strings.Join(j.Holders, ", "))
	return nil
}

func defineDecisions(fs *flag.FlagSet) action {
	f := addClientFlags(fs)
	n := fs.Int("n", 20, "how many of the newest decisions")
	return func(args []string, _ io.Reader, stdout, _ io.Writer) error {
		if err := noArgs(fs, args); err != nil {
			return err
		}
		c, err := f.client()
		if err != nil {
			return err
		}
		return cmdDecisions(c, *n, f.asJSON, stdout)
	}
}

func cmdDecisions(c *apiClient, n int, asJSON bool, stdout io.Writer) error {
	var ds []daemon.Decision
	raw, err := c.do("GET", fmt.Sprintf("/v1/decisions?limit=%d", n), nil, &ds)
	if err != nil {
		return err
	}
	if asJSON {
		stdout.Write(raw)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tPREFIX\tFROM\tTO\tREASON\tSCORE FROM -> TO (ms)")
	for _, d := range ds {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.1f -> %.1f\n", d.Time, d.Prefix, d.From, d.To, d.Reason, d.FromMs, d.ToMs)
	}
	return tw.Flush()
}

func cmdPin(c *apiClient, rest []string, _ bool, stdout io.Writer) error {
	if _, err := c.do("POST", "/v1/pins", daemon.Pin{Prefix: rest[0], Backbone: rest[1]}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s pinned to %s\n", rest[0], rest[1])
	return nil
}

func cmdUnpin(c *apiClient, rest []string, _ bool, stdout io.Writer) error {
	if _, err := c.do("DELETE", "/v1/pins?prefix="+url.QueryEscape(rest[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s unpinned: back to its default backbone and the optimizer\n", rest[0])
	return nil
}

// cmdReload is what `systemctl reload pnapd` runs: it applies the
// configuration file as SIGHUP would and fails, with pnapd's reason, when
// pnapd refuses it.
func cmdReload(c *apiClient, _ []string, asJSON bool, stdout io.Writer) error {
	// A reload reads every changed route source: a full table takes
	// seconds, several take longer than the other commands wait.
	c.http.Timeout = 90 * time.Second
	var ans struct {
		Reloaded string `json:"reloaded"`
		Took     string `json:"took"`
	}
	raw, err := c.do("POST", "/v1/reload", nil, &ans)
	if err != nil {
		return err
	}
	if asJSON {
		fmt.Fprintf(stdout, "%s\n", raw)
		return nil
	}
	fmt.Fprintf(stdout, "reloaded %s in %s\n", ans.Reloaded, ans.Took)
	return nil
}

func cmdPins(c *apiClient, _ []string, asJSON bool, stdout io.Writer) error {
	var pins []daemon.Pin
	raw, err := c.do("GET", "/v1/pins", nil, &pins)
	if err != nil || asJSON {
		stdout.Write(raw)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tBACKBONE\tSINCE")
	for _, p := range pins {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Prefix, p.Backbone, p.Since)
	}
	return tw.Flush()
}

// cmdMeasurements prints what probes know of the busiest prefixes, or of
// one: per backbone, RTT percentiles, loss and samples.
func cmdMeasurements(c *apiClient, rest []string, asJSON bool, stdout io.Writer) error {
	var ms []daemon.Measurement
	if _, err := c.do("GET", "/v1/measurements?limit=100000", nil, &ms); err != nil {
		return err
	}
	if len(rest) == 1 {
		ms = slices.DeleteFunc(ms, func(m daemon.Measurement) bool { return m.Prefix != rest[0] })
		if len(ms) == 0 {
			return fmt.Errorf("%s is not among the measured prefixes (probes measure the busiest [probes] top_prefixes)", rest[0])
		}
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(ms)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tPPS\tBACKBONE\tSELECTED\tMIN ms\tP50 ms\tP95 ms\tLOSS\tSAMPLES")
	for _, m := range ms {
		names := slices.Sorted(maps.Keys(m.Backbones))
		for _, name := range names {
			b := m.Backbones[name]
			sel := ""
			if name == m.Selected {
				sel = "*"
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%.1f\t%.1f\t%.1f\t%.3f\t%d\n", m.Prefix, m.TrafficPPS, name, sel, b.MinMs, b.P50Ms, b.P95Ms, b.Loss, b.Passive+b.Active)
		}
	}
	return tw.Flush()
}

// cmdRoutes lists what a backbone holds, like birdc show route protocol X.
func defineRoutes(fs *flag.FlagSet) action {
	f := addClientFlags(fs)
	n := fs.Int("n", 1000, "at most this many routes")
	return func(args []string, _ io.Reader, stdout, stderr io.Writer) error {
		if len(args) < 1 || len(args) > 2 {
			fmt.Fprintf(stderr, "pnapd routes: want BACKBONE and at most one PREFIX, got %d argument(s)\n", len(args))
			fs.Usage()
			return errUsage
		}
		c, err := f.client()
		if err != nil {
			return err
		}
		return cmdRoutes(c, args, *n, f.asJSON, stdout)
	}
}

func cmdRoutes(c *apiClient, rest []string, n int, asJSON bool, stdout io.Writer) error {
	q := url.Values{"backbone": {rest[0]}, "limit": {fmt.Sprint(n)}}
	if len(rest) == 2 {
		q.Set("prefix", rest[1])
	}
	var rs []daemon.RouteEntry
	raw, err := c.do("GET", "/v1/routes?"+q.Encode(), nil, &rs)
	if err != nil || asJSON {
		stdout.Write(raw)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tAS PATH LENGTH\tSELECTED")
	for _, r := range rs {
		pl, sel := "-", ""
		if r.PathLen >= 0 {
			pl = fmt.Sprint(r.PathLen)
		}
		if r.Selected {
			sel = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Prefix, pl, sel)
	}
	return tw.Flush()
}
