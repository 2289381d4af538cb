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
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("the defaults are refused: %v", err)
	}
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{FrameSize: 1500}, "frame_size = 1500"},
		{Options{RingSize: 100}, "not a power of two"},
		{Options{Frames: 300}, "not a power of two"},
		{Options{Frames: 32}, "out of range"},
		{Options{Frames: 256, RingSize: 256}, "needs frames >= 512"},
	} {
		if err := tc.o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.o, err, tc.want)
		}
	}
}
