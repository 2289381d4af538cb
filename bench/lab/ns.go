//go:build linux

package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a network namespace created for one test. It is bind-mounted as
// /run/netns/<Name> (so `ip -n <Name> ...` works while the test runs) and
// removed in tb.Cleanup together with every interface in it. Its loopback
// interface is up.
type NS struct {
	// Name is the namespace's name: the prefix given to NewNS, a dash and 8
	// random hex digits, e.g. "fwd-3fa9c2d1".
	Name string

	tb testing.TB
	h  *netlink.Handle

	mu      sync.RWMutex
	fd      int // namespace fd; -1 once removed
	closed  bool
	removed sync.Once
}

// NewNS creates a network namespace for tb and registers its removal with
// tb.Cleanup. prefix names it (default "lab"); keep it short. It fails tb on
// error.
//
// Cleanup deletes every interface in the namespace except lo (deleting a veth
// also deletes its peer, wherever it is), closes the netlink handle and the
// namespace fd, and unmounts /run/netns/<Name>. The kernel then frees the
// namespace once nothing else holds it; deleting the interfaces first makes
// sure no veth outlives the test even if a stray socket keeps the namespace
// itself alive for a while. Cleanups registered after NewNS (links, captures)
// run before it.
func NewNS(tb testing.TB, prefix string) *NS {
	tb.Helper()
	if prefix == "" {
		prefix = "lab"
	}
	if strings.ContainsAny(prefix, "/\x00 ") || prefix == "." || prefix == ".." {
		tb.Fatalf("lab.NewNS: invalid prefix %q", prefix)
	}
	var (
		name string
		fd   int
		err  error
	)
	for range 5 {
		name = prefix + "-" + randHex(4)
		fd, err = createNamed(name)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("lab.NewNS(%q): %v", prefix, err)
	}
	n := &NS{Name: name, tb: tb, fd: fd}
	track(n)
	tb.Cleanup(func() { n.remove(tb.Errorf) })

	if err := n.Do(func() error {
		h, err := netlink.NewHandle() // sockets are created in this thread's namespace
		if err != nil {
			return err
		}
		n.h = h
		return nil
	}); err != nil {
		tb.Fatalf("lab.NewNS: netlink handle in %s: %v", name, err)
	}
	lo, err := n.h.LinkByName("lo")
	if err == nil {
		err = n.h.LinkSetUp(lo)
	}
	if err != nil {
		tb.Fatalf("lab.NewNS: lo up in %s: %v", name, err)
	}
	return n
}

// createNamed creates the namespace /run/netns/<name> on a throw-away OS
// thread (unshare moves the calling thread into the new namespace, so that
// thread must not go back to the scheduler) and returns an fd referring to it.
// It is netns.NewNamed, except that it removes the mount-point file it created
// when the bind mount fails.
func createNamed(name string) (int, error) {
	type res struct {
		fd  int
		err error
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		fd, err := func() (int, error) {
			if err := os.MkdirAll(netnsDir, 0o755); err != nil {
				return -1, err
			}
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return -1, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			}
			fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return -1, fmt.Errorf("open own netns: %w", err)
			}
			p := path.Join(netnsDir, name)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
			if err != nil {
				unix.Close(fd)
				return -1, err // os.ErrExist if the name is taken
			}
			f.Close()
			if err := unix.Mount("/proc/thread-self/ns/net", p, "none", unix.MS_BIND, ""); err != nil {
				os.Remove(p)
				unix.Close(fd)
				return -1, fmt.Errorf("bind mount %s: %w", p, err)
			}
			return fd, nil
		}()
		c <- res{fd, err}
	}()
	r := <-c
	if r.err != nil {
		return -1, fmt.Errorf("create netns %s: %w", name, r.err)
	}
	return r.fd, nil
}

