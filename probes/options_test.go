package probes

import (
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/internal/setting/settingtest"
)

func TestOptionsValidate(t *testing.T) {
	settingtest.Validate(t, DefaultOptions, []settingtest.Case[Options]{
		{Set: func(o *Options) { o.TopPrefixes = 0 }, Keys: []string{"top_prefixes"}, Msg: "top_prefixes = 0 is out of range; use 1 to 1000000"},
		{Set: func(o *Options) { o.Timeout = o.Interval }, Keys: []string{"timeout", "interval"}, Msg: `timeout = "5s" is not shorter than interval = "5s"`},
		{Set: func(o *Options) { o.TurnRounds = 0 }, Keys: []string{"TurnRounds"}, Msg: "TurnRounds = 0 is out of range"},
		{Set: func(o *Options) { o.TCPPorts = nil }, Keys: []string{"tcp_ports"}, Msg: "tcp_ports is empty"},
		{Set: func(o *Options) { o.TCPPorts = []int{443, 70000} }, Keys: []string{"tcp_ports[1]"}, Msg: "tcp_ports value 70000 is out of range; use 1 to 65535"},
		{Set: func(o *Options) { o.TCPPorts = []int{443, 80, 443} }, Keys: []string{"tcp_ports[2]"}, Msg: "tcp_ports lists 443 twice"},
		{Set: func(o *Options) { o.SampleRing = 1000 }, Keys: []string{"sample_ring"}, Msg: "sample_ring = 1000 is not a power of two; use 512 or 1024"},
		{Set: func(o *Options) { o.Window = 0 }, Keys: []string{"window"}, Msg: `window = "0s" is not positive`},
		{Set: func(o *Options) { o.Tick = -time.Millisecond }, Keys: []string{"Tick"}, Msg: "Tick"},
	})
}

func TestNewRefusesInvalidOptions(t *testing.T) {
	o := DefaultOptions()
	o.FlowTable = 0
	if _, err := New(o, newFIB(t, 1, nil), nil, nil); err == nil || !strings.HasPrefix(err.Error(), "probes: flow_table = 0") {
		t.Fatalf("New: %v", err)
	}
}
