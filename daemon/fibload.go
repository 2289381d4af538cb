package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pnap-project/pnap/configs"
	"github.com/pnap-project/pnap/fib"
	"github.com/pnap-project/pnap/routes"
)

// LoadReport says what LoadFIB read from one source, for logs and
// `pnapd check`.
type LoadReport struct {
	Backbone string
	Source   string
	Routes   int
}

// forEachSource reads every backbone's route sources (static, route files,
// MRT peers) one at a time and hands each to fn, so that only one file's
// parsed routes are in memory at once (all of them at once peaked at
// 480 MiB for 4 backbones of full tables). Each MRT file is read once for
// all the backbones that take a peer from it.
//
// want (nil: every backbone) chooses the backbones whose sources are read.
func forEachSource(cfg *configs.Config, log *slog.Logger, want func(b int) bool, fn func(b fib.BackboneID, source string, rs []routes.Route) error) error {
	type mrtUse struct {
		b   fib.BackboneID
		sel routes.MRTSelector
	}
	mrtFiles := map[string][]mrtUse{}
	var mrtOrder []string
	for i, b := range cfg.Backbones {
		id := fib.BackboneID(i)
		if want != nil && !want(i) {
			continue
		}
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

// LoadFIB builds the FIB from a configuration's backbones and route sources,
// publishing everything as one Version, and reports what each source gave.
func LoadFIB(cfg *configs.Config, log *slog.Logger) (*fib.FIB, []LoadReport, error) {
	bbs := make([]fib.Backbone, len(cfg.Backbones))
	for i, b := range cfg.Backbones {
		bbs[i] = fib.Backbone{Name: b.Name, Preference: b.Preference}
	}
	// A withdrawn route's ID is not reused while probes may still credit a
	// measurement to it.
	po, err := probesOptions(cfg)
	if err != nil {
		return nil, nil, err
	}
	grace := max(time.Second, po.RouteHold())
	f, err := fib.New(bbs, fib.Options{Grace: grace})
	if err != nil {
		return nil, nil, err
	}
	var report []LoadReport
	err = f.Update(func(tx *fib.Txn) error {
		return forEachSource(cfg, log, nil, func(b fib.BackboneID, source string, rs []routes.Route) error {
			for _, r := range rs {
				if err := tx.Add(b, r.Prefix, r.PathLen); err != nil {
					return fmt.Errorf("backbone %q: %s: %w", cfg.Backbones[b].Name, source, err)
				}
			}
			report = append(report, LoadReport{cfg.Backbones[b].Name, source, len(rs)})
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
//
// Backbones for which learned is true take their routes from BGP: only
// their static routes are reloaded (bgpFeed.setStatic), and not here.
// Backbones for which changed is false are neither read nor replaced.
func reloadRoutes(cfg *configs.Config, f *fib.FIB, log *slog.Logger, learned, changed func(b int) bool) (added, withdrawn int, err error) {
	per := make([][]routes.Route, len(cfg.Backbones))
	read := func(b int) bool { return changed(b) && !learned(b) }
	err = forEachSource(cfg, log, read, func(b fib.BackboneID, _ string, rs []routes.Route) error {
		per[b] = append(per[b], rs...)
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	err = f.Update(func(tx *fib.Txn) error {
		for b, rs := range per {
			if !read(b) {
				continue
			}
			a, w, err := tx.Replace(fib.BackboneID(b), routes.PathLens(rs))
			if err != nil {
				return fmt.Errorf("backbone %q: %w", cfg.Backbones[b].Name, err)
			}
			added, withdrawn = added+a, withdrawn+w
		}
		return nil
	})
	return added, withdrawn, err
}

// sourceStamps fingerprints each backbone's route sources: the sources as
// configured and, for each file, what stat says of it. A reload leaves a
// backbone whose stamp did not change alone rather than re-reading its
// tables: with four backbones of full tables, re-reading them all took
// 40 s of a busy CPU and 600 MiB. ctime and the inode are in the stamp
// because tools that keep a file's mtime (cp -p, rsync -t) cannot keep
// them.
func sourceStamps(cfg *configs.Config) []string {
	out := make([]string, len(cfg.Backbones))
	for i, b := range cfg.Backbones {
		var s strings.Builder
		fmt.Fprintf(&s, "static %v\n", b.Static)
		for _, rf := range b.RouteFiles {
			fmt.Fprintf(&s, "file %+v %s\n", rf, fileStamp(rf.Path))
		}
		for _, m := range b.MRT {
			fmt.Fprintf(&s, "mrt %+v %s\n", m, fileStamp(m.Path))
		}
		out[i] = s.String()
	}
	return out
}

// fileStamp is a file's size, mtime, ctime and inode. A file stat cannot
// see gets a stamp that never repeats, so that its backbone is read again
// (and the read reports the error).
func fileStamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Sprintf("unreadable %d", time.Now().UnixNano())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Sprintf("unknown %d", time.Now().UnixNano())
	}
	return fmt.Sprintf("%d %d %d.%09d %d", fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Sec, st.Ctim.Nsec, st.Ino)
}
