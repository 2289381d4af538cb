package xsk

import (
	"strings"
	"testing"
)

func TestOptions(t *testing.T) {
	var o Options
	if o.fill(); o != DefaultOptions() || o != (Options{Frames: 512, FrameSize: 2048, RingSize: 256}) {
		t.Fatalf("defaults %+v", o)
	}
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	for _, tc := range []struct {
		edit func(*Options)
		want string
	}{
		{func(o *Options) { o.FrameSize = 1500 }, "frame_size = 1500"},
		{func(o *Options) { o.FrameSize = 0 }, "frame_size = 0"},
		{func(o *Options) { o.RingSize = 100 }, "not a power of two"},
		{func(o *Options) { o.Frames = 300 }, "not a power of two"},
		{func(o *Options) { o.Frames = 32 }, "out of range"},
		{func(o *Options) { o.Frames, o.RingSize = 256, 256 }, "needs frames >= 512"},
	} {
		o := DefaultOptions()
		tc.edit(&o)
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", o, err, tc.want)
		}
	}
}
