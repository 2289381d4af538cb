package neighbours

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// DefaultResolveEvery is how often unresolved next hops are re-resolved when
// Options.ResolveEvery is zero.
const DefaultResolveEvery = time.Second

// coalesceWindow is the shortest time between two rebuilds of Hops: a burst
// of neighbour changes is published as one snapshot.
const coalesceWindow = 10 * time.Millisecond

// resubscribeEvery is the shortest time between two subscriptions: never
// spin on a subscription that keeps failing.
const resubscribeEvery = 100 * time.Millisecond

// Options tune a Tracker. The zero value is usable.
type Options struct {
	// Handle is a netlink handle in the forwarder's network namespace. Nil
	// means netlink's default handle, which opens a socket per request in
	// the namespace of the thread making it, i.e. Run's.
	Handle *netlink.Handle
	// Namespace, when set, is the network namespace whose neighbour table
	// Run subscribes to; it must be Handle's namespace. When nil, Run
	// subscribes in the network namespace of the OS thread that calls it
	// (the process's namespace, unless Run is called on a locked thread
	// that entered another one). The Tracker does not close it.
	Namespace *netns.NsHandle
	// ResolveEvery is how often unresolved and stale next hops are
	// (re)resolved; zero means DefaultResolveEvery.
	ResolveEvery time.Duration
	// OnError, when set, is told of errors that Run survives (a failed
	// resolve request, a dump or subscription lost and redone). It is
	// called on Run's goroutine.
	OnError func(error)
}

// Tracker keeps the plane's next hops current from the kernel's neighbour
// table. It reads the table over netlink, follows its changes and publishes
// a new immutable Hops through Plane.SetHops whenever a next hop the plane
// uses gains, loses or changes its MAC. It never touches the fast path
// otherwise. All its work runs on the goroutine that calls Run.
//
// Nothing in pnap's fast path sends through the kernel, so the kernel never
// resolves the gateways by itself: the Tracker asks it to, for every
// configured next hop that is unresolved (and refreshes stale ones), every
// ResolveEvery.
type Tracker struct {
	opt   Options
	plane *forwarder.Plane
	spec  HopSpec

	// targets are the configured next hops (ifindex, address), deduplicated.
	targets []neighKey
	// subnets are, per ifindex, the connected subnets of customer ports.
	subnets map[int][]netip.Prefix
	// table holds the resolved neighbours that matter (targets and subnet
	// neighbours). Only Run's goroutine touches it.
	table map[neighKey]neighEntry
	// last is every configured next hop's MAC as last resolved, kept when
	// it is lost (Hops.LastGateway).
	last map[neighKey]forwarder.MAC

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
	mac   forwarder.MAC
	state int
}

// New makes a Tracker for plane and publishes a first Hops in which every
// port is set and nothing is resolved, so that workers may run before Run
// has read the table. plane.Ports must be set. An invalid spec (too many
// entries, an address of the wrong family, a port outside plane.Ports, no
// ifindex) is an error, and then nothing is published.
func New(plane *forwarder.Plane, spec HopSpec, opt Options) (*Tracker, error) {
	if opt.Handle == nil {
		opt.Handle = &netlink.Handle{} // what netlink's package-level functions use
	}
	if opt.ResolveEvery <= 0 {
		opt.ResolveEvery = DefaultResolveEvery
	}
	spec, err := normalizeSpec(spec, len(plane.Ports))
	if err != nil {
		return nil, err
	}
	n := &Tracker{opt: opt, plane: plane, spec: spec, subnets: map[int][]netip.Prefix{}, table: map[neighKey]neighEntry{}, last: map[neighKey]forwarder.MAC{}, requests: make(chan neighKey, 256)}
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
	return n, nil
}

// Resolved reports how many configured next hops (gateways and static
// customer next hops, per family) have a MAC in the published Hops.
func (n *Tracker) Resolved() (have, want int) { return int(n.have.Load()), n.want }

// Run reads the neighbour table, publishes Hops, and then follows the
// table's changes until stop is closed: changes that matter are published
// (a burst coalesced into at most one new Hops per 10 ms), and every
// ResolveEvery the kernel is asked to resolve the next hops that are not.
// It returns nil when stop is closed, after releasing its netlink
// subscription, or an error when it cannot subscribe to the table. A
// subscription that overflows (the kernel drops events when Run falls
// behind) is redone and the table read again. Only one Run at a time.
func (n *Tracker) Run(stop <-chan struct{}) error {
	if !n.running.CompareAndSwap(false, true) {
		return errors.New("neighbours: Run already running")
	}
	defer n.running.Store(false)

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

	ticker := time.NewTicker(n.opt.ResolveEvery)
	defer ticker.Stop()
	pub := newCoalescer()
	defer pub.stop()
	for {
		select {
		case <-stop:
			return nil
		case k := <-n.requests:
			if e, ok := n.table[k]; !ok || e.state&netlink.NUD_STALE != 0 {
				n.resolveOne(k)
			}
		case u, ok := <-sub.ch:
			if ok {
				n.follow(&u, pub)
				continue
			}
			// The kernel dropped events (ENOBUFS) or the socket failed:
			// start over with a new subscription and dump.
			if sub, err = n.resubscribe(sub, &lastSub, stop); sub == nil {
				return err // nil when stop was closed
			}
			needDump = n.dump() != nil
		case <-pub.timer.C:
			pub.fired()
			n.publish()
		case <-ticker.C:
			if needDump {
				needDump = n.dump() != nil
			}
			n.resolve()
		}
	}
}

