package xsk

import (
	"strings"
	"testing"

	"github.com/pnap-project/pnap/bench/lab"
	"golang.org/x/sys/unix"
)

func TestOptions(t *testing.T) {
	var o Options
	if err := o.fill(); err != nil || o != (Options{Frames: 512, FrameSize: 2048, RingSize: 256}) {
		t.Fatalf("defaults %+v, %v", o, err)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{FrameSize: 1500}, "frame size 1500"},
		{Options{RingSize: 100}, "powers of two"},
		{Options{Frames: 300}, "powers of two"},
		{Options{Frames: 256, RingSize: 256}, "needs at least 512 frames"},
	} {
		if err := tc.o.fill(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.o, err, tc.want)
		}
	}
}

// openLab opens a port on queue 0 of a fresh veth in its own namespace.
func openLab(t *testing.T) (*lab.NS, *lab.Link, *Port) {
	lab.RequireRoot(t)
	ns, peer := lab.NewNS(t, "xa"), lab.NewNS(t, "xb")
	l, _ := lab.Connect(t, ns, "p0", peer, "p1", lab.VethOpts{})
	var p *Port
	err := ns.Do(func() error {
		var err error
		p, err = Open(l.Name, l.Index, 0, Options{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return ns, l, p
}

func TestPreferBusyPollSetsSocketOptions(t *testing.T) {
	_, _, p := openLab(t)
	if err := p.PreferBusyPoll(20, 64); err != nil {
		t.Fatal(err)
	}
	// SO_BUSY_POLL_BUDGET can be set but not read back (ENOPROTOOPT).
	for opt, want := range map[int]int{unix.SO_PREFER_BUSY_POLL: 1, unix.SO_BUSY_POLL: 20} {
		got, err := unix.GetsockoptInt(p.FD(), unix.SOL_SOCKET, opt)
		if err != nil || got != want {
			t.Fatalf("socket option %d = %d (%v), want %d", opt, got, err, want)
		}
	}
}
