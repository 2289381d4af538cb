package bgp

import (
	"encoding/binary"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

const (
	headerLen  = bgp.BGP_HEADER_LENGTH      // 19
	maxMessage = bgp.BGP_MAX_MESSAGE_LENGTH // 4096: no RFC 8654 extended messages
)

// Message types (RFC 4271 4.1, RFC 2918 3).
const (
	msgOpen         = bgp.BGP_MSG_OPEN
	msgUpdate       = bgp.BGP_MSG_UPDATE
	msgNotification = bgp.BGP_MSG_NOTIFICATION
	msgKeepalive    = bgp.BGP_MSG_KEEPALIVE
	msgRouteRefresh = bgp.BGP_MSG_ROUTE_REFRESH
)

// checkHeader checks a message header (RFC 4271 6.1) and returns the
// message's type and body length.
func checkHeader(h *[headerLen]byte) (typ uint8, n int, err error) {
	for _, b := range h[:16] {
		if b != 0xff {
			return 0, 0, notifyf(bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED, nil, "marker is not all ones")
		}
	}
	l := int(binary.BigEndian.Uint16(h[16:]))
	typ = h[18]
	lo, hi := 0, 0
	switch typ {
	case msgOpen:
		lo, hi = 29, maxMessage
	case msgUpdate:
		lo, hi = 23, maxMessage
	case msgNotification:
		lo, hi = 21, maxMessage
	case msgKeepalive:
		lo, hi = 19, 19
	case msgRouteRefresh:
		lo, hi = 23, 23
	default:
		return 0, 0, notifyf(bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_TYPE, []byte{typ}, "message type %d", typ)
	}
	if l < lo || l > hi {
		return 0, 0, notifyf(bgp.BGP_ERROR_MESSAGE_HEADER_ERROR, bgp.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, append([]byte(nil), h[16:18]...),
			"length %d for message type %d", l, typ)
	}
	return typ, l - headerLen, nil
}

var keepaliveMessage = func() []byte {
	b := make([]byte, headerLen)
	for i := range 16 {
		b[i] = 0xff
	}
	b[17] = headerLen
	b[18] = msgKeepalive
	return b
}()

// notificationMessage encodes n.
func notificationMessage(n Notification) []byte {
	b, err := bgp.NewBGPNotificationMessage(n.Code, n.Subcode, n.Data).Serialize()
	if err != nil {
		// Only data longer than a message can fail: send it without.
		b, _ = bgp.NewBGPNotificationMessage(n.Code, n.Subcode, nil).Serialize()
	}
	return b
}

// endOfRIB is the End-of-RIB marker of f (RFC 4724 2).
func endOfRIB(f Family) []byte {
	b, _ := bgp.NewEndOfRib(gobgpFamily(f)).Serialize() // fixed content: cannot fail
	return b
}

// routeRefreshMessage is a ROUTE-REFRESH request for f (RFC 2918 3).
func routeRefreshMessage(f Family) []byte {
	g := gobgpFamily(f)
	b, _ := bgp.NewBGPRouteRefreshMessage(g.Afi(), 0, g.Safi()).Serialize() // fixed content: cannot fail
	return b
}