const netnsDir = "/run/netns"

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// remove is the tb.Cleanup of NewNS; on SIGINT or SIGTERM it runs from the
// signal handler instead (see track), reporting to stderr. It runs once.
func (n *NS) remove(errorf func(format string, args ...any)) {
	n.removed.Do(func() {
		untrack(n)
		if n.h != nil {
			links, err := n.h.LinkList()
			if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
				errorf("lab: cleanup %s: list links: %v", n.Name, err)
			}
			for _, l := range links {
				if l.Attrs().Flags&net.FlagLoopback != 0 {
					continue
				}
				// The peer of a veth deleted earlier is already gone: ignore ENODEV.
				if err := n.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
					errorf("lab: cleanup %s: delete %s: %v", n.Name, l.Attrs().Name, err)
				}
			}
			n.h.Close()
		}
		n.mu.Lock()
		n.closed = true
		if n.fd >= 0 {
			unix.Close(n.fd)
			n.fd = -1
		}
		n.mu.Unlock()
		if err := netns.DeleteNamed(n.Name); err != nil {
			errorf("lab: cleanup: delete netns %s: %v", n.Name, err)
		}
	})
}

// Live namespaces, so that Ctrl-C (which kills a test binary without running
// its cleanups) still removes them: the first NewNS installs a handler for
// SIGINT and SIGTERM that removes every live namespace, then exits.
var (
	liveMu      sync.Mutex
	live        = map[*NS]bool{}
	onInterrupt = map[int]func(){}
	hookSeq     int
	handleOnce  sync.Once
)

func track(n *NS) {
	handleSignals()
	liveMu.Lock()
	live[n] = true
	liveMu.Unlock()
}

// OnInterrupt registers fn to run if the process is interrupted (SIGINT,
// SIGTERM) before tb ends, before the namespaces are removed: for what a
// namespace's removal does not stop, such as a child process started in it.
// Only processes that created a namespace (NewNS) or run Main handle the
// signals.
func OnInterrupt(tb testing.TB, fn func()) {
	liveMu.Lock()
	hookSeq++
	id := hookSeq
	onInterrupt[id] = fn
	liveMu.Unlock()
	tb.Cleanup(func() {
		liveMu.Lock()
		delete(onInterrupt, id)
		liveMu.Unlock()
	})
}

// handleSignals installs, once per process, the handler that on SIGINT or
// SIGTERM runs the OnInterrupt hooks, removes every live namespace and exits
// with status 130.
func handleSignals() {
	handleOnce.Do(func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		go func() {
			s := <-sig
			liveMu.Lock()
			hooks := make([]func(), 0, len(onInterrupt))
			for _, fn := range onInterrupt {
				hooks = append(hooks, fn)
			}
			liveMu.Unlock()
			for _, fn := range hooks {
				fn()
			}
			RemoveAll()
			fmt.Fprintf(os.Stderr, "lab: %v: removed the lab's namespaces\n", s)
			os.Exit(130)
		}()
	})
}

func untrack(n *NS) {
	liveMu.Lock()
	delete(live, n)
	liveMu.Unlock()
}

// RemoveAll removes every namespace this process created and has not
// removed yet. Tests never need it (tb.Cleanup does it); it is for the
// signal handler and for programs that must clean up before exiting.
func RemoveAll() {
	liveMu.Lock()
	ns := make([]*NS, 0, len(live))
	for n := range live {
		ns = append(ns, n)
	}
	liveMu.Unlock()
	stderr := func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	for _, n := range ns {
		n.remove(stderr)
	}
}

