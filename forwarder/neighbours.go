package forwarder

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HopSpec says which next hops the plane needs.
type HopSpec struct {
	Backbones []BackboneHop // index = fib.BackboneID
	Customers []CustomerHop // index = customer "backbone" id in Plane.Customers
}

// BackboneHop is a backbone's port and its gateways. A zero gateway means
// the backbone is not used in that family.
type BackboneHop struct {
	Port               uint8
	Ifindex            int
	Gateway4, Gateway6 netip.Addr
}

// CustomerHop is a customer's port, its static next hops (zero if none) and
// the port's connected subnets (zero if none): neighbours on Ifindex inside
// a subnet are published in Hops.Neigh4 and Hops.Neigh6.
type CustomerHop struct {
	Port               uint8
	Ifindex            int
	NextHop4, NextHop6 netip.Addr
	Subnet4, Subnet6   netip.Prefix
}

// DefaultResolveEvery is how often unresolved next hops are re-resolved when
// Neighbours.ResolveEvery is zero.
const DefaultResolveEvery = time.Second

// coalesceWindow is the shortest time between two rebuilds of Hops: a burst
// of neighbour changes is published as one snapshot.
const coalesceWindow = 10 * time.Millisecond

// Neighbours keeps the plane's next hops current from the kernel's
// neighbour table. It reads the table over netlink, follows its changes and
// publishes a new immutable Hops through Plane.SetHops whenever a next hop
// the plane uses gains, loses or changes its MAC. It never touches the fast
// path otherwise. All its work runs on the goroutine that calls Run.
//
// Nothing in pnap's fast path sends through the kernel, so the kernel never
// resolves the gateways by itself: Neighbours asks it to, for every
// configured next hop that is unresolved (and refreshes stale ones), every
// ResolveEvery.
type Neighbours struct {
	// ResolveEvery is how often unresolved and stale next hops are
	// (re)resolved; zero means DefaultResolveEvery. Set it before Run.
	ResolveEvery time.Duration
	// Namespace, when set, is the network namespace whose neighbour table
	// Run subscribes to; it must be the namespace of the handle given to
	// NewNeighbours. When nil, Run subscribes in the network namespace of
	// the OS thread that calls it (the process's namespace, unless Run is
	// called on a locked thread that entered another one). Neighbours does
	// not close it.
	Namespace *netns.NsHandle
	// OnError, when set, is told of errors that Run survives (a failed
	// resolve request, a dump or subscription lost and redone). It is
	// called on Run's goroutine.
	OnError func(error)

	plane *Plane
	spec  HopSpec
	h     *netlink.Handle
	err   error // invalid spec: Run returns it

	// targets are the configured next hops (ifindex, address), deduplicated.
	targets []neighKey
	// subnets are, per ifindex, the connected subnets of customer ports.
	subnets map[int][]netip.Prefix
	// table holds the resolved neighbours that matter (targets and subnet
	// neighbours). Only Run's goroutine touches it.
	table map[neighKey]neighEntry

	// requests carries on-demand resolutions (Resolve) to Run's goroutine,
	// the only one that uses the netlink handle.
	requests chan neighKey

	want     int
	have     atomic.Int64
	running  atomic.Bool
	rebuilds atomic.Uint64 // Hops published, for tests
}

type neighKey struct {
	ifindex int
	addr    netip.Addr
}

type neighEntry struct {
	mac   MAC
	state int
}

