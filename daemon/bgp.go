package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/routes/bgp"
)

// gracefulRestartTime is the restart time pnapd advertises: it helps
// restarting peers and keeps no forwarding state across its own restarts,
// so the value only tells a peer how long pnapd's routes are worth keeping
// (its announcements; the kernel forwards while pnapd is away).
const gracefulRestartTime = 120 * time.Second

// teardownIdle is how long a session torn down for exceeding max_prefixes
// stays down before it connects again, as routers' idle timeout after a
// prefix-limit teardown does: long enough not to flap with the peer.
const teardownIdle = 60 * time.Second

// bgpSession is one BGP session and what it feeds or is fed by.
type bgpSession struct {
	name     string // the backbone's or the [[announce]]'s
	role     string // "backbone" or "announce"
	neighbor netip.Addr
	peerAS   uint32
	s        *bgp.Session
	feed     *bgpFeed   // for a backbone's session
	ann      *announcer // for an announce session

	mu        sync.Mutex
	cancelRun context.CancelFunc // ends the current Run: a teardown
}

// run runs the session until ctx ends. A teardown (max_prefixes) ends one
// Run; the next starts teardownIdle later.
func (bs *bgpSession) run(ctx context.Context) error {
	for {
		rctx, cancel := context.WithCancel(ctx)
		bs.mu.Lock()
		bs.cancelRun = cancel
		bs.mu.Unlock()
		err := bs.s.Run(rctx)
		cancel()
		if ctx.Err() != nil || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(teardownIdle):
		}
	}
}

// teardown closes the session (with a Cease NOTIFICATION) and keeps it
// down for teardownIdle.
func (bs *bgpSession) teardown() {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.cancelRun != nil {
		bs.cancelRun()
	}
}

