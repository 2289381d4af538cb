//go:build linux

package lab

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Link is one end of a veth pair made by Connect.
type Link struct {
	NS    *NS              // namespace the interface lives in
	Name  string           // interface name inside NS
	Index int              // ifindex inside NS
	MAC   net.HardwareAddr // the interface's MAC address
}

// VethOpts tunes Connect. The zero value gives MTU 1500 and kernel-chosen
// random MACs.
type VethOpts struct {
	MTU int // both ends; 0 means 1500
	// Queues is the RX and TX queue count of both ends; 0 means 1.
	Queues int
	MACA   net.HardwareAddr // optional fixed MAC of the a end
	MACB   net.HardwareAddr // optional fixed MAC of the b end
}

// IfNameMax is the longest interface name Linux accepts (IFNAMSIZ-1).
const IfNameMax = unix.IFNAMSIZ - 1

// Connect creates a veth pair with end aName in namespace a and end bName in
// namespace b (a and b may be the same namespace), and returns (a end, b end).
// The pair is created from inside a with the peer placed straight into b, so
// neither name ever appears in the host's namespace; names only need to be
// unique inside their namespace, and at most IfNameMax (15) bytes.
//
// Both ends get exactly one RX and one TX queue (AF_XDP binds to one queue;
// opts.Queues asks for more),
// the MTU of opts (1500 by default), TX checksum offload turned off (so frames
// the kernel stack sends carry complete checksums; see ENVIRONMENT.md), and
// are up with operstate UP when Connect returns (so the qdisc is attached and
// the first packet is not dropped). The pair is deleted at cleanup of its
// namespaces. Connect fails tb on error.
func Connect(tb testing.TB, a *NS, aName string, b *NS, bName string, opts VethOpts) (*Link, *Link) {
	tb.Helper()
	if a == nil || b == nil {
		tb.Fatal("lab.Connect: nil namespace")
	}
	for _, name := range []string{aName, bName} {
		if name == "" || len(name) > IfNameMax {
			tb.Fatalf("lab.Connect: interface name %q must have 1 to %d bytes", name, IfNameMax)
		}
	}
	if a == b && aName == bName {
		tb.Fatalf("lab.Connect: both ends named %q in %s", aName, a.Name)
	}
	mtu := opts.MTU
	if mtu == 0 {
		mtu = 1500
	}
	bfd := b.FD()
	if bfd < 0 {
		tb.Fatalf("lab.Connect: namespace %s already removed", b.Name)
	}

	attrs := netlink.NewLinkAttrs() // TxQLen -1: kernel default (a zero value would mean txqueuelen 0)
	attrs.Name = aName
	attrs.MTU = mtu
	queues := max(opts.Queues, 1)
	attrs.NumRxQueues = queues
	attrs.NumTxQueues = queues
	attrs.HardwareAddr = opts.MACA
	veth := netlink.NewVeth(attrs)
	veth.PeerName = bName
	// netlink v1.3.1 falls back to the a end's values when these are zero,
	// but set them explicitly so nothing depends on that fallback.
	veth.PeerNumRxQueues = uint32(queues)
	veth.PeerNumTxQueues = uint32(queues)
	veth.PeerMTU = uint32(mtu)
	veth.PeerHardwareAddr = opts.MACB
	veth.PeerNamespace = netlink.NsFd(bfd)
	if err := a.h.LinkAdd(veth); err != nil {
		tb.Fatalf("lab.Connect: veth %s(%s) <-> %s(%s): %v", aName, a.Name, bName, b.Name, err)
	}

	la := setupEnd(tb, a, aName, queues)
	lb := setupEnd(tb, b, bName, queues)
	waitOperUp(tb, la, lb)
	return la, lb
}

func setupEnd(tb testing.TB, n *NS, name string, queues int) *Link {
	tb.Helper()
	nl, err := n.h.LinkByName(name)
	if err != nil {
		tb.Fatalf("lab.Connect: %s in %s: %v", name, n.Name, err)
	}
	at := nl.Attrs()
	if at.NumRxQueues != queues || at.NumTxQueues != queues {
		tb.Fatalf("lab.Connect: %s in %s has %d RX / %d TX queues, want %d/%d", name, n.Name, at.NumRxQueues, at.NumTxQueues, queues, queues)
	}
	l := &Link{NS: n, Name: name, Index: at.Index, MAC: append(net.HardwareAddr(nil), at.HardwareAddr...)}
	if err := l.SetTxChecksum(false); err != nil {
		tb.Fatalf("lab.Connect: %v", err)
	}
	if err := n.h.LinkSetUp(nl); err != nil {
		tb.Fatalf("lab.Connect: set %s up in %s: %v", name, n.Name, err)
	}
	return l
}

