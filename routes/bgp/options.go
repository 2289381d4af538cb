package bgp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Family is an address family this speaker negotiates (RFC 4760 AFI/SAFI).
// The zero Family is not valid.
type Family uint8

const (
	IPv4Unicast Family = 1 + iota // AFI 1, SAFI 1
	IPv6Unicast                   // AFI 2, SAFI 1
)

func (f Family) String() string {
	switch f {
	case IPv4Unicast:
		return "ipv4-unicast"
	case IPv6Unicast:
		return "ipv6-unicast"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// familyOf is the Family of a prefix or address.
func familyOf(a netip.Addr) Family {
	if a.Is4() {
		return IPv4Unicast
	}
	return IPv6Unicast
}

// gobgpFamily is f as GoBGP names it.
func gobgpFamily(f Family) bgp.Family {
	if f == IPv6Unicast {
		return bgp.RF_IPv6_UC
	}
	return bgp.RF_IPv4_UC
}

// familySet is a set of Families, one bit each.
type familySet uint8

func (s familySet) has(f Family) bool { return s&(1<<f) != 0 }
func (s *familySet) add(f Family)     { *s |= 1 << f }

// each yields the members of s in Family order.
func (s familySet) each(yield func(Family) bool) {
	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		if s.has(f) && !yield(f) {
			return
		}
	}
}

// Options configure a Session. Zero fields take the defaults stated; NewSession
// rejects values that BGP cannot carry, naming them.
type Options struct {
	// LocalAS is this speaker's AS number, 4-octet (RFC 6793): when it does
	// not fit in 16 bits the OPEN carries AS_TRANS (23456) and the real
	// number in the 4-octet AS capability.
	LocalAS uint32
	// RouterID is the BGP Identifier, an IPv4 address other than 0.0.0.0.
	RouterID netip.Addr
	// PeerAS is the AS the peer must announce in its OPEN. PeerAS ==
	// LocalAS makes the session internal (iBGP).
	PeerAS uint32
	// PeerAddr is the neighbour's address; also how the Listener matches
	// an incoming connection to this Session.
	PeerAddr netip.Addr
	// PeerPort is the port connected to (default 179).
	PeerPort int
	// LocalAddr, if valid, is the source address of outgoing connections.
	// It must be of PeerAddr's family.
	LocalAddr netip.Addr
	// Passive sessions never connect: they wait for the Listener to hand
	// them the peer's connection.
	Passive bool
	// HoldTime is the hold time offered in the OPEN (default 90s): at
	// least 3s (RFC 4271 4.2), whole seconds, at most 65535s, or NoHoldTime
	// to offer 0. The session uses the smaller of both sides' offers; 0
	// means neither keepalives nor a hold timer.
	HoldTime time.Duration
	// ConnectRetry is the wait between connection attempts and after a
	// session ends (default 5s).
	ConnectRetry time.Duration
	// Password, if set, signs every segment with TCP MD5 (RFC 2385), on
	// outgoing connections and, through the Listener, incoming ones. At most
	// 80 bytes (the kernel's TCP_MD5SIG_MAXKEYLEN).
	Password string
	// Families are the address families offered (default both). The session
	// uses those the peer offers too; with none in common the OPEN is refused.
	Families []Family
	// RestartTime, when not 0, advertises the graceful restart capability
	// (RFC 4724) with this restart time (whole seconds, at most 4095s) and
	// no address family: this speaker helps a restarting peer but preserves
	// no forwarding state of its own. The Restart State bit is set until a
	// session of this Session is first Established: a speaker that has just
	// started has restarted, and its peer must not wait for its End-of-RIB
	// before sending its routes (RFC 4724 3).
	RestartTime time.Duration

	// OnChanges receives the route changes of each UPDATE, in the order the
	// message lists them (withdrawals first). It is called on the session's
	// goroutine, must return quickly, and must not retain ch or the
	// Communities slices in it. Nil drops them (an announce-only session).
	OnChanges func(ch []Change)
	// OnEndOfRIB is called when the peer sends the End-of-RIB marker for f
	// (RFC 4724 2): its initial table, or its re-announcement after a
	// graceful restart, is complete. Called on the session's goroutine.
	OnEndOfRIB func(f Family)
	// OnState is called on every state change, on the session's goroutine.
	OnState func(ev StateEvent)
	// Log receives the session's log lines (default: none).
	Log *slog.Logger
}

// Change is one prefix of an UPDATE: reachable with the path attributes
// given, or withdrawn.
type Change struct {
	// Prefix is canonical (masked); IPv4 prefixes are 4-byte addresses.
	Prefix netip.Prefix
	// Withdraw is set for an explicit withdrawal and for a prefix of an
	// UPDATE that RFC 7606 says to treat as withdrawn. The other fields are
	// then zero.
	Withdraw bool
	// PathLen is the AS_PATH length as best-path selection counts it: an
	// AS_SET counts 1 (RFC 4271 9.1.2.2), confederation segments 0
	// (RFC 5065 5.3). From a 2-octet peer the AS_PATH and AS4_PATH merged
	// per RFC 6793 4.2.3 have, by that rule, the AS_PATH's length.
	PathLen int
	// NextHop is NEXT_HOP for IPv4 NLRI, MP_REACH_NLRI's next hop
	// otherwise: the global IPv6 address, or the link-local one (without a
	// zone) when the peer sent no global one.
	NextHop netip.Addr
	// LocalPref is LOCAL_PREF from an internal peer; 0 when absent and
	// always from an external peer, which RFC 4271 5.1.5 says to ignore.
	LocalPref uint32
	// Communities are the UPDATE's COMMUNITIES (RFC 1997), shared by all
	// its Changes: valid only during the OnChanges call.
	Communities []uint32
}

// Route is a route this speaker announces.
type Route struct {
	// Prefix is the destination, sent masked.
	Prefix netip.Prefix
	// NextHop is the address the peer is to forward to, of Prefix's family
	// (IPv4 next hops for IPv6 prefixes and the reverse are not supported).
	NextHop netip.Addr
	// LocalPref is sent to internal peers only (100 when 0).
	LocalPref uint32
	// Communities are sent as COMMUNITIES when not empty.
	Communities []uint32
}

// Defaults.
const (
	DefaultPort         = 179
	DefaultHoldTime     = 90 * time.Second
	DefaultConnectRetry = 5 * time.Second
	maxPasswordLen      = 80 // TCP_MD5SIG_MAXKEYLEN
	maxRestartTime      = 4095 * time.Second

	// NoHoldTime as Options.HoldTime offers a hold time of 0: no
	// keepalives and no hold timer, if the peer offers 0 too.
	NoHoldTime time.Duration = -1
)

// withDefaults returns o with its zero fields defaulted, or an error naming
// the first field that BGP cannot carry.
func (o Options) withDefaults() (Options, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if o.LocalAS == 0 {
		bad("LocalAS: 0 is not an AS number")
	}
	if o.PeerAS == 0 {
		bad("PeerAS: 0 is not an AS number")
	}
	if !o.RouterID.Is4() || o.RouterID.IsUnspecified() {
		bad("RouterID %v: must be an IPv4 address other than 0.0.0.0", o.RouterID)
	}
	o.PeerAddr = o.PeerAddr.Unmap()
	if !o.PeerAddr.IsValid() || o.PeerAddr.IsUnspecified() {
		bad("PeerAddr %v: must be the neighbour's address", o.PeerAddr)
	}
	if o.PeerPort == 0 {
		o.PeerPort = DefaultPort
	}
	if o.PeerPort < 0 || o.PeerPort > 65535 {
		bad("PeerPort %d: must be 1 to 65535", o.PeerPort)
	}
	o.LocalAddr = o.LocalAddr.Unmap()
	if o.LocalAddr.IsValid() && o.LocalAddr.Is4() != o.PeerAddr.Is4() {
		bad("LocalAddr %v: must be of the family of PeerAddr %v", o.LocalAddr, o.PeerAddr)
	}
	if o.HoldTime == 0 {
		o.HoldTime = DefaultHoldTime
	}
	switch {
	case o.HoldTime == NoHoldTime:
	case o.HoldTime < 0:
		bad("HoldTime %v: negative (0 means the default, %v; NoHoldTime offers 0)", o.HoldTime, DefaultHoldTime)
	case o.HoldTime < 3*time.Second:
		bad("HoldTime %v: must be at least 3s (RFC 4271 4.2)", o.HoldTime)
	case o.HoldTime > 65535*time.Second:
		bad("HoldTime %v: must be at most 65535s", o.HoldTime)
	case o.HoldTime%time.Second != 0:
		bad("HoldTime %v: must be whole seconds", o.HoldTime)
	}
	if o.ConnectRetry == 0 {
		o.ConnectRetry = DefaultConnectRetry
	}
	if o.ConnectRetry < 0 {
		bad("ConnectRetry %v: negative", o.ConnectRetry)
	}
	if len(o.Password) > maxPasswordLen {
		bad("Password: %d bytes, TCP MD5 keys have at most %d", len(o.Password), maxPasswordLen)
	}
	if len(o.Families) == 0 {
		o.Families = []Family{IPv4Unicast, IPv6Unicast}
	}
	var seen familySet
	for _, f := range o.Families {
		if f != IPv4Unicast && f != IPv6Unicast {
			bad("Families: %v is not IPv4Unicast or IPv6Unicast", f)
			continue
		}
		if seen.has(f) {
			bad("Families: %v listed twice", f)
		}
		seen.add(f)
	}
	switch {
	case o.RestartTime < 0:
		bad("RestartTime %v: negative", o.RestartTime)
	case o.RestartTime > maxRestartTime:
		bad("RestartTime %v: must be at most %v (12 bits of seconds, RFC 4724 3)", o.RestartTime, maxRestartTime)
	case o.RestartTime%time.Second != 0:
		bad("RestartTime %v: must be whole seconds", o.RestartTime)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("bgp: peer %v: %w", o.PeerAddr, err)
	}
	return o, nil
}

// families is o.Families as a set.
func (o *Options) families() familySet {
	var s familySet
	for _, f := range o.Families {
		s.add(f)
	}
	return s
}

// internal reports whether the session is iBGP.
func (o *Options) internal() bool { return o.LocalAS == o.PeerAS }