// NewNeighbours makes a Neighbours for plane and publishes a first Hops in
// which every port is set and nothing is resolved, so that workers may run
// before Run has read the table. h is a netlink handle in the forwarder's
// network namespace (nil: netlink's default handle, which opens a socket
// per request in the namespace of the thread making it, i.e. Run's).
// plane.Ports must be set: an invalid spec (too many entries, an address
// of the wrong family, a port outside plane.Ports, no ifindex) publishes
// nothing and makes Run return the error.
func NewNeighbours(plane *Plane, spec HopSpec, h *netlink.Handle) *Neighbours {
	if h == nil {
		h = &netlink.Handle{} // what netlink's package-level functions use
	}
	n := &Neighbours{plane: plane, h: h, subnets: map[int][]netip.Prefix{}, table: map[neighKey]neighEntry{}, requests: make(chan neighKey, 256)}
	n.spec, n.err = normalizeSpec(spec, len(plane.Ports))
	if n.err != nil {
		return n
	}
	seen := map[neighKey]bool{}
	target := func(ifindex int, a netip.Addr) {
		if !a.IsValid() {
			return
		}
		n.want++
		if k := (neighKey{ifindex, a}); !seen[k] {
			seen[k] = true
			n.targets = append(n.targets, k)
		}
	}
	for _, b := range n.spec.Backbones {
		target(b.Ifindex, b.Gateway4)
		target(b.Ifindex, b.Gateway6)
	}
	for _, c := range n.spec.Customers {
		target(c.Ifindex, c.NextHop4)
		target(c.Ifindex, c.NextHop6)
		for _, p := range []netip.Prefix{c.Subnet4, c.Subnet6} {
			if p.IsValid() {
				n.subnets[c.Ifindex] = append(n.subnets[c.Ifindex], p)
			}
		}
	}
	n.publish()
	return n
}

// normalizeSpec checks spec and returns a copy with plain addresses (no
// zone, IPv4 not mapped) and masked prefixes.
func normalizeSpec(spec HopSpec, ports int) (HopSpec, error) {
	var out HopSpec
	if len(spec.Backbones) > fib.MaxBackbones || len(spec.Customers) > fib.MaxBackbones {
		return out, fmt.Errorf("neighbours: %d backbones and %d customers; at most %d each", len(spec.Backbones), len(spec.Customers), fib.MaxBackbones)
	}
	addr := func(what string, i int, a netip.Addr, v4 bool) (netip.Addr, error) {
		if !a.IsValid() {
			return a, nil
		}
		a = a.WithZone("").Unmap()
		if a.Is4() != v4 || !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return a, fmt.Errorf("neighbours: %s %d: %s is not a usable IPv%d unicast address", what, i, a, ipv(v4))
		}
		return a, nil
	}
	prefix := func(what string, i int, p netip.Prefix, v4 bool) (netip.Prefix, error) {
		if !p.IsValid() {
			return netip.Prefix{}, nil
		}
		a := p.Addr().WithZone("")
		if a.Is4In6() && p.Bits() >= 96 {
			a, p = a.Unmap(), netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		if a.Is4() != v4 || p.Bits() == 0 {
			return p, fmt.Errorf("neighbours: customer %d: %s %s is not an IPv%d subnet", i, what, p, ipv(v4))
		}
		return netip.PrefixFrom(a, p.Bits()).Masked(), nil
	}
	port := func(what string, i int, port uint8, ifindex int, used bool) error {
		if int(port) >= ports {
			return fmt.Errorf("neighbours: %s %d: port %d, but the plane has %d ports", what, i, port, ports)
		}
		if used && ifindex <= 0 {
			return fmt.Errorf("neighbours: %s %d: no ifindex", what, i)
		}
		return nil
	}
	var err error
	for i, b := range spec.Backbones {
		if b.Gateway4, err = addr("backbone", i, b.Gateway4, true); err != nil {
			return out, err
		}
		if b.Gateway6, err = addr("backbone", i, b.Gateway6, false); err != nil {
			return out, err
		}
		if err := port("backbone", i, b.Port, b.Ifindex, b.Gateway4.IsValid() || b.Gateway6.IsValid()); err != nil {
			return out, err
		}
		out.Backbones = append(out.Backbones, b)
	}
	for i, c := range spec.Customers {
		if c.NextHop4, err = addr("customer", i, c.NextHop4, true); err != nil {
			return out, err
		}
		if c.NextHop6, err = addr("customer", i, c.NextHop6, false); err != nil {
			return out, err
		}
		if c.Subnet4, err = prefix("Subnet4", i, c.Subnet4, true); err != nil {
			return out, err
		}
		if c.Subnet6, err = prefix("Subnet6", i, c.Subnet6, false); err != nil {
			return out, err
		}
		used := c.NextHop4.IsValid() || c.NextHop6.IsValid() || c.Subnet4.IsValid() || c.Subnet6.IsValid()
		if err := port("customer", i, c.Port, c.Ifindex, used); err != nil {
			return out, err
		}
		out.Customers = append(out.Customers, c)
	}
	return out, nil
}

