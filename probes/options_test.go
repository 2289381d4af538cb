package probes

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/internal/setting"
)

func TestOptionsValidate(t *testing.T) {
	if err := DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	tests := []struct {
		set  func(o *Options)
		keys []string
		msg  string
	}{
		{func(o *Options) { o.TopPrefixes = 0 }, []string{"top_prefixes"}, "top_prefixes = 0 is out of range; use 1 to 1000000"},
		{func(o *Options) { o.Timeout = o.Interval }, []string{"timeout", "interval"}, `timeout = "10s" is not shorter than interval = "10s"`},
		{func(o *Options) { o.TCPPorts = nil }, []string{"tcp_ports"}, "tcp_ports is empty"},
		{func(o *Options) { o.TCPPorts = []int{443, 70000} }, []string{"tcp_ports[1]"}, "tcp_ports value 70000 is out of range; use 1 to 65535"},
		{func(o *Options) { o.TCPPorts = []int{443, 80, 443} }, []string{"tcp_ports[2]"}, "tcp_ports lists 443 twice"},
		{func(o *Options) { o.SampleRing = 1000 }, []string{"sample_ring"}, "sample_ring = 1000 is not a power of two; use 512 or 1024"},
		{func(o *Options) { o.Window = 0 }, []string{"window"}, `window = "0s" is not positive`},
		{func(o *Options) { o.Tick = -time.Millisecond }, []string{"Tick"}, "Tick"},
	}
	for _, tt := range tests {
		o := DefaultOptions()
		tt.set(&o)
		err := o.Validate()
		var e *setting.Error
		if !errors.As(err, &e) || !slices.Equal(e.Keys, tt.keys) || !strings.HasPrefix(e.Msg, tt.msg) {
			t.Errorf("got %#v, want keys %q and %q", err, tt.keys, tt.msg)
		}
	}
}

func TestNewRefusesInvalidOptions(t *testing.T) {
	o := DefaultOptions()
	o.FlowTable = 0
	if _, err := New(o, newFIB(t, 1, nil), nil, nil); err == nil || !strings.HasPrefix(err.Error(), "probes: flow_table = 0") {
		t.Fatalf("New: %v", err)
	}
}
