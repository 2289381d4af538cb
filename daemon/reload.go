package daemon

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pnap-project/pnap/configs"
)

// reload applies a changed configuration file (SIGHUP): routes of every
// backbone (published as one FIB Version, so traffic never misses a lookup)
// and the optimizer's backbone costs and limits. A file that does not load,
// or that changes what needs a restart, is refused and the running
// configuration stays. It returns why it refused, or nil.
func (d *Daemon) reload() error {
	d.notifyReloading()
	defer d.notify(sdReady)
	if err := d.applyReload(); err != nil {
		d.reloads.refused.Add(1)
		return err
	}
	d.reloads.applied.Add(1)
	d.reloads.last.Store(time.Now().UnixNano())
	return nil
}

func (d *Daemon) applyReload() error {
	start := time.Now()
	old := d.cfg.Load()
	path := old.Path
	cfg, err := configs.Load(path)
	var p plan
	if err == nil {
		p, err = newPlan(cfg)
	}
	if err == nil {
		err = reloadable(old, cfg)
	}
	if err != nil {
		d.log.Error("reload refused; still running the previous configuration", "config", path, "error", err)
		return err
	}
	// Stamped before reading: a file that changes meanwhile is read again
	// at the next reload.
	stamps := sourceStamps(cfg)
	changed := func(b int) bool { return b >= len(d.stamps) || d.stamps[b] != stamps[b] }
	unchanged := 0
	for b := range stamps {
		if !changed(b) {
			unchanged++
		}
	}
	added, withdrawn, err := reloadRoutes(cfg, d.fib, d.log, d.learnsFromBGP, changed)
	if err != nil {
		d.log.Error("reload refused; still running the previous configuration", "config", path, "error", err)
		return err
	}
	a, w := d.reloadBGPStatics(cfg)
	added, withdrawn = added+a, withdrawn+w
	live := d.applyLive(p)
	// Everything that differs is reloadable (routes, costs, limits,
	// [optimizer] and most of [probes]), so the new configuration replaces
	// the old whole.
	d.cfg.Store(cfg)
	d.stamps = stamps
	if d.logLevel != nil {
		d.logLevel.Set(slogLevel(cfg.Log.Level))
	}
	st := d.fib.Stats()
	d.log.Info("reloaded", "config", path, "routes_added", added, "routes_withdrawn", withdrawn, "ipv4", st.IPv4Routes, "ipv6", st.IPv6Routes, "backbones_unchanged", unchanged, "settings_changed", strings.Join(live, ","), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// applyLive hands the reloaded [optimizer] and [probes] settings, and the
// backbones' parameters, to the running components, and names the settings
// that changed. reloadable has already refused what they cannot take; a
// refusal here is a bug, logged rather than fatal.
func (d *Daemon) applyLive(p plan) []string {
	live := liveChanges(d.plan, p)
	if d.ctl.opt != nil {
		if err := d.ctl.opt.SetOptions(p.optimizer); err != nil {
			d.log.Error("reload: optimizer settings not applied", "error", err)
		}
	}
	if d.ctl.probes != nil {
		if err := d.ctl.probes.SetOptions(p.probes); err != nil {
			d.log.Error("reload: probes settings not applied", "error", err)
		}
	}
	d.plan.optimizer, d.plan.probes = p.optimizer, p.probes
	return live
}

// reloadRequest is a reload the status API asks of serve, which alone
// applies reloads; err gets the outcome.
type reloadRequest struct{ err chan error }

// reloadFromAPI is POST /v1/reload: the reload a SIGHUP would make, with
// its outcome in the answer, so that `pnapd reload` (and systemctl
// reload) fail when the reload is refused.
func (d *Daemon) reloadFromAPI(r *http.Request) (any, error) {
	if d.apiReloads == nil {
		return nil, &apiError{http.StatusConflict, "pnapd is not serving reloads"}
	}
	start := time.Now()
	req := reloadRequest{err: make(chan error, 1)}
	select {
	case d.apiReloads <- req:
	case <-r.Context().Done():
		return nil, &apiError{http.StatusConflict, "pnapd is busy: " + r.Context().Err().Error()}
	}
	if err := <-req.err; err != nil {
		return nil, &apiError{http.StatusUnprocessableEntity, "reload refused; still running the previous configuration: " + err.Error()}
	}
	return map[string]any{"reloaded": d.cfg.Load().Path, "took": time.Since(start).Round(time.Millisecond).String()}, nil
}

// reloadable says why a new configuration cannot be applied to a running
// pnapd without a restart, or returns nil. Routes and the optimizer's
// backbone parameters reload; interfaces, ports and forwarder settings do not.
func reloadable(old, cur *configs.Config) error {
	var errs []error
	if len(old.Backbones) != len(cur.Backbones) {
		errs = append(errs, fmt.Errorf("the number of backbones changed (%d to %d)", len(old.Backbones), len(cur.Backbones)))
	} else {
		for i := range old.Backbones {
			o, n := old.Backbones[i], cur.Backbones[i]
			switch {
			case o.Name != n.Name:
				errs = append(errs, fmt.Errorf("backbone %d is now %q, was %q", i+1, n.Name, o.Name))
			case o.Interface != n.Interface || o.GatewayV4 != n.GatewayV4 || o.GatewayV6 != n.GatewayV6:
				errs = append(errs, fmt.Errorf("backbone %q: interface or gateway changed", n.Name))
			case o.Preference != n.Preference:
				errs = append(errs, fmt.Errorf("backbone %q: preference changed", n.Name))
			}
		}
	}
	if len(old.Customers) != len(cur.Customers) {
		errs = append(errs, errors.New("customers were added or removed"))
	} else {
		for i, n := range cur.Customers {
			if !sameCustomer(old.Customers[i], n) {
				errs = append(errs, fmt.Errorf("customer %q changed", n.Name))
			}
		}
	}
	if !reflect.DeepEqual(daemonSettings(old.Forwarder), daemonSettings(cur.Forwarder)) {
		errs = append(errs, errors.New("[forwarder] changed"))
	}
	for _, r := range planRestarts(old, cur) {
		errs = append(errs, errors.New(r))
	}
	if old.BGP != cur.BGP {
		errs = append(errs, errors.New("[bgp] changed"))
	}
	if old.API != cur.API {
		errs = append(errs, errors.New("[api] changed"))
	}
	if old.State != cur.State {
		errs = append(errs, errors.New("[state] changed"))
	}
	if old.Log.Format != cur.Log.Format {
		errs = append(errs, errors.New("[log] format changed (its level reloads)"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("these need a restart: %w", errors.Join(errs...))
	}
	return nil
}

func sameCustomer(o, n configs.Customer) bool {
	return o.Name == n.Name && o.Interface == n.Interface && o.AddressV4 == n.AddressV4 && o.AddressV6 == n.AddressV6 &&
		o.NextHopV4 == n.NextHopV4 && o.NextHopV6 == n.NextHopV6 && slices.Equal(o.Routes, n.Routes)
}

// daemonSettings is [forwarder] less the settings the plan compares (as
// the components run them, defaults applied).
func daemonSettings(f configs.Forwarder) configs.Forwarder {
	f.Batch, f.FrameSize, f.Frames, f.RingSize = 0, 0, 0, 0
	return f
}