// follow applies one change of the kernel's table.
func (n *Tracker) follow(u *netlink.NeighUpdate, pub *coalescer) {
	changed, lost := n.apply(&u.Neigh, u.Type == unix.RTM_DELNEIGH)
	if changed {
		pub.dirty()
	}
	if lost != nil {
		// A next hop lost its MAC (deleted, flushed, failed): ask again
		// now rather than at the next tick.
		n.resolveOne(*lost)
	}
}

// resubscribe replaces a lost subscription, no sooner than
// resubscribeEvery after the last one (*last, updated). It returns nil and
// no error if stop closes meanwhile.
func (n *Tracker) resubscribe(lost *subscription, last *time.Time, stop <-chan struct{}) (*subscription, error) {
	n.report(fmt.Errorf("neighbours: subscription lost: %v; resubscribing", lost.error()))
	lost.close()
	select {
	case <-stop:
		return nil, nil
	case <-time.After(time.Until(last.Add(resubscribeEvery))):
	}
	*last = time.Now()
	return n.subscribe()
}

// coalescer times the publishing of changes: the first change after a
// publish arms the timer, and the ones that follow before it fires ride
// along, so a burst becomes one new Hops at most every coalesceWindow.
type coalescer struct {
	timer   *time.Timer
	pending bool
	last    time.Time
}

func newCoalescer() *coalescer {
	c := &coalescer{timer: time.NewTimer(time.Hour)}
	c.timer.Stop()
	return c
}

// dirty records a change to publish.
func (c *coalescer) dirty() {
	if c.pending {
		return
	}
	c.pending = true
	c.timer.Reset(max(0, coalesceWindow-time.Since(c.last)))
}

// fired records that the timer fired: the caller publishes now.
func (c *coalescer) fired() {
	c.pending = false
	c.last = time.Now()
}

func (c *coalescer) stop() { c.timer.Stop() }

func (n *Tracker) report(err error) {
	if n.opt.OnError != nil {
		n.opt.OnError(err)
	}
}

// dump replaces the table with the kernel's and publishes. On error
// (including an interrupted dump, after a few tries) the table is kept.
func (n *Tracker) dump() error {
	var (
		list []netlink.Neigh
		err  error
	)
	for range 3 {
		if list, err = n.opt.Handle.NeighList(0, netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
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
func (n *Tracker) apply(nb *netlink.Neigh, deleted bool) (changed bool, lost *neighKey) {
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
	if deleted || nb.State&usable == 0 || len(nb.HardwareAddr) != len(forwarder.MAC{}) {
		delete(n.table, k)
		if had && target {
			lost = &k
		}
		return had, lost
	}
	e := neighEntry{mac: forwarder.MAC(nb.HardwareAddr), state: nb.State}
	n.table[k] = e
	if target {
		n.last[k] = e.mac
	}
	return !had || old.mac != e.mac, nil
}

func (n *Tracker) isTarget(k neighKey) bool {
	for _, t := range n.targets {
		if t == k {
			return true
		}
	}
	return false
}

// inSubnet reports whether a neighbour is inside a connected customer
// subnet of its port.
func (n *Tracker) inSubnet(k neighKey) bool {
	for _, p := range n.subnets[k.ifindex] {
		if p.Contains(k.addr) {
			return true
		}
	}
	return false
}

// publish builds a new Hops from the table and swaps it in. A published
// Hops is never written again.
func (n *Tracker) publish() {
	h := &forwarder.Hops{Neigh4: map[[4]byte]forwarder.MAC{}, Neigh6: map[[16]byte]forwarder.MAC{}}
	have := 0
	hop := func(port uint8, ifindex int, a netip.Addr) forwarder.NextHop {
		nh := forwarder.NextHop{Port: port}
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
		h.Backbone[b][forwarder.Fam4] = hop(s.Port, s.Ifindex, s.Gateway4)
		h.Backbone[b][forwarder.Fam6] = hop(s.Port, s.Ifindex, s.Gateway6)
		h.LastGateway[b][forwarder.Fam4] = n.last[neighKey{s.Ifindex, s.Gateway4}]
		h.LastGateway[b][forwarder.Fam6] = n.last[neighKey{s.Ifindex, s.Gateway6}]
	}
	for c, s := range n.spec.Customers {
		// The Port stays set while unresolved: connected destinations
		// leave by it with a MAC from Neigh4/Neigh6.
		h.Customer[c][forwarder.Fam4] = hop(s.Port, s.Ifindex, s.NextHop4)
		h.Customer[c][forwarder.Fam6] = hop(s.Port, s.Ifindex, s.NextHop6)
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
func (n *Tracker) resolve() {
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
func (n *Tracker) resolveOne(k neighKey) {
	fam := netlink.FAMILY_V6
	if k.addr.Is4() {
		fam = netlink.FAMILY_V4
	}
	err := n.opt.Handle.NeighSet(&netlink.Neigh{
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
func (n *Tracker) Resolve(ifindex int, a netip.Addr) {
	select {
	case n.requests <- neighKey{ifindex, a.Unmap()}:
	default:
	}
}
