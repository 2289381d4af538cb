package optimizer

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/pnap-project/pnap/fib"
)

// Steer is a prefix the optimizer has moved, as a restart keeps it: where
// it is selected, when it last moved (its hold-down runs from then), and
// when that backbone was last measured for it (an override unmeasured for
// StaleAfter goes back to its default). Without them a restart would put
// every steered prefix back on its default and move it again once the
// measurements had rebuilt: a flap of the whole table.
type Steer struct {
	Prefix   netip.Prefix
	Backbone string
	Moved    time.Time
	Measured time.Time // zero: never
}

// Steers are the prefixes the optimizer keeps off their default backbone
// or holds after a move, by prefix. Pinned prefixes are the operator's,
// not in it.
func (o *Optimizer) Steers() []Steer {
	o.stepMu.Lock()
	defer o.stepMu.Unlock()
	out := make([]Steer, 0, len(o.tracked))
	for p, st := range o.tracked {
		e, ok := o.fib.Route(p)
		if !ok || st.lastMove == 0 || o.pins.Has(p) {
			continue
		}
		s := Steer{Prefix: p, Backbone: o.bb[e.Backbone].name, Moved: time.Unix(0, st.lastMove).UTC()}
		if st.measured != 0 {
			s.Measured = time.Unix(0, st.measured).UTC()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Steer) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out
}

// Restore selects each steer's backbone again and takes up its hold-down
// where it was, as if the optimizer had made the move. A steer whose
// prefix is pinned, has no route, or whose backbone is unknown or no longer
// holds the prefix is left out, with the reason in errs.
func (o *Optimizer) Restore(steers []Steer) (restored int, errs []error) {
	o.stepMu.Lock()
	defer o.stepMu.Unlock()
	for _, s := range steers {
		if err := o.restore(s); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", s.Prefix, err))
			continue
		}
		restored++
	}
	return restored, errs
}

func (o *Optimizer) restore(s Steer) error {
	if o.pins.Has(s.Prefix) {
		return fmt.Errorf("pinned")
	}
	b, ok := o.fib.BackboneID(s.Backbone)
	if !ok {
		return fmt.Errorf("no backbone %q now", s.Backbone)
	}
	e, ok := o.fib.Route(s.Prefix)
	if !ok {
		return fib.ErrNoRoute
	}
	def := o.fib.DefaultAmong(e.Route, e.Holders)
	var err error
	if b == def {
		err = o.fib.ResetSelection(s.Prefix)
	} else {
		err = o.fib.SelectRoute(e.Route, b)
	}
	if err != nil {
		return err
	}
	st := o.tracked[s.Prefix]
	o.setOverride(&st, b != def)
	st.lastMove, st.measured, st.seen = s.Moved.UnixNano(), 0, 0
	if !s.Measured.IsZero() {
		st.measured = s.Measured.UnixNano()
	}
	o.tracked[s.Prefix] = st
	return nil
}
