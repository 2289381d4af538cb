package topo

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// BuildPnapd builds cmd/pnapd into dir and returns its path: labs run the
// real binary.
func BuildPnapd(tb testing.TB, dir string) string {
	tb.Helper()
	bin := filepath.Join(dir, "pnapd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/pnap-project/pnap/cmd/pnapd")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("building pnapd: %v", err)
	}
	return bin
}

// Pnapd is a pnapd process running in a lab namespace.
type Pnapd struct {
	Cmd    *exec.Cmd
	mu     sync.Mutex
	logs   strings.Builder
	exited chan struct{}
}

// String is everything pnapd logged so far (stdout and stderr).
func (p *Pnapd) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// Exited closes once the process is gone and its output fully read.
func (p *Pnapd) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM and waits for the exit, killing it after 3 s.
func (p *Pnapd) Stop() {
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		p.Cmd.Process.Kill()
		<-p.exited
	}
}

// StartPnapd starts cmd (pnapd, or a test binary acting as one) from a
// thread that enter (a namespace's Do) has put in the namespace, so that
// the process lives there, and waits up to a minute until it logs that it
// forwards. ready is false when it exited or timed out first; its logs say
// why. It is stopped when tb ends and on Ctrl-C.
func StartPnapd(tb testing.TB, cmd *exec.Cmd, enter func(func() error) error) (p *Pnapd, ready bool) {
	tb.Helper()
	p = &Pnapd{Cmd: cmd, exited: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	readyc := make(chan bool, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if !sent && strings.Contains(sc.Text(), "msg=forwarding") {
				readyc <- true
				sent = true
			}
		}
		if !sent {
			readyc <- false
		}
	}()
	if err := enter(cmd.Start); err != nil {
		tb.Fatal(err)
	}
	go func() { cmd.Wait(); pw.Close(); <-scanned; close(p.exited) }()
	lab.OnInterrupt(tb, p.Stop)
	tb.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.Stop()
		}
	})
	select {
	case ready = <-readyc:
	case <-time.After(time.Minute):
	}
	return p, ready
}

// GetJSON fetches a JSON document from pnapd's status API through c (a
// client whose transport reaches the API, as the labs make) into out.
func GetJSON(c *http.Client, path string, out any) error {
	resp, err := c.Get("http://pnapd" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
