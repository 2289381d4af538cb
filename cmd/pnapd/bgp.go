package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/pnap-project/pnap/daemon"
)

// cmdBGP prints every BGP session of a running pnapd, like birdc's
// "show protocols": state, uptime, and per family what the peer sent,
// what pnapd took and holds, and what it announces.
func cmdBGP(c *apiClient, _ []string, asJSON bool, stdout io.Writer) error {
	var ss []daemon.BGPSession
	raw, err := c.do("GET", "/v1/bgp", nil, &ss)
	if err != nil {
		return err
	}
	if asJSON {
		stdout.Write(raw)
		return nil
	}
	if len(ss) == 0 {
		fmt.Fprintln(stdout, "no BGP sessions configured")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tROLE\tNEIGHBOR\tAS\tSTATE\tUPTIME\tFLAPS\tIPV4 RCVD/HELD/ANN\tIPV6 RCVD/HELD/ANN\tREFUSED\tSTALE")
	for _, s := range ss {
		up := "-"
		if s.State == "Established" {
			up = (time.Duration(s.UptimeSec) * time.Second).String()
		}
		var refused uint64
		for _, n := range s.Refused {
			refused += n
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d/%d/%d\t%d/%d/%d\t%d\t%d\n", s.Name, s.Role, s.Neighbor, s.PeerAS, s.State, up, s.Flaps,
			s.IPv4.Received, s.IPv4.Held, s.IPv4.Announced, s.IPv6.Received, s.IPv6.Held, s.IPv6.Announced, refused, s.Stale)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range ss {
		if s.LastError != "" && s.State != "Established" {
			fmt.Fprintf(stdout, "%s: %s\n", s.Name, s.LastError)
		}
	}
	return nil
}
