package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pnap-project/pnap/optimizer"
)

// Pins survive a restart: pin, restart, the pin is back and selects its
// backbone; unpinning is kept too. A file that is not pnapd's state is
// reported and ignored.
func TestPinsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	path := filepath.Join(dir, "pnapd.toml")
	conf := strings.Replace(fmt.Sprintf(apiConf, 0), `dir = ""`, `dir = "`+stateDir+`"`, 1)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p16 := netip.MustParsePrefix("198.18.0.0/16")
	d := newAPIDaemonFrom(t, path)
	h := d.handler(nil)
	if code, body := get(h, "POST", "/v1/pins", `{"prefix": "198.18.0.0/16", "backbone": "b"}`); code != http.StatusOK {
		t.Fatalf("pin: %d %s", code, body)
	}
	st, err := readState(filepath.Join(stateDir, stateFileName))
	if err != nil || len(st.Pins) != 1 || st.Pins[0].Prefix != p16 || st.Pins[0].Backbone != "b" {
		t.Fatalf("state after the pin: %+v, %v", st, err)
	}

	// The restart: a new daemon from the same file, its pins restored.
	d2, logs := restarted(t, path, p16)
	if pins := d2.ctl.pins.List(); len(pins) != 1 || pins[0].Prefix != p16 || pins[0].Name != "b" {
		t.Fatalf("pins after the restart: %+v\n%s", pins, logs.String())
	}
	if e, _ := d2.fib.Route(p16); e.Backbone != 1 {
		t.Fatalf("the restored pin does not select b: %+v", e)
	}
	if code, body := get(d2.handler(nil), "DELETE", "/v1/pins?prefix=198.18.0.0/16", ""); code != http.StatusOK {
		t.Fatalf("unpin: %d %s", code, body)
	}
	if st, err := readState(filepath.Join(stateDir, stateFileName)); err != nil || len(st.Pins) != 0 {
		t.Fatalf("state after the unpin: %+v, %v", st, err)
	}

	for _, bad := range []string{"{not json", `{"format": "someone-else/3", "pins": []}`} {
		if err := os.WriteFile(filepath.Join(stateDir, stateFileName), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		logs.Reset()
		d3 := newAPIDaemonFrom(t, path)
		d3.log = slog.New(slog.NewTextHandler(logs, nil))
		d3.restoreState()
		if len(d3.ctl.pins.List()) != 0 || !strings.Contains(logs.String(), "state file ignored") {
			t.Fatalf("state %q: pins %v, log %s", bad, d3.ctl.pins.List(), logs.String())
		}
	}
}

// restarted is a new daemon from the configuration at path, logging into
// logs, with its state restored; p must not be on backbone b (1) before,
// or the restore would prove nothing.
func restarted(t *testing.T, path string, p netip.Prefix) (*Daemon, *bytes.Buffer) {
	t.Helper()
	logs := new(bytes.Buffer)
	d := newAPIDaemonFrom(t, path)
	d.log = slog.New(slog.NewTextHandler(logs, nil))
	if e, _ := d.fib.Route(p); e.Backbone == 1 {
		t.Fatal("the new daemon's FIB selects b before any restore: the test proves nothing")
	}
	d.restoreState()
	return d, logs
}

// The optimizer's moves survive a restart: saved when pnapd stops,
// restored at start on the same backbone with the same hold-down; a move
// the FIB no longer allows is reported and left out.
func TestMovesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	path := filepath.Join(dir, "pnapd.toml")
	conf := strings.Replace(fmt.Sprintf(apiConf, 0), `dir = ""`, `dir = "`+stateDir+`"`, 1)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p16 := netip.MustParsePrefix("198.18.0.0/16")
	moved := time.Now().Add(-5 * time.Second).UTC().Round(time.Millisecond)
	d := newAPIDaemonFrom(t, path)
	stop, err := d.startState(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A move as the optimizer makes it (Restore is its own bookkeeping).
	if n, errs := d.ctl.opt.Restore([]optimizer.Steer{{Prefix: p16, Backbone: "b", Moved: moved}}); n != 1 {
		t.Fatalf("seeding a move: %v", errs)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st, err := readState(filepath.Join(stateDir, stateFileName))
	if err != nil || len(st.Steers) != 1 || st.Steers[0].Prefix != p16 || st.Steers[0].Backbone != "b" || !st.Steers[0].Moved.Equal(moved) {
		t.Fatalf("state saved at stop: %+v, %v", st, err)
	}

	d2, logs := restarted(t, path, p16)
	if e, _ := d2.fib.Route(p16); e.Backbone != 1 {
		t.Fatalf("after the restart %v is on backbone %d, want b (1):\n%s", p16, e.Backbone, logs.String())
	}
	if steers := d2.ctl.opt.Steers(); len(steers) != 1 || !steers[0].Moved.Equal(moved) {
		t.Fatalf("restored steers %+v, want the move of %v with its time", steers, moved)
	}
	if !strings.Contains(logs.String(), "moves=1 of=1") {
		t.Fatalf("the restore does not report the move:\n%s", logs.String())
	}

	st.Steers[0].Backbone = "gone"
	b, _ := json.Marshal(st)
	os.WriteFile(filepath.Join(stateDir, stateFileName), b, 0o644)
	logs.Reset()
	d3 := newAPIDaemonFrom(t, path)
	d3.log = slog.New(slog.NewTextHandler(logs, nil))
	d3.restoreState()
	if !strings.Contains(logs.String(), "move not restored") || !strings.Contains(logs.String(), `no backbone \"gone\"`) {
		t.Fatalf("a move to a backbone that is gone:\n%s", logs.String())
	}
}
