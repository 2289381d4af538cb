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
// publishing everything as one Version. Each MRT file is read once for all
// the backbones that take a peer from it.
func loadFIB(cfg *configs.Config, log *slog.Logger) (*fib.FIB, []loadReport, error) {
	bbs := make([]fib.Backbone, len(cfg.Backbones))
	for i, b := range cfg.Backbones {
		bbs[i] = fib.Backbone{Name: b.Name, Preference: b.Preference}
	}
	f, err := fib.New(bbs, fib.Options{})
	if err != nil {
		return nil, nil, err
	}
	type pending struct {
		b      fib.BackboneID
		source string
		rs     []routes.Route
	}
	var all []pending
	// MRT files: one read per file, one selector per backbone using it.
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
			all = append(all, pending{id, "static", rs})
		}
		for _, rf := range b.RouteFiles {
			start := time.Now()
			rs, err := routes.ReadPrefixFile(rf.Path)
			if err != nil {
				return nil, nil, fmt.Errorf("backbone %q: %w", b.Name, err)
			}
			log.Debug("read route file", "backbone", b.Name, "file", rf.Path, "routes", len(rs), "took", time.Since(start))
			all = append(all, pending{id, rf.Path, rs})
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
			return nil, nil, err
		}
		for k, u := range uses {
			all = append(all, pending{u.b, fmt.Sprintf("%s peer %s", path, u.sel), perSel[k]})
		}
		log.Debug("read MRT dump", "file", path, "peers", len(uses), "took", time.Since(start))
	}
	var report []loadReport
	err = f.Update(func(tx *fib.Txn) error {
		for _, p := range all {
			for _, r := range p.rs {
				if err := tx.Add(p.b, r.Prefix, r.PathLen); err != nil {
					return fmt.Errorf("backbone %q: %s: %w", cfg.Backbones[p.b].Name, p.source, err)
				}
			}
			report = append(report, loadReport{cfg.Backbones[p.b].Name, p.source, len(p.rs)})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return f, report, nil
}
