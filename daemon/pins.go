package daemon

import (
	"net/netip"
	"sync"
	"time"

	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/optimizer"
)

// pinTable is where the API's pins go: the optimizer's when it runs, else
// straight to the FIB.
type pinTable struct {
	fib *fib.FIB
	opt *optimizer.Optimizer
	mu  sync.Mutex
	m   map[netip.Prefix]optimizer.Pin
}

func (t *pinTable) list() []optimizer.Pin {
	if t.opt != nil {
		return t.opt.Pins()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []optimizer.Pin
	for _, p := range t.m {
		out = append(out, p)
	}
	return out
}

func (t *pinTable) pin(p netip.Prefix, b fib.BackboneID, name string) error {
	if t.opt != nil {
		return t.opt.Pin(p, b)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.fib.Select(p, b); err != nil {
		return err
	}
	t.m[p] = optimizer.Pin{Prefix: p, Backbone: b, Name: name, Since: time.Now()}
	return nil
}

func (t *pinTable) unpin(p netip.Prefix) (bool, error) {
	if t.opt != nil {
		return t.opt.Unpin(p)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[p]; !ok {
		return false, nil
	}
	delete(t.m, p)
	return true, t.fib.ResetSelection(p)
}
