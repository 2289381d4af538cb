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

// clientFlags adds the flags every client command takes.
func clientFlags(fs *flag.FlagSet) (cfg, api, token *string, asJSON *bool) {
	cfg = fs.String("c", defaultConfig, "configuration `file` whose [api] says where pnapd listens")
	api = fs.String("api", "", "pnapd's API: host:port or unix:/path (overrides -c)")
	token = fs.String("token", "", "bearer token (default: [api] token, or $PNAPD_TOKEN)")
	asJSON = fs.Bool("json", false, "print the API's JSON as it is")
	return
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

// clientCommandUpTo is clientCommand for commands whose last nargs
// arguments are optional: it wants at most nargs.
func clientCommandUpTo(name, synopsis string, nargs int, args []string, stderr io.Writer) (*apiClient, []string, bool, error) {
	return clientCommandArgs(name, synopsis, 0, nargs, args, stderr)
}

// clientCommand parses a client command's flags, wants exactly nargs
// positional arguments, and returns the client.
func clientCommand(name, synopsis string, nargs int, args []string, stderr io.Writer) (*apiClient, []string, bool, error) {
	return clientCommandArgs(name, synopsis, nargs, nargs, args, stderr)
}

func clientCommandArgs(name, synopsis string, least, most int, args []string, stderr io.Writer) (*apiClient, []string, bool, error) {
	fs := newFlags(name, synopsis, stderr)
	cfg, api, token, asJSON := clientFlags(fs)
	rest, err := parseAnywhere(fs, args)
	if err != nil {
		return nil, nil, false, err
	}
	if len(rest) < least || len(rest) > most {
		want := fmt.Sprint(most)
		if least != most {
			want = fmt.Sprintf("%d to %d", least, most)
		}
		fmt.Fprintf(stderr, "pnapd %s: want %s argument(s), got %d\n", name, want, len(rest))
		fs.Usage()
		return nil, nil, false, errUsage
	}
	c, err := newAPIClient(*cfg, *api, *token)
	return c, rest, *asJSON, err
}

func cmdStatus(args []string, stdout, stderr io.Writer) error {
	c, _, asJSON, err := clientCommand("status", "pnapd status [-c FILE | --api ADDR] [--json]", 0, args, stderr)
	if err != nil {
		return err
	}
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

func cmdFIBShow(args []string, stdout, stderr io.Writer) error {
	c, rest, asJSON, err := clientCommand("fib show", "pnapd fib show [-c FILE | --api ADDR] ADDRESS", 1, args, stderr)
	if err != nil {
		return err
	}
	var j daemon.FIBAnswer
	raw, err := c.do("GET", "/v1/fib?addr="+url.QueryEscape(rest[0]), nil, &j)
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

func cmdDecisions(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("decisions", "pnapd decisions [-c FILE | --api ADDR] [-n N]", stderr)
	cfg, api, token, asJSON := clientFlags(fs)
	n := fs.Int("n", 20, "how many of the newest decisions")
	if err := parse(fs, args); err != nil {
		return err
	}
	c, err := newAPIClient(*cfg, *api, *token)
	if err != nil {
		return err
	}
	var ds []daemon.Decision
	raw, err := c.do("GET", fmt.Sprintf("/v1/decisions?limit=%d", *n), nil, &ds)
	if err != nil {
		return err
	}
	if *asJSON {
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

func cmdPin(args []string, stdout, stderr io.Writer) error {
	c, rest, _, err := clientCommand("pin", "pnapd pin [-c FILE | --api ADDR] PREFIX BACKBONE", 2, args, stderr)
	if err != nil {
		return err
	}
	if _, err := c.do("POST", "/v1/pins", daemon.Pin{Prefix: rest[0], Backbone: rest[1]}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s pinned to %s\n", rest[0], rest[1])
	return nil
}

func cmdUnpin(args []string, stdout, stderr io.Writer) error {
	c, rest, _, err := clientCommand("unpin", "pnapd unpin [-c FILE | --api ADDR] PREFIX", 1, args, stderr)
	if err != nil {
		return err
	}
	if _, err := c.do("DELETE", "/v1/pins?prefix="+url.QueryEscape(rest[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s unpinned: back to its default backbone and the optimizer\n", rest[0])
	return nil
}

// cmdReload is what `systemctl reload pnapd` runs: it applies the
// configuration file as SIGHUP would and fails, with pnapd's reason, when
// pnapd refuses it.
func cmdReload(args []string, stdout, stderr io.Writer) error {
	c, _, asJSON, err := clientCommand("reload", "pnapd reload [-c FILE | --api ADDR]", 0, args, stderr)
	if err != nil {
		return err
	}
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

func cmdPins(args []string, stdout, stderr io.Writer) error {
	c, _, asJSON, err := clientCommand("pins", "pnapd pins [-c FILE | --api ADDR]", 0, args, stderr)
	if err != nil {
		return err
	}
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
func cmdMeasurements(args []string, stdout, stderr io.Writer) error {
	const synopsis = "pnapd measurements [-c FILE | --api ADDR] [PREFIX]"
	c, rest, asJSON, err := clientCommandUpTo("measurements", synopsis, 1, args, stderr)
	if err != nil {
		return err
	}
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
func cmdRoutes(args []string, stdout, stderr io.Writer) error {
	const synopsis = "pnapd routes [-c FILE | --api ADDR] [-n N] BACKBONE [PREFIX]"
	fs := newFlags("routes", synopsis, stderr)
	cfg, api, token, asJSON := clientFlags(fs)
	n := fs.Int("n", 1000, "at most this many routes")
	rest, err := parseAnywhere(fs, args)
	if err != nil {
		return err
	}
	if len(rest) < 1 || len(rest) > 2 {
		fmt.Fprintf(stderr, "pnapd routes: want BACKBONE and at most one PREFIX, got %d argument(s)\n", len(rest))
		fs.Usage()
		return errUsage
	}
	c, err := newAPIClient(*cfg, *api, *token)
	if err != nil {
		return err
	}
	q := url.Values{"backbone": {rest[0]}, "limit": {fmt.Sprint(*n)}}
	if len(rest) == 2 {
		q.Set("prefix", rest[1])
	}
	var rs []daemon.RouteEntry
	raw, err := c.do("GET", "/v1/routes?"+q.Encode(), nil, &rs)
	if err != nil || *asJSON {
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
