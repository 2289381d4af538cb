package optimizer

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
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

// Pins are the operator's pins and their effect in the FIB: pinning selects
// the backbone, unpinning returns the prefix to its default. The one Pins
// of a daemon serves the status API whether or not an optimizer runs, so
// that a pin made while the optimizer is off is still one it respects.
// Its methods may be called from any goroutine.
type Pins struct {
	fib    *fib.FIB
	now    func() time.Time
	record func(Event) // the optimizer's event log; nil without one

	mu sync.Mutex // held across the FIB change, so pins and FIB agree
	m  map[netip.Prefix]Pin
}

// NewPins makes the pins of f for a daemon that runs no optimizer. An
// Optimizer makes its own (Optimizer.Pins), which also logs pin events.
func NewPins(f *fib.FIB) *Pins { return newPins(f, time.Now, nil) }

func newPins(f *fib.FIB, now func() time.Time, record func(Event)) *Pins {
	return &Pins{fib: f, now: now, record: record, m: map[netip.Prefix]Pin{}}
}

// Pin selects backbone b for prefix p in the FIB and keeps the optimizer
// off it until Unpin. p must be a prefix in the FIB held by b.
func (s *Pins) Pin(p netip.Prefix, b fib.BackboneID) error {
	bbs := s.fib.Backbones()
	if int(b) >= len(bbs) {
		return fmt.Errorf("no backbone %d", b)
	}
	name := bbs[b].Name
	s.mu.Lock()
	defer s.mu.Unlock()
	// Pinned first, so a Step running meanwhile already leaves it alone.
	old, had := s.m[p]
	s.m[p] = Pin{Prefix: p, Backbone: b, Name: name, Since: s.now()}
	if err := s.fib.Select(p, b); err != nil {
		if had {
			s.m[p] = old
		} else {
			delete(s.m, p)
		}
		return err
	}
	s.log(Event{Time: s.now(), Prefix: p, To: Choice{Backbone: b, Name: name}, Reason: Pinned})
	return nil
}

// Unpin returns p to its default backbone and to the optimizer. It reports
// whether p was pinned.
func (s *Pins) Unpin(p netip.Prefix) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pin, ok := s.m[p]
	if !ok {
		return false, nil
	}
	delete(s.m, p)
	if err := s.fib.ResetSelection(p); err != nil {
		return true, err
	}
	s.log(Event{Time: s.now(), Prefix: p, From: Choice{Backbone: pin.Backbone, Name: pin.Name}, Reason: Unpinned})
	return true, nil
}

// List returns the pins in prefix order (netip.Prefix.Compare: 9.0.0.0/8
// before 10.0.0.0/8, IPv4 before IPv6).
func (s *Pins) List() []Pin {
	s.mu.Lock()
	out := make([]Pin, 0, len(s.m))
	for _, p := range s.m {
		out = append(out, p)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Pin) int { return a.Prefix.Compare(b.Prefix) })
	return out
}

// Has reports whether p is pinned.
func (s *Pins) Has(p netip.Prefix) bool {
	s.mu.Lock()
	_, ok := s.m[p]
	s.mu.Unlock()
	return ok
}

func (s *Pins) log(e Event) {
	if s.record != nil {
		s.record(e)
	}
}
