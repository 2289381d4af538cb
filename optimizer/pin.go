package optimizer

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	"github.com/pnap-project/pnap/fib"
)

// Pin is an operator's choice for a prefix, which the optimizer leaves
// alone: it neither moves a pinned prefix for a better score nor evacuates
// it from a failed backbone (the operator asked for that backbone).
type Pin struct {
	Prefix   netip.Prefix
	Backbone fib.BackboneID
	Name     string
	Since    time.Time
}

// Pin selects backbone b for prefix p in the FIB and keeps the optimizer
// off it until Unpin. p must be a prefix in the FIB held by b.
func (o *Optimizer) Pin(p netip.Prefix, b fib.BackboneID) error {
	if int(b) >= len(o.bb) {
		return fmt.Errorf("no backbone %d", b)
	}
	o.pinMu.Lock()
	defer o.pinMu.Unlock()
	// Pinned first, so a Step running meanwhile already leaves it alone.
	old, had := o.pins[p]
	o.pins[p] = Pin{Prefix: p, Backbone: b, Name: o.bb[b].name, Since: o.opt.Now()}
	if err := o.fib.Select(p, b); err != nil {
		if had {
			o.pins[p] = old
		} else {
			delete(o.pins, p)
		}
		return err
	}
	o.record(Event{Time: o.opt.Now(), Prefix: p, To: Choice{Backbone: b, Name: o.bb[b].name}, Reason: Pinned})
	return nil
}

// Unpin returns p to its default backbone and to the optimizer. It reports
// whether p was pinned.
func (o *Optimizer) Unpin(p netip.Prefix) (bool, error) {
	o.pinMu.Lock()
	defer o.pinMu.Unlock()
	pin, ok := o.pins[p]
	if !ok {
		return false, nil
	}
	delete(o.pins, p)
	if err := o.fib.ResetSelection(p); err != nil {
		return true, err
	}
	o.record(Event{Time: o.opt.Now(), Prefix: p, From: Choice{Backbone: pin.Backbone, Name: pin.Name}, Reason: Unpinned})
	return true, nil
}

// Pins lists the pinned prefixes, in prefix order.
func (o *Optimizer) Pins() []Pin {
	o.pinMu.Lock()
	out := make([]Pin, 0, len(o.pins))
	for _, p := range o.pins {
		out = append(out, p)
	}
	o.pinMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	return out
}

// pinned reports whether p is pinned (Step's check).
func (o *Optimizer) pinned(p netip.Prefix) bool {
	o.pinMu.Lock()
	_, ok := o.pins[p]
	o.pinMu.Unlock()
	return ok
}
