package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pnap-project/pnap/optimizer"
)

// What pnapd keeps across restarts and upgrades, in [state] dir: the
// operator's pins, which would otherwise vanish with the process, and the
// optimizer's moves with their hold-downs, without which a restart would
// put every steered prefix back on its default until the measurements had
// rebuilt. The file is replaced whole, atomically (write, fsync, rename,
// fsync the directory), after every pin and unpin, every stateEvery while
// the moves change, and at stop; a file that does not parse, or is not
// pnapd's, is reported and left alone at start, never fatal.

const (
	stateFileName = "state.json"
	stateFormat   = "pnapd-state/1"
	// stateEvery bounds what a crash loses of the optimizer's moves.
	stateEvery = 10 * time.Second
)

type stateFile struct {
	Format string     `json:"format"`
	Saved  time.Time  `json:"saved"`
	Pins   []statePin `json:"pins"`
	// Steers are the optimizer's moves (absent from files of pnapd
	// versions before them, which restore none).
	Steers []stateSteer `json:"steers,omitempty"`
}

type stateSteer struct {
	Prefix   netip.Prefix `json:"prefix"`
	Backbone string       `json:"backbone"`
	Moved    time.Time    `json:"moved"`
	Measured time.Time    `json:"measured,omitzero"`
}

type statePin struct {
	Prefix   netip.Prefix `json:"prefix"`
	Backbone string       `json:"backbone"`
	Since    time.Time    `json:"since"`
}

// statePath is the state file, "" when [state] dir is "".
func (d *Daemon) statePath() string {
	dir := d.cfg.Load().State.Dir
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, stateFileName)
}

// saveState writes the pins to the state file. Callers serialise it
// (stateMu): the API may pin from several connections at once.
func (d *Daemon) saveState() error {
	path := d.statePath()
	if path == "" || d.ctl == nil {
		return nil
	}
	d.stateMu.Lock()
	defer d.stateMu.Unlock()
	st := stateFile{Format: stateFormat, Saved: time.Now().UTC(), Pins: []statePin{}}
	for _, p := range d.ctl.pins.List() {
		st.Pins = append(st.Pins, statePin{p.Prefix, p.Name, p.Since.UTC()})
	}
	if d.ctl.opt != nil {
		for _, s := range d.ctl.opt.Steers() {
			st.Steers = append(st.Steers, stateSteer(s))
		}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomically(path, append(b, '\n'))
}

// keepState saves the state after a change; the change stands if it
// cannot be saved, which is logged.
func (d *Daemon) keepState() {
	if err := d.saveState(); err != nil {
		d.log.Error("state not saved: the pins and moves since the last save will not survive a restart", "file", d.statePath(), "error", err)
	}
}

// writeAtomically replaces path with b such that a crash at any moment
// leaves either the old file or the new one.
func writeAtomically(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".state-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	dh, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = dh.Sync()
	dh.Close()
	return err
}

// startState restores the pins and moves the state file holds, then keeps
// the file current as the optimizer moves prefixes, and saves it a last
// time at stop. It runs after the route sources are loaded; a pin or move
// of a prefix only a BGP session announces cannot be restored before the
// session has sent it (it is logged).
func (d *Daemon) startState(context.Context) (func() error, error) {
	d.restoreState()
	if d.statePath() == "" || d.ctl == nil || d.ctl.opt == nil {
		return func() error { return nil }, nil
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		t := time.NewTicker(stateEvery)
		defer t.Stop()
		last := d.ctl.opt.Steers()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if cur := d.ctl.opt.Steers(); !slices.Equal(cur, last) {
					d.keepState()
					last = cur
				}
			}
		}
	}()
	return func() error { close(done); <-exited; return d.saveState() }, nil
}

// restoreState pins again what the state file says was pinned, where the
// FIB still allows it, and logs what it could not.
func (d *Daemon) restoreState() {
	path := d.statePath()
	if path == "" {
		return
	}
	st, err := readState(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		d.log.Warn("state file ignored", "file", path, "error", err)
		return
	}
	restored := 0
	for _, p := range st.Pins {
		b, ok := d.fib.BackboneID(p.Backbone)
		if !ok {
			d.log.Warn("pin not restored", "prefix", p.Prefix, "backbone", p.Backbone, "why", "no such backbone now")
			continue
		}
		if err := d.ctl.pins.Pin(p.Prefix, b); err != nil {
			d.log.Warn("pin not restored", "prefix", p.Prefix, "backbone", p.Backbone, "why", err.Error())
			continue
		}
		restored++
	}
	moves := 0
	if d.ctl.opt != nil && len(st.Steers) > 0 {
		steers := make([]optimizer.Steer, len(st.Steers))
		for i, s := range st.Steers {
			steers[i] = optimizer.Steer(s)
		}
		var errs []error
		moves, errs = d.ctl.opt.Restore(steers)
		// A backbone gone since can strand thousands: the first few say why.
		for _, err := range errs[:min(len(errs), 10)] {
			d.log.Warn("move not restored", "why", err.Error())
		}
	}
	d.log.Info("state restored", "file", path, "pins", restored, "of", len(st.Pins), "moves", moves, "of", len(st.Steers), "saved", st.Saved)
}

func readState(path string) (stateFile, error) {
	var st stateFile
	b, err := os.ReadFile(path)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("not pnapd's state: %w", err)
	}
	if st.Format != stateFormat {
		return st, fmt.Errorf("format %q, not %q", st.Format, stateFormat)
	}
	return st, nil
}
