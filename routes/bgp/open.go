package bgp

import (
	"errors"
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// peerInfo is what the peer's OPEN settled for a connection.
type peerInfo struct {
	as       uint32
	id       netip.Addr
	hold     time.Duration // negotiated: the smaller offer
	families familySet     // offered by both
	as4      bool          // 4-octet AS capability (RFC 6793)
	refresh  bool          // route refresh capability (RFC 2918)
	gr       GracefulRestart
}

// openMessage is this speaker's OPEN. restarted sets graceful restart's
// Restart State bit.
func (o *Options) openMessage(restarted bool) ([]byte, error) {
	var caps []bgp.ParameterCapabilityInterface
	for _, f := range o.Families {
		caps = append(caps, bgp.NewCapMultiProtocol(gobgpFamily(f)))
	}
	caps = append(caps, bgp.NewCapRouteRefresh(), bgp.NewCapFourOctetASNumber(o.LocalAS))
	if o.RestartTime > 0 {
		// No <AFI, SAFI> tuples: this speaker preserves no forwarding state
		// across its own restarts but helps a restarting peer (RFC 4724 3).
		caps = append(caps, bgp.NewCapGracefulRestart(restarted, false, uint16(o.RestartTime/time.Second), nil))
	}
	as := uint16(bgp.AS_TRANS)
	if o.LocalAS <= 0xffff {
		as = uint16(o.LocalAS)
	}
	hold := uint16(max(o.HoldTime, 0) / time.Second)
	m, err := bgp.NewBGPOpenMessage(as, hold, o.RouterID, []bgp.OptionParameterInterface{bgp.NewOptionParameterCapability(caps)})
	if err != nil {
		return nil, err
	}
	return m.Serialize()
}

// checkOpen checks the body of the peer's OPEN (RFC 4271 6.2) and
// negotiates the session. An error is a *notifyError to send.
func (o *Options) checkOpen(body []byte) (*peerInfo, error) {
	m, err := bgp.ParseBGPBody(&bgp.BGPHeader{Len: uint16(headerLen + len(body)), Type: msgOpen}, body)
	if err != nil {
		var me *bgp.MessageError
		if errors.As(err, &me) && me.TypeCode != 0 {
			return nil, notifyf(me.TypeCode, me.SubTypeCode, me.Data, "OPEN: %s", me.Message)
		}
		return nil, notifyf(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, 0, nil, "OPEN: %v", err)
	}
	open := m.Body.(*bgp.BGPOpen)
	if open.Version != 4 {
		return nil, notifyf(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_UNSUPPORTED_VERSION_NUMBER, []byte{0, 4},
			"version %d", open.Version)
	}
	// Peer AS (the 4-octet capability's when present), BGP Identifier,
	// hold time of 1 or 2 seconds.
	as, err := bgp.ValidateOpenMsg(open, o.PeerAS, o.LocalAS, o.RouterID)
	if err != nil {
		var me *bgp.MessageError
		if !errors.As(err, &me) {
			return nil, notifyf(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, 0, nil, "OPEN: %v", err)
		}
		return nil, notifyf(me.TypeCode, me.SubTypeCode, me.Data, "OPEN: %s", me.Message)
	}
	p := &peerInfo{as: as, id: open.ID}
	var offered familySet
	anyMP := false
	for _, param := range open.OptParams {
		pc, ok := param.(*bgp.OptionParameterCapability)
		if !ok {
			// RFC 5492 3: capabilities are the only optional parameter.
			return nil, notifyf(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_UNSUPPORTED_OPTIONAL_PARAMETER, nil,
				"OPEN: optional parameter other than capabilities")
		}
		for _, c := range pc.Capability {
			switch c := c.(type) {
			case *bgp.CapMultiProtocol:
				anyMP = true
				if f, ok := afiSAFI(c.CapValue.Afi(), c.CapValue.Safi()); ok {
					offered.add(f)
				}
			case *bgp.CapFourOctetASNumber:
				p.as4 = true
			case *bgp.CapRouteRefresh, *bgp.CapRouteRefreshCisco:
				p.refresh = true
			case *bgp.CapGracefulRestart:
				p.gr = gracefulRestartOf(c)
			}
		}
	}
	if !anyMP {
		offered.add(IPv4Unicast) // RFC 4760 8: a peer without the capability speaks IPv4 unicast
	}
	p.families = offered & o.families()
	if p.families == 0 {
		var data []byte
		for _, f := range o.Families {
			b, _ := bgp.NewCapMultiProtocol(gobgpFamily(f)).Serialize()
			data = append(data, b...)
		}
		return nil, notifyf(bgp.BGP_ERROR_OPEN_MESSAGE_ERROR, bgp.BGP_ERROR_SUB_UNSUPPORTED_CAPABILITY, data,
			"OPEN: no address family in common (we offer %v)", o.Families)
	}
	preserved := p.gr.Preserved[:0]
	for _, f := range p.gr.Preserved {
		if p.families.has(f) {
			preserved = append(preserved, f)
		}
	}
	p.gr.Preserved = preserved
	p.hold = min(max(o.HoldTime, 0), time.Duration(open.HoldTime)*time.Second)
	return p, nil
}

// gracefulRestartOf reads a peer's graceful restart capability (RFC 4724
// 3): its restart time, the Restart State bit, and the families whose
// forwarding state it preserved (F bit).
func gracefulRestartOf(c *bgp.CapGracefulRestart) GracefulRestart {
	gr := GracefulRestart{
		Advertised: true,
		Time:       time.Duration(c.Time) * time.Second,
		Restarted:  c.Flags&0x8 != 0,
	}
	for _, t := range c.Tuples {
		if f, ok := afiSAFI(t.AFI, t.SAFI); ok && t.Flags&0x80 != 0 {
			gr.Preserved = append(gr.Preserved, f)
		}
	}
	return gr
}
