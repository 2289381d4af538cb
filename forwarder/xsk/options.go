package xsk

import (
	"cmp"
	"fmt"

	"github.com/pnap-project/pnap/internal/setting"
)

// Options size a worker's UMEM and each of its sockets. The zero value is
// usable.
type Options struct {
	// Frames is how many UMEM frames each port brings to its worker's
	// shared UMEM. Default 512.
	Frames int
	// FrameSize in bytes: 2048 or 4096. Default 2048.
	FrameSize int
	// RingSize is the number of entries of each of a socket's four rings;
	// a power of two, at most Frames/2. Default 256.
	//
	// Defaults from ../shared/ENVIRONMENT.md's measurements on veth: 512
	// frames and 256-entry rings beat 4096/2048 (the UMEM falls out of
	// cache).
	RingSize int
	// Copy skips the zero-copy attempt and binds in copy mode.
	Copy bool
}

// DefaultOptions are the sizes a zero Options stands for.
func DefaultOptions() Options { return Options{Frames: 512, FrameSize: 2048, RingSize: 256} }

// fill replaces zero sizes with the defaults.
func (o *Options) fill() {
	d := DefaultOptions()
	o.Frames = cmp.Or(o.Frames, d.Frames)
	o.FrameSize = cmp.Or(o.FrameSize, d.FrameSize)
	o.RingSize = cmp.Or(o.RingSize, d.RingSize)
}

// Validate says which size the kernel or the frame budget would refuse.
// It checks the sizes as they are: NewUmem takes zero for a default, a
// configuration that writes 0 is refused. Errors name the setting as
// pnapd's [forwarder] table does.
func (o Options) Validate() error {
	if o.FrameSize != 2048 && o.FrameSize != 4096 {
		return setting.Errorf("frame_size", "frame_size = %d is not supported; use 2048 or 4096", o.FrameSize)
	}
	if err := setting.First(setting.PowerOfTwo("frames", o.Frames, 64, 1<<20), setting.PowerOfTwo("ring_size", o.RingSize, 1, 1<<20)); err != nil {
		return err
	}
	if 2*o.RingSize > o.Frames {
		// A port's frames must cover its full fill ring and its full TX
		// ring, or a busy port starves its fill ring.
		return &setting.Error{Keys: []string{"ring_size", "frames"}, Msg: fmt.Sprintf("ring_size = %d needs frames >= %d (each port's frames fill its fill ring and its TX ring); lower ring_size or raise frames", o.RingSize, 2*o.RingSize)}
	}
	return nil
}