// startBGP starts the backbones' sessions, whose routes feed the FIB, and
// the announce sessions, which tell the network's routers pnapd's choices.
func (d *Daemon) startBGP(context.Context) (func() error, error) {
	cfg := d.cfg.Load()
	if len(d.plan.peers) == 0 && len(d.plan.announces) == 0 {
		return func() error { return nil }, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	done := make(chan struct{})
	stop := func() error { cancel(); close(done); wg.Wait(); return nil }
	for _, p := range d.plan.peers {
		bs, err := d.backboneSession(p)
		if err != nil {
			stop()
			return nil, err
		}
		d.bgp = append(d.bgp, bs)
		wg.Add(1)
		go func() { defer wg.Done(); bs.feed.run(done) }()
	}
	for _, a := range d.plan.announces {
		bs, err := d.announceSession(a)
		if err != nil {
			stop()
			return nil, err
		}
		d.bgp = append(d.bgp, bs)
		wg.Add(1)
		go func() { defer wg.Done(); bs.ann.run(done) }()
	}
	sessions := make([]*bgp.Session, len(d.bgp))
	for i, bs := range d.bgp {
		sessions[i] = bs.s
	}
	if cfg.BGP.Listen.IsValid() {
		l, err := bgp.Listen(cfg.BGP.Listen, sessions)
		if err != nil {
			stop()
			return nil, fmt.Errorf("[bgp] listen %v: %w", cfg.BGP.Listen, err)
		}
		stop = func() error { cancel(); l.Close(); close(done); wg.Wait(); return nil }
	}
	for _, bs := range d.bgp {
		d.goRun(&wg, "bgp "+bs.name, func() error { return bs.run(ctx) })
	}
	d.log.Info("BGP", "sessions", len(d.bgp), "listen", cfg.BGP.Listen, "local_as", cfg.BGP.LocalAS, "router_id", cfg.BGP.RouterID)
	return stop, nil
}

// backboneSession makes the session of backbone neighbor p and the feed
// that applies its routes to the FIB.
func (d *Daemon) backboneSession(p bgpPeerPlan) (*bgpSession, error) {
	cfg := d.cfg.Load()
	b := cfg.Backbones[p.Backbone]
	feed := &bgpFeed{fib: d.fib, b: fib.BackboneID(p.Backbone), peer: p, onLink: d.onLink(p.Backbone), owns: [2]bool{true, true}, log: d.log}
	if p.OwnFamilyOnly {
		own := familyOf(netip.PrefixFrom(p.Neighbor, 0))
		feed.owns = [2]bool{own == 0, own == 1}
	}
	feed.static = map[netip.Prefix]bool{}
	for _, s := range b.Static {
		feed.static[s] = true
	}
	bs := &bgpSession{name: b.Name, role: "backbone", neighbor: p.Neighbor, peerAS: p.PeerAS, feed: feed}
	opt := d.sessionOptions(p.Neighbor, p.PeerAS, p.HoldTime, p.Password, p.Passive)
	if p.OwnFamilyOnly {
		opt.Families = []bgp.Family{bgp.IPv4Unicast}
		if p.Neighbor.Is6() {
			opt.Families = []bgp.Family{bgp.IPv6Unicast}
		}
	}
	opt.OnChanges = feed.changes
	opt.OnEndOfRIB = feed.endOfRIB
	if p.GracefulRestart {
		opt.RestartTime = gracefulRestartTime
	}
	opt.OnState = func(ev bgp.StateEvent) {
		d.logSession(bs, ev)
		switch {
		case ev.From == bgp.Established:
			feed.down(ev.KeepStale, ev.PeerGR.Time)
		case ev.To == bgp.Established:
			feed.up(ev.PeerGR)
		}
	}
	s, err := bgp.NewSession(opt)
	if err != nil {
		return nil, fmt.Errorf("backbone %q: bgp neighbor %v: %w", b.Name, p.Neighbor, err)
	}
	bs.s = s
	feed.teardown = func(reason string) {
		d.log.Warn("BGP session torn down", "session", bs.name, "neighbor", p.Neighbor, "reason", reason, "down_for", teardownIdle)
		bs.teardown()
	}
	return bs, nil
}

// announceSession makes the session of one [[announce]] and its announcer.
func (d *Daemon) announceSession(a announcePlan) (*bgpSession, error) {
	cfg := d.cfg.Load()
	bs := &bgpSession{name: a.Name, role: "announce", neighbor: a.Neighbor, peerAS: a.PeerAS}
	opt := d.sessionOptions(a.Neighbor, a.PeerAS, a.HoldTime, a.Password, a.Passive)
	opt.OnState = func(ev bgp.StateEvent) { d.logSession(bs, ev) }
	s, err := bgp.NewSession(opt)
	if err != nil {
		return nil, fmt.Errorf("announce %q: %w", a.Name, err)
	}
	bs.s = s
	gw := make([][2]netip.Addr, len(cfg.Backbones))
	for i, b := range cfg.Backbones {
		gw[i] = [2]netip.Addr{b.GatewayV4, b.GatewayV6}
	}
	bs.ann = &announcer{fib: d.fib, plan: a, session: s, gateways: gw, log: d.log}
	return bs, nil
}

func (d *Daemon) sessionOptions(peer netip.Addr, peerAS uint32, hold time.Duration, password string, passive bool) bgp.Options {
	cfg := d.cfg.Load()
	return bgp.Options{
		LocalAS: cfg.BGP.LocalAS, RouterID: cfg.BGP.RouterID,
		PeerAS: peerAS, PeerAddr: peer, Passive: passive,
		HoldTime: hold, Password: password, Log: d.log,
	}
}

// onLink is where a next hop of backbone b may be: its gateways and the
// subnets of its interface.
func (d *Daemon) onLink(b int) []netip.Prefix {
	cfg := d.cfg.Load()
	bb := cfg.Backbones[b]
	var out []netip.Prefix
	for _, gw := range []netip.Addr{bb.GatewayV4, bb.GatewayV6} {
		if gw.IsValid() {
			out = append(out, netip.PrefixFrom(gw.WithZone(""), gw.BitLen()))
		}
	}
	if have, err := interfacePrefixes("backbone", bb.Name, bb.Interface); err == nil {
		for _, p := range have {
			out = append(out, p.Masked())
		}
	}
	return out
}

// logSession logs a session's state changes that matter to an operator:
// up, and down with why.
func (d *Daemon) logSession(bs *bgpSession, ev bgp.StateEvent) {
	switch {
	case ev.To == bgp.Established:
		d.log.Info("BGP session up", "session", bs.name, "role", bs.role, "neighbor", bs.neighbor, "graceful_restart", ev.PeerGR.Advertised)
	case ev.From == bgp.Established:
		d.log.Warn("BGP session down", "session", bs.name, "role", bs.role, "neighbor", bs.neighbor, "reason", ev.Reason, "error", ev.Err, "keep_stale", ev.KeepStale)
	}
}

// learnsFromBGP says whether backbone b takes its routes from BGP.
func (d *Daemon) learnsFromBGP(b int) bool {
	for _, bs := range d.bgp {
		if bs.feed != nil && int(bs.feed.b) == b {
			return true
		}
	}
	return false
}

// reloadBGPStatics makes each BGP backbone's static routes those of cfg,
// leaving what BGP gave it alone: a static route that leaves goes from the
// FIB unless BGP has the prefix (its withdrawal then removes it), a new one
// enters unless BGP has it (its withdrawal then falls back to it).
func (d *Daemon) reloadBGPStatics(cfg *configs.Config) (added, withdrawn int) {
	feeds := map[int][]*bgpFeed{}
	for _, bs := range d.bgp {
		if bs.feed != nil {
			feeds[int(bs.feed.b)] = append(feeds[int(bs.feed.b)], bs.feed)
		}
	}
	for b, fs := range feeds {
		now := map[netip.Prefix]bool{}
		for _, p := range cfg.Backbones[b].Static {
			now[p] = true
		}
		for _, f := range fs {
			f.mu.Lock()
		}
		a, w := applyStatics(d.fib, fib.BackboneID(b), fs[0].static, now)
		added, withdrawn = added+a, withdrawn+w
		for _, f := range fs {
			f.static = now
			f.mu.Unlock()
		}
	}
	return added, withdrawn
}

// applyStatics moves backbone b's static routes from was to now in one
// Version. Routes that BGP gave (a path length) are not touched.
func applyStatics(f *fib.FIB, b fib.BackboneID, was, now map[netip.Prefix]bool) (added, withdrawn int) {
	f.Update(func(tx *fib.Txn) error {
		for p := range was {
			if _, pl, held := tx.Held(b, p); held && pl < 0 && !now[p] {
				tx.Withdraw(b, p)
				withdrawn++
			}
		}
		for p := range now {
			if _, _, held := tx.Held(b, p); !held {
				tx.Add(b, p, -1)
				added++
			}
		}
		return nil
	})
	return added, withdrawn
}
