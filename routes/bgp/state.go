package bgp

import (
	"fmt"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// State is a state of the RFC 4271 8.2.2 finite state machine.
type State uint8

const (
	Idle        State = iota // not running
	Connect                  // connecting to the peer
	Active                   // waiting to retry, or for the peer to connect
	OpenSent                 // OPEN sent, waiting for the peer's
	OpenConfirm              // OPENs exchanged, waiting for the peer's KEEPALIVE
	Established              // exchanging UPDATEs
)

func (s State) String() string {
	switch s {
	case Idle:
		return "Idle"
	case Connect:
		return "Connect"
	case Active:
		return "Active"
	case OpenSent:
		return "OpenSent"
	case OpenConfirm:
		return "OpenConfirm"
	case Established:
		return "Established"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Reason says why a session, or an attempt at one, ended.
type Reason uint8

const (
	ReasonNone                 Reason = iota
	ReasonNotificationReceived        // the peer sent a NOTIFICATION
	ReasonNotificationSent            // this speaker sent one (an error in what the peer sent, or a collision)
	ReasonHoldTimerExpired            // nothing from the peer for the hold time (a NOTIFICATION was sent)
	ReasonTCPError                    // the connection failed or could not be made
	ReasonPeerReconnected             // a graceful-restart peer connected anew while Established (RFC 4724 4.2)
	ReasonClosed                      // Run's context ended (Cease sent)
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonNotificationReceived:
		return "notification received"
	case ReasonNotificationSent:
		return "notification sent"
	case ReasonHoldTimerExpired:
		return "hold timer expired"
	case ReasonTCPError:
		return "TCP error"
	case ReasonPeerReconnected:
		return "peer reconnected"
	case ReasonClosed:
		return "closed"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Notification is a NOTIFICATION message (RFC 4271 4.5).
type Notification struct {
	Code, Subcode uint8
	Data          []byte
}

func (n Notification) String() string {
	return bgp.NewNotificationErrorCode(n.Code, n.Subcode).String()
}

// GracefulRestart is what a peer's OPEN said about graceful restart
// (RFC 4724 3).
type GracefulRestart struct {
	// Advertised: the peer sent the capability.
	Advertised bool
	// Time is the peer's Restart Time: how long to keep its routes as
	// stale after the session is lost.
	Time time.Duration
	// Restarted is the Restart State bit: the peer has just restarted.
	Restarted bool
	// Preserved are the negotiated families whose forwarding state the peer
	// says it preserved (F bit). On re-establishment after a restart, stale
	// routes of the other families are to be removed at once (RFC 4724 4.2).
	Preserved []Family
}

// StateEvent is one state change.
type StateEvent struct {
	From, To State
	// Reason is why From was left, when that was not progress towards
	// Established; Err says more.
	Reason Reason
	Err    error
	// Notification is the NOTIFICATION sent or received (Reason
	// NotificationSent, NotificationReceived, HoldTimerExpired, Closed).
	Notification Notification
	// PeerGR is what the peer advertised in the OPEN of the session this
	// event concerns: set when To is Established and when From is.
	PeerGR GracefulRestart
	// KeepStale is set when an Established session was lost in a way that
	// RFC 4724 4.2 lets a helper ride out (TCP failure, hold timer, the peer
	// reconnecting) and the peer had advertised graceful restart: keep its
	// routes, as stale, for PeerGR.Time, and remove those that it has not
	// announced again by its End-of-RIB. Otherwise (NOTIFICATION either way,
	// Close) its routes are to be withdrawn now. (RFC 8538's N bit is not
	// negotiated.)
	KeepStale bool
}

// Stats are a session's counters.
type Stats struct {
	State State
	// EstablishedSince is when the session last became Established; zero
	// when it is not Established.
	EstablishedSince time.Time
	// HoldTime and Families are what the session negotiated, while
	// Established.
	HoldTime time.Duration
	Families []Family
	// Flaps counts the times the session left Established.
	Flaps uint64
	// UpdatesIn and UpdatesOut count UPDATE messages, End-of-RIB included.
	UpdatesIn, UpdatesOut uint64
	// TreatedAsWithdraw counts UPDATEs whose prefixes RFC 7606 made
	// withdrawals; AttributesDiscarded those with attributes it made this
	// speaker ignore.
	TreatedAsWithdraw, AttributesDiscarded uint64
	IPv4, IPv6                             FamilyStats
	// LastError is the last reason a session or an attempt ended.
	LastError string
}

// FamilyStats count one family's prefixes.
type FamilyStats struct {
	// Received and Withdrawn count prefixes announced and withdrawn by the
	// peer (treat-as-withdraw included), since the Session was made.
	Received, Withdrawn uint64
	// Announced is the number of prefixes the peer has from this speaker now.
	Announced int
}

func (s *Stats) family(f Family) *FamilyStats {
	if f == IPv6Unicast {
		return &s.IPv6
	}
	return &s.IPv4
}