func ipv(v4 bool) int {
	if v4 {
		return 4
	}
	return 6
}

// Resolved reports how many configured next hops (gateways and static
// customer next hops, per family) have a MAC in the published Hops.
func (n *Neighbours) Resolved() (have, want int) { return int(n.have.Load()), n.want }

// Run reads the neighbour table, publishes Hops, and then follows the
// table's changes until stop is closed: changes that matter are published
// (a burst coalesced into at most one new Hops per 10 ms), and every
// ResolveEvery the
// kernel is asked to resolve the next hops that are not. It returns nil
// when stop is closed, after releasing its netlink subscription, or an
// error when it cannot read the table (an invalid spec, no subscription).
// A subscription that overflows (the kernel drops events when Run falls
// behind) is redone and the table read again. Only one Run at a time.
func (n *Neighbours) Run(stop <-chan struct{}) error {
	if n.err != nil {
		return n.err
	}
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("neighbours: Run already running")
	}
	defer n.running.Store(false)

	every := n.ResolveEvery
	if every <= 0 {
		every = DefaultResolveEvery
	}
	sub, err := n.subscribe()
	if err != nil {
		return err
	}
	lastSub := time.Now()
	defer func() { sub.close() }()
	// Subscribed first, dumped second: every change after the dump is
	// still queued on the subscription, so applying the queue after the
	// dump ends in the kernel's current state.
	needDump := n.dump() != nil
	n.resolve()

	ticker := time.NewTicker(every)
	defer ticker.Stop()
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	pending := false
	var last time.Time
	dirty := func() {
		if pending {
			return
		}
		pending = true
		coalesce.Reset(max(0, coalesceWindow-time.Since(last)))
	}
	for {
		select {
		case <-stop:
			return nil
		case k := <-n.requests:
			if e, ok := n.table[k]; !ok || e.state&netlink.NUD_STALE != 0 {
				n.resolveOne(k)
			}
		case u, ok := <-sub.ch:
			if !ok {
				// The kernel dropped events (ENOBUFS) or the socket
				// failed: start over with a new subscription and dump.
				n.report(fmt.Errorf("neighbours: subscription lost: %v; resubscribing", sub.error()))
				sub.close()
				sub = nil
				// Never spin on a subscription that keeps failing.
				select {
				case <-stop:
					return nil
				case <-time.After(time.Until(lastSub.Add(100 * time.Millisecond))):
				}
				lastSub = time.Now()
				if sub, err = n.subscribe(); err != nil {
					sub = nil
					return err
				}
				needDump = n.dump() != nil
				continue
			}
			changed, lost := n.apply(&u.Neigh, u.Type == unix.RTM_DELNEIGH)
			if changed {
				dirty()
			}
			if lost != nil {
				// A next hop lost its MAC (deleted, flushed, failed):
				// ask again now rather than at the next tick.
				n.resolveOne(*lost)
			}
		case <-coalesce.C:
			pending = false
			last = time.Now()
			n.publish()
		case <-ticker.C:
			if needDump {
				needDump = n.dump() != nil
			}
			n.resolve()
		}
	}
}

func (n *Neighbours) report(err error) {
	if n.OnError != nil {
		n.OnError(err)
	}
}

