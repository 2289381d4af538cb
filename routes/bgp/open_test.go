package bgp

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// FuzzOpen feeds arbitrary OPEN bodies to the OPEN check: it must never
// panic, and what it accepts must be usable.
func FuzzOpen(f *testing.F) {
	o, err := (Options{LocalAS: 64500, RouterID: netip.MustParseAddr("192.0.2.1"), PeerAS: 64501, PeerAddr: nh4}).withDefaults()
	if err != nil {
		f.Fatal(err)
	}
	ours, err := o.openMessage(true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ours[headerLen:])
	p := &testPeer{t: f, as: 64501, id: netip.MustParseAddr("192.0.2.2")}
	f.Add(body(f, p.open(90, p.caps())))
	f.Add(body(f, p.open(0, p.caps()[:1])))
	f.Add(body(f, p.open(3, append(p.caps(), bgp.NewCapAddPath([]*bgp.CapAddPathTuple{bgp.NewCapAddPathTuple(bgp.RF_IPv4_UC, bgp.BGP_ADD_PATH_BOTH)}),
		bgp.NewCapLongLivedGracefulRestart(nil), bgp.NewCapFQDN("a", "b"), bgp.NewCapExtendedNexthop(nil)))))
	f.Fuzz(func(t *testing.T, b []byte) {
		pi, err := o.checkOpen(b)
		if err != nil {
			var ne *notifyError
			if !errors.As(err, &ne) || ne.n.Code == 0 {
				t.Fatalf("error %v is no NOTIFICATION", err)
			}
			return
		}
		if pi.families == 0 || pi.families&^o.families() != 0 || pi.as != 64501 || !pi.id.Is4() ||
			(pi.hold != 0 && pi.hold < 3*time.Second) {
			t.Fatalf("accepted %+v", pi)
		}
	})
}