// waitOperUp waits until every link reports operstate UP. The kernel attaches
// the real qdisc from its linkwatch work shortly after carrier comes up; until
// then packets are dropped by noop_qdisc.
func waitOperUp(tb testing.TB, links ...*Link) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, l := range links {
		for {
			nl, err := l.NS.h.LinkByIndex(l.Index)
			if err != nil {
				tb.Fatalf("lab.Connect: %s in %s: %v", l.Name, l.NS.Name, err)
			}
			if nl.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("lab.Connect: %s in %s: operstate %v after 5s, want up", l.Name, l.NS.Name, nl.Attrs().OperState)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// String returns "name@namespace".
func (l *Link) String() string { return l.Name + "@" + l.NS.Name }

// AddAddr adds addresses with their prefix length, e.g. "198.18.0.1/24" or
// "2001:2::1/64", to l, in turn. IPv6 addresses are added with
// IFA_F_NODAD so they are usable at once instead of staying tentative for
// about a second of duplicate address detection. It fails tb on error.
func (l *Link) AddAddr(tb testing.TB, prefixes ...string) {
	tb.Helper()
	for _, prefix := range prefixes {
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			tb.Fatalf("lab.AddAddr(%s): %v", l, err)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		a := &netlink.Addr{IPNet: prefixNet(p)}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := l.NS.h.AddrAdd(l.nl(), a); err != nil {
			tb.Fatalf("lab.AddAddr(%s): %s: %v", l, prefix, err)
		}
	}
}

// nl returns a netlink.Link that identifies l by index (all netlink's address
// and neighbour calls need).
func (l *Link) nl() netlink.Link {
	return &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Index: l.Index, Name: l.Name}}
}

// SetUp sets l administratively up or down (ip link set l up|down).
func (l *Link) SetUp(up bool) error {
	if up {
		return l.NS.Handle().LinkSetUp(l.nl())
	}
	return l.NS.Handle().LinkSetDown(l.nl())
}

// SetTxChecksum turns TX checksum offload of l on or off (the legacy ethtool
// ioctl ETHTOOL_STXCSUM, run inside l's namespace; like `ethtool -K l tx on|off`).
// Connect already turns it off.
func (l *Link) SetTxChecksum(on bool) error {
	return l.ethtoolSet(unix.ETHTOOL_STXCSUM, "tx", on)
}

// ethtoolSet turns the feature that ethtool set command cmd controls on or
// off inside l's namespace; feature names it in errors, as ethtool -K does.
func (l *Link) ethtoolSet(cmd uint32, feature string, on bool) error {
	v := uint32(0)
	if on {
		v = 1
	}
	err := l.NS.Do(func() error {
		_, err := ethtool(l.Name, cmd, v)
		return err
	})
	if err != nil {
		return fmt.Errorf("ethtool %s %v on %s: %w", feature, on, l, err)
	}
	return nil
}

// TxChecksum reports whether TX checksum offload is on for l
// (ETHTOOL_GTXCSUM inside l's namespace).
func (l *Link) TxChecksum() (bool, error) {
	var v uint32
	err := l.NS.Do(func() error {
		var err error
		v, err = ethtool(l.Name, unix.ETHTOOL_GTXCSUM, 0)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("ethtool get tx on %s: %w", l, err)
	}
	return v != 0, nil
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with the ifr_data member (40 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(unsafe.Pointer(nil))]byte
}

// ethtool runs one ethtool_value command on dev in the calling thread's
// network namespace and returns the data the kernel wrote back.
func ethtool(dev string, cmd, data uint32) (uint32, error) {
	if len(dev) > IfNameMax {
		return 0, fmt.Errorf("interface name %q too long", dev)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	ev := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(&ev)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, errno
	}
	return ev.data, nil
}

// SetThreadedNAPI writes /sys/class/net/<l>/threaded inside l's namespace.
// With threaded NAPI on, a veth receiver's work runs in kernel threads
// "napi/<l>-<id>" that can be pinned to a CPU, instead of on the sender's CPU
// (see ENVIRONMENT.md: the thread is re-created when an XDP program is
// attached or detached or GRO toggled, so pin it after that). A veth has NAPI
// only while an XDP program is attached or GRO is on (SetGRO); without it the
// kernel refuses with EOPNOTSUPP.
func (l *Link) SetThreadedNAPI(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return l.NS.DoSysfs(func() error {
		return os.WriteFile("/sys/class/net/"+l.Name+"/threaded", []byte(v), 0)
	})
}

// SetGRO turns generic receive offload of l on or off (ETHTOOL_SGRO inside
// l's namespace; like `ethtool -K l gro on|off`). On a veth, GRO on also gives
// the device a NAPI poll loop, which it otherwise has only while an XDP program
// is attached (needed to accept XDP-redirected frames, and for threaded NAPI).
func (l *Link) SetGRO(on bool) error {
	return l.ethtoolSet(unix.ETHTOOL_SGRO, "gro", on)
}

// PinNAPI turns on threaded NAPI for l and pins its NAPI kernel threads
// ("napi/<name>-N") to cpu, so that l's receive work runs where a benchmark
// says and not on whichever CPU sent the frame (ENVIRONMENT.md). Call it
// after attaching XDP programs to l: attaching re-creates the threads.
// Thread names carry only the interface name; the lab's names are unique
// while one benchmark runs.
func (l *Link) PinNAPI(cpu int) error {
	if err := l.SetThreadedNAPI(true); err != nil {
		return fmt.Errorf("threaded NAPI on %s: %w", l, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	pinned := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || !strings.HasPrefix(string(comm), "napi/"+l.Name+"-") {
			continue
		}
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(pid, &set); err != nil {
			return fmt.Errorf("pinning %s: %w", strings.TrimSpace(string(comm)), err)
		}
		pinned++
	}
	if pinned == 0 {
		return fmt.Errorf("no NAPI thread for %s (it has one only with an XDP program attached or GRO on)", l)
	}
	return nil
}