// Do runs fn on a locked OS thread that has entered the namespace and returns
// fn's error. Sockets and netlink handles created inside fn belong to the
// namespace and stay there when used from other goroutines later; files under
// /proc/sys/net opened inside fn are the namespace's. (/sys/class/net is not:
// sysfs shows the namespace of whoever mounted it.)
//
// The thread is never given back to the Go scheduler: fn runs on a new
// goroutine that locks its thread and exits without unlocking it, so the
// runtime terminates the thread. A panic in fn is re-raised in the caller; fn
// must not call t.FailNow/Fatal (it is not the test goroutine) — Do reports
// that as an error.
func (n *NS) Do(fn func() error) error {
	type res struct {
		err      error
		done     bool
		panicked bool
		pv       any
	}
	c := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		var r res
		defer func() {
			if p := recover(); p != nil {
				r.panicked, r.pv = true, fmt.Sprintf("%v\n[in lab.NS.Do goroutine]\n%s", p, debug.Stack())
			}
			c <- r
		}()
		n.mu.RLock()
		if n.closed {
			n.mu.RUnlock()
			r.err, r.done = fmt.Errorf("lab: namespace %s already removed", n.Name), true
			return
		}
		err := unix.Setns(n.fd, unix.CLONE_NEWNET)
		n.mu.RUnlock()
		if err != nil {
			r.err, r.done = fmt.Errorf("lab: setns %s: %w", n.Name, err), true
			return
		}
		r.err = fn()
		r.done = true
	}()
	r := <-c
	if r.panicked {
		panic(r.pv)
	}
	if !r.done {
		return fmt.Errorf("lab: fn called runtime.Goexit (t.FailNow?) inside %s.Do", n.Name)
	}
	return r.err
}

// Handle returns the namespace's netlink handle (the equivalent of
// netlink.NewHandleAt on the namespace). It is shared, safe for concurrent
// use, and closed at cleanup: do not Close it.
func (n *NS) Handle() *netlink.Handle { return n.h }

// FD returns the namespace's file descriptor (for netns.Set, PeerNamespace
// NsFd, and the like). It is closed at cleanup.
func (n *NS) FD() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.fd
}

// Path returns the bind-mount path of the namespace, /run/netns/<Name>.
func (n *NS) Path() string { return path.Join(netnsDir, n.Name) }

