package main

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/fib/routes"
)

// loadReport says what loadFIB read, for logs and `pnapd check`.
type loadReport struct {
	Backbone string
	Source   string
	Routes   int
}

// forEachSource reads every backbone's route sources (static, route files,
// MRT peers) one at a time and hands each to fn, so that only one file's
// parsed routes are in memory at once (all of them at once peaked at
// 480 MiB for 4 backbones of full tables). Each MRT file is read once for
// all the backbones that take a peer from it.
func forEachSource(cfg *configs.Config, log *slog.Logger, fn func(b fib.BackboneID, source string, rs []routes.Route) error) error {
	type mrtUse struct {
		b   fib.BackboneID
		sel routes.MRTSelector
	}
	mrtFiles := map[string][]mrtUse{}
	var mrtOrder []string
	for i, b := range cfg.Backbones {
		id := fib.BackboneID(i)
		if len(b.Static) > 0 {
			rs := make([]routes.Route, len(b.Static))
			for k, p := range b.Static {
				rs[k] = routes.Route{Prefix: p, PathLen: -1}
			}
			if err := fn(id, "static", rs); err != nil {
				return err
			}
		}
		for _, rf := range b.RouteFiles {
			start := time.Now()
			rs, err := routes.ReadPrefixFile(rf.Path)
			if err != nil {
				return fmt.Errorf("backbone %q: %w", b.Name, err)
			}
			log.Debug("read route file", "backbone", b.Name, "file", rf.Path, "routes", len(rs), "took", time.Since(start))
			if err := fn(id, rf.Path, rs); err != nil {
				return err
			}
		}
		for _, m := range b.MRT {
			if _, ok := mrtFiles[m.Path]; !ok {
				mrtOrder = append(mrtOrder, m.Path)
			}
			mrtFiles[m.Path] = append(mrtFiles[m.Path], mrtUse{id, routes.MRTSelector{AS: m.PeerAS, Address: m.PeerAddress}})
		}
	}
	for _, path := range mrtOrder {
		uses := mrtFiles[path]
		sels := make([]routes.MRTSelector, len(uses))
		for k, u := range uses {
			sels[k] = u.sel
		}
		start := time.Now()
		_, perSel, err := routes.ReadMRTFile(path, sels)
		if err != nil {
			return err
		}
		log.Debug("read MRT dump", "file", path, "peers", len(uses), "took", time.Since(start))
		for k, u := range uses {
			if err := fn(u.b, fmt.Sprintf("%s peer %s", path, u.sel), perSel[k]); err != nil {
				return err
			}
			perSel[k] = nil
		}
	}
	return nil
}

// loadFIB builds the FIB from a configuration's backbones and route sources,
// publishing everything as one Version.
func loadFIB(cfg *configs.Config, log *slog.Logger) (*fib.FIB, []loadReport, error) {
	bbs := make([]fib.Backbone, len(cfg.Backbones))
	for i, b := range cfg.Backbones {
		bbs[i] = fib.Backbone{Name: b.Name, Preference: b.Preference}
	}
	f, err := fib.New(bbs, fib.Options{})
	if err != nil {
		return nil, nil, err
	}
	var report []loadReport
	err = f.Update(func(tx *fib.Txn) error {
		return forEachSource(cfg, log, func(b fib.BackboneID, source string, rs []routes.Route) error {
			for _, r := range rs {
				if err := tx.Add(b, r.Prefix, r.PathLen); err != nil {
					return fmt.Errorf("backbone %q: %s: %w", cfg.Backbones[b].Name, source, err)
				}
			}
			report = append(report, loadReport{cfg.Backbones[b].Name, source, len(rs)})
			return nil
		})
	})
	if err != nil {
		return nil, nil, err
	}
	return f, report, nil
}

// reloadRoutes makes each backbone's routes those of cfg's sources. Every
// source is read before anything changes, so a bad file leaves the running
// routes as they were; the new routes of all backbones are then published
// as one Version (fib.Replace: prefixes that stay keep their RouteID and
// selection, so traffic to them never misses a lookup).
func reloadRoutes(cfg *configs.Config, f *fib.FIB, log *slog.Logger) (added, withdrawn int, err error) {
	per := make([][]routes.Route, len(cfg.Backbones))
	err = forEachSource(cfg, log, func(b fib.BackboneID, _ string, rs []routes.Route) error {
		per[b] = append(per[b], rs...)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	err = f.Update(func(tx *fib.Txn) error {
		for b, rs := range per {
			a, w, err := tx.Replace(fib.BackboneID(b), rs)
			if err != nil {
				return fmt.Errorf("backbone %q: %w", cfg.Backbones[b].Name, err)
			}
			added, withdrawn = added+a, withdrawn+w
		}
		return nil
	})
	return added, withdrawn, err
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
		for i := range old.Customers {
			o, n := old.Customers[i], cur.Customers[i]
			if o.Name != n.Name || o.Interface != n.Interface || o.AddressV4 != n.AddressV4 || o.AddressV6 != n.AddressV6 || fmt.Sprint(o.Routes) != fmt.Sprint(n.Routes) {
				errs = append(errs, fmt.Errorf("customer %q changed", n.Name))
			}
		}
	}
	if fmt.Sprint(old.Forwarder) != fmt.Sprint(cur.Forwarder) {
		errs = append(errs, errors.New("[forwarder] changed"))
	}
	if controlChanged(old, cur) || fmt.Sprint(old.API) != fmt.Sprint(cur.API) {
		errs = append(errs, errors.New("[probes], [optimizer] or [api] changed"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("these need a restart: %w", errors.Join(errs...))
	}
	return nil
}