// subscription is one netlink neighbour subscription.
type subscription struct {
	ch   chan netlink.NeighUpdate
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (n *Neighbours) subscribe() (*subscription, error) {
	s := &subscription{ch: make(chan netlink.NeighUpdate, 256), done: make(chan struct{})}
	opts := netlink.NeighSubscribeOptions{
		Namespace: n.Namespace,
		ErrorCallback: func(err error) {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
		},
		// Room for bursts (capped by net.core.rmem_max, not forced).
		ReceiveBufferSize: 1 << 20,
	}
	if err := netlink.NeighSubscribeWithOptions(s.ch, s.done, opts); err != nil {
		close(s.done)
		return nil, fmt.Errorf("neighbours: subscribe: %w", err)
	}
	return s, nil
}

func (s *subscription) error() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close ends the subscription: closing done closes the socket, which ends
// netlink's receive goroutine; the channel is drained so that goroutine is
// never left blocked sending, and it closes the channel when it returns.
func (s *subscription) close() {
	if s == nil {
		return
	}
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	timeout := time.NewTimer(2 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-s.ch:
			if !ok {
				return
			}
		case <-timeout.C:
			go func() {
				for range s.ch {
				}
			}()
			return
		}
	}
}

// dump replaces the table with the kernel's and publishes. On error
// (including an interrupted dump, after a few tries) the table is kept.
func (n *Neighbours) dump() error {
	var (
		list []netlink.Neigh
		err  error
	)
	for range 3 {
		if list, err = n.h.NeighList(0, netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		n.report(fmt.Errorf("neighbours: reading the neighbour table: %w", err))
		return err
	}
	clear(n.table)
	for i := range list {
		n.apply(&list[i], false)
	}
	n.publish()
	return nil
}

// usable is the set of states in which a neighbour's MAC may be used.
const usable = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT | netlink.NUD_NOARP

// apply records one neighbour (deleted, or as the kernel now has it). It
// reports whether published Hops must change (a neighbour that matters
// gained, lost or changed its MAC; a mere change between usable states,
// REACHABLE to STALE say, changes nothing the plane uses), and, when a
// configured next hop just lost its MAC, which.
func (n *Neighbours) apply(nb *netlink.Neigh, deleted bool) (changed bool, lost *neighKey) {
	if nb.Family != unix.AF_INET && nb.Family != unix.AF_INET6 || nb.Flags&netlink.NTF_PROXY != 0 {
		return false, nil
	}
	a, ok := netip.AddrFromSlice(nb.IP)
	if !ok {
		return false, nil
	}
	k := neighKey{nb.LinkIndex, a.Unmap()}
	target := n.isTarget(k)
	if !target && !n.inSubnet(k) {
		return false, nil
	}
	old, had := n.table[k]
	if deleted || nb.State&usable == 0 || len(nb.HardwareAddr) != len(MAC{}) {
		delete(n.table, k)
		if had && target {
			lost = &k
		}
		return had, lost
	}
	e := neighEntry{mac: MAC(nb.HardwareAddr), state: nb.State}
	n.table[k] = e
	return !had || old.mac != e.mac, nil
}

func (n *Neighbours) isTarget(k neighKey) bool {
	for _, t := range n.targets {
		if t == k {
			return true
		}
	}
	return false
}

// inSubnet reports whether a neighbour is inside a connected customer
// subnet of its port.
func (n *Neighbours) inSubnet(k neighKey) bool {
	for _, p := range n.subnets[k.ifindex] {
		if p.Contains(k.addr) {
			return true
		}
	}
	return false
}

// publish builds a new Hops from the table and swaps it in. A published
// Hops is never written again.
func (n *Neighbours) publish() {
	h := &Hops{Neigh4: map[[4]byte]MAC{}, Neigh6: map[[16]byte]MAC{}}
	have := 0
	hop := func(port uint8, ifindex int, a netip.Addr) NextHop {
		nh := NextHop{Port: port}
		if !a.IsValid() {
			return nh
		}
		if e, ok := n.table[neighKey{ifindex, a}]; ok {
			nh.MAC, nh.Resolved = e.mac, true
			have++
		}
		return nh
	}
	for b, s := range n.spec.Backbones {
		h.Backbone[b][fam4] = hop(s.Port, s.Ifindex, s.Gateway4)
		h.Backbone[b][fam6] = hop(s.Port, s.Ifindex, s.Gateway6)
	}
	for c, s := range n.spec.Customers {
		// The Port stays set while unresolved: connected destinations
		// leave by it with a MAC from Neigh4/Neigh6.
		h.Customer[c][fam4] = hop(s.Port, s.Ifindex, s.NextHop4)
		h.Customer[c][fam6] = hop(s.Port, s.Ifindex, s.NextHop6)
		// SetSubnet with a zero prefix clears both families: only set.
		if s.Subnet4.IsValid() {
			h.SetSubnet(c, s.Subnet4)
		}
		if s.Subnet6.IsValid() {
			h.SetSubnet(c, s.Subnet6)
		}
	}
	for k, e := range n.table {
		switch {
		case !n.inSubnet(k):
		case k.addr.Is4():
			h.Neigh4[k.addr.As4()] = e.mac
		default:
			h.Neigh6[k.addr.As16()] = e.mac
		}
	}
	n.plane.SetHops(h)
	n.have.Store(int64(have))
	n.rebuilds.Add(1)
}

// resolve asks the kernel to resolve every configured next hop that has no
// usable MAC, and to revalidate those gone STALE: the fast path's traffic
// bypasses the kernel, so nothing else would ever confirm them, and a
// gateway that died or changed its MAC silently would keep its old MAC.
func (n *Neighbours) resolve() {
	for _, k := range n.targets {
		if e, ok := n.table[k]; ok && e.state&netlink.NUD_STALE == 0 {
			continue
		}
		n.resolveOne(k)
	}
}

// resolveOne sends RTM_NEWNEIGH with the NTF_USE flag for k: the kernel
// then does what it does when it has a packet for the neighbour
// (neigh_event_send). Measured on this kernel (6.18): a missing, NONE or
// FAILED entry becomes INCOMPLETE and an ARP request or neighbour
// solicitation goes out at once; a STALE one moves to DELAY and is probed
// back to REACHABLE; REACHABLE, PERMANENT and INCOMPLETE entries are left
// alone. Chosen over the alternatives because it sends nothing but ARP/ND,
// works through the namespace-bound netlink handle (no socket to open in
// the forwarder's namespace, no route needed), and needs no traffic to the
// neighbour. The alternatives, tried here: NeighSet with State NUD_PROBE
// and no MAC is refused (EINVAL) for an entry without a MAC, and leaves a
// NONE entry behind; an empty UDP datagram to port 9 works too, but needs
// a socket in the right namespace and a route, and really delivers the
// datagram to the router once resolved.
func (n *Neighbours) resolveOne(k neighKey) {
	fam := netlink.FAMILY_V6
	if k.addr.Is4() {
		fam = netlink.FAMILY_V4
	}
	err := n.h.NeighSet(&netlink.Neigh{
		LinkIndex: k.ifindex,
		Family:    fam,
		IP:        net.IP(k.addr.AsSlice()),
		Flags:     netlink.NTF_USE,
	})
	if err != nil {
		n.report(fmt.Errorf("neighbours: resolving %s on ifindex %d: %w", k.addr, k.ifindex, err))
	}
}

// Resolve asks, without blocking, for the neighbour a on interface ifindex
// to be resolved: the slow path calls it for a connected customer host the
// fast path found no MAC for (a host that has not talked yet, or one the
// kernel forgot). Requests beyond what Run keeps up with are dropped; the
// next packet for the host asks again.
func (n *Neighbours) Resolve(ifindex int, a netip.Addr) {
	select {
	case n.requests <- neighKey{ifindex, a.Unmap()}:
	default:
	}
}