// AddRoute adds a route to dst (a prefix such as "203.0.113.0/24" or
// "2001:db8::/32", or "default") via the gateway gw ("198.18.100.2",
// "2001:2::2", or a link-local "fe80::1%veth0" whose zone names an interface
// of this namespace). It fails tb on error.
func (n *NS) AddRoute(tb testing.TB, dst, gw string) {
	tb.Helper()
	g, err := netip.ParseAddr(gw)
	if err != nil {
		tb.Fatalf("lab.AddRoute(%s): gateway: %v", n.Name, err)
	}
	zone := g.Zone()
	g = g.WithZone("").Unmap()
	var p netip.Prefix
	if dst == "default" {
		if g.Is4() {
			p = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		} else {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	} else if p, err = netip.ParsePrefix(dst); err != nil {
		tb.Fatalf("lab.AddRoute(%s): destination: %v", n.Name, err)
	}
	p = p.Masked()
	if p.Addr().Is4() != g.Is4() {
		tb.Fatalf("lab.AddRoute(%s): %s and gateway %s are of different families", n.Name, dst, gw)
	}
	r := &netlink.Route{Dst: prefixNet(p), Gw: net.IP(g.AsSlice())}
	if zone != "" {
		l, err := n.h.LinkByName(zone)
		if err != nil {
			tb.Fatalf("lab.AddRoute(%s): gateway zone %q: %v", n.Name, zone, err)
		}
		r.LinkIndex = l.Attrs().Index
	}
	if err := n.h.RouteAdd(r); err != nil {
		tb.Fatalf("lab.AddRoute(%s): %s via %s: %v", n.Name, dst, gw, err)
	}
}

// AddLocalRoute makes every address of p local to n (a local route over
// lo, Linux's "AnyIP"): n's sockets bound to the wildcard address answer
// for all of them, and it answers pings to them, without an address each.
// It fails tb on error.
func (n *NS) AddLocalRoute(tb testing.TB, p netip.Prefix) {
	tb.Helper()
	lo, err := n.h.LinkByName("lo")
	if err != nil {
		tb.Fatalf("lab.AddLocalRoute(%s): %v", n.Name, err)
	}
	r := &netlink.Route{Dst: prefixNet(p.Masked()), LinkIndex: lo.Attrs().Index, Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST}
	if err := n.h.RouteAdd(r); err != nil {
		tb.Fatalf("lab.AddLocalRoute(%s): %v: %v", n.Name, p, err)
	}
}

// AddNeigh adds (or replaces) a permanent neighbour entry ip -> mac on l,
// which must be a link of n. It fails tb on error.
func (n *NS) AddNeigh(tb testing.TB, l *Link, ip string, mac net.HardwareAddr) {
	tb.Helper()
	if l == nil || l.NS != n {
		tb.Fatalf("lab.AddNeigh(%s): link is not in this namespace", n.Name)
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		tb.Fatalf("lab.AddNeigh(%s): %v", n.Name, err)
	}
	a = a.Unmap()
	fam := netlink.FAMILY_V6
	if a.Is4() {
		fam = netlink.FAMILY_V4
	}
	if err := n.h.NeighSet(&netlink.Neigh{
		LinkIndex:    l.Index,
		Family:       fam,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(a.AsSlice()),
		HardwareAddr: mac,
	}); err != nil {
		tb.Fatalf("lab.AddNeigh(%s): %s -> %s on %s: %v", n.Name, ip, mac, l.Name, err)
	}
}

// Sysctl writes value to /proc/sys/<key> inside the namespace. key is in
// slash form ("net/ipv4/ip_forward", "net/ipv6/conf/veth0/forwarding") or, if
// it has no slash, in dot form ("net.ipv4.ip_forward"). Only keys under net/
// are accepted (the rest of /proc/sys is not per namespace and would change
// the host). It fails tb on error.
func (n *NS) Sysctl(tb testing.TB, key, value string) {
	tb.Helper()
	p, err := sysctlPath(key)
	if err != nil {
		tb.Fatalf("lab.Sysctl(%s): %v", n.Name, err)
	}
	if err := n.Do(func() error { return os.WriteFile(p, []byte(value), 0) }); err != nil {
		tb.Fatalf("lab.Sysctl(%s): %s=%s: %v", n.Name, key, value, err)
	}
}

// ReadSysctl reads /proc/sys/<key> inside the namespace (key as for Sysctl)
// and returns it without the trailing newline.
func (n *NS) ReadSysctl(key string) (string, error) {
	p, err := sysctlPath(key)
	if err != nil {
		return "", err
	}
	var v []byte
	err = n.Do(func() error {
		var err error
		v, err = os.ReadFile(p)
		return err
	})
	return strings.TrimRight(string(v), "\n"), err
}

func sysctlPath(key string) (string, error) {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	key = strings.TrimPrefix(key, "/")
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("bad sysctl key %q", key)
		}
	}
	if !strings.HasPrefix(key, "net/") {
		return "", fmt.Errorf("sysctl key %q is not under net/ (not per namespace)", key)
	}
	return "/proc/sys/" + key, nil
}

func prefixNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: net.IP(a.AsSlice()), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// DoSysfs is Do with a private view of /sys that belongs to the namespace:
// on the throw-away thread it unshares the mount namespace, makes every mount
// a slave (nothing propagates back to the host) and mounts a fresh sysfs on
// /sys, as `ip netns exec` does. Plain Do sees the host's /sys, because sysfs
// shows the network namespace of whoever mounted it. Mounts under /sys (such
// as /sys/fs/bpf) are hidden inside fn. The mount namespace dies with the
// thread.
func (n *NS) DoSysfs(fn func() error) error {
	return n.Do(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			return fmt.Errorf("lab: unshare(CLONE_NEWNS): %w", err)
		}
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("lab: make mounts slave: %w", err)
		}
		if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
			return fmt.Errorf("lab: mount sysfs of %s: %w", n.Name, err)
		}
		return fn()
	})
}
