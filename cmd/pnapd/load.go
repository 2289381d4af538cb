package main

import (
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
	// Sources are read and added one at a time inside one transaction, so
	// only one file's parsed routes are in memory at once (all of them at
	// once peaked at 480 MiB for 4 backbones of full tables), and lookups
	// see the whole load appear as one Version.
	type mrtUse struct {
		b   fib.BackboneID
		sel routes.MRTSelector
	}
	mrtFiles := map[string][]mrtUse{}
	var mrtOrder []string
	var report []loadReport
	add := func(tx *fib.Txn, b fib.BackboneID, source string, rs []routes.Route) error {
		for _, r := range rs {
			if err := tx.Add(b, r.Prefix, r.PathLen); err != nil {
				return fmt.Errorf("backbone %q: %s: %w", cfg.Backbones[b].Name, source, err)
			}
		}
		report = append(report, loadReport{cfg.Backbones[b].Name, source, len(rs)})
		return nil
	}
	err = f.Update(func(tx *fib.Txn) error {
		for i, b := range cfg.Backbones {
			id := fib.BackboneID(i)
			if len(b.Static) > 0 {
				rs := make([]routes.Route, len(b.Static))
				for k, p := range b.Static {
					rs[k] = routes.Route{Prefix: p, PathLen: -1}
				}
				if err := add(tx, id, "static", rs); err != nil {
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
				if err := add(tx, id, rf.Path, rs); err != nil {
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
		// Each MRT file is read once for all the backbones that take a
		// peer from it.
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
				if err := add(tx, u.b, fmt.Sprintf("%s peer %s", path, u.sel), perSel[k]); err != nil {
					return err
				}
				perSel[k] = nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return f, report, nil
}
