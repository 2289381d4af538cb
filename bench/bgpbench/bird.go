//go:build linux

package bgpbench

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pnap-project/pnap/bench/lab"
)

// bird is one BIRD process in a lab namespace and a connection to its
// control socket (the protocol birdc speaks), kept open so that polling it
// costs BIRD one command, not a connection and a birdc process.
type bird struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	sock   string
	log    tailBuffer

	mu   sync.Mutex
	ctl  net.Conn
	ctlr *bufio.Reader
}

// startBIRD writes conf into dir and starts BIRD on it in ns, in the
// foreground; it returns once BIRD answers on its control socket. BIRD is
// killed when tb ends (its log shown if tb failed) or on Ctrl-C.
func startBIRD(tb testing.TB, path string, ns *lab.NS, name, dir, conf string) *bird {
	tb.Helper()
	b := &bird{name: name, sock: filepath.Join(dir, name+".ctl"), exited: make(chan struct{})}
	confPath := filepath.Join(dir, name+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	b.cmd = exec.Command(path, "-f", "-c", confPath, "-s", b.sock, "-P", b.sock+".pid")
	b.cmd.Stdout, b.cmd.Stderr = &b.log, &b.log
	if err := ns.Do(b.cmd.Start); err != nil {
		tb.Fatalf("start BIRD %s: %v", name, err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	lab.OnInterrupt(tb, b.stop)
	tb.Cleanup(func() {
		b.stop()
		if tb.Failed() {
			tb.Logf("BIRD %s's log (last %d bytes):\n%s", name, tailMax, b.log.String())
		}
	})
	deadline := time.Now().Add(time.Minute) // a full table is parsed before BIRD answers
	for {
		if _, err := b.query("show status"); err == nil {
			return b
		}
		select {
		case <-b.exited:
			tb.Fatalf("BIRD %s exited at start: %s", name, b.log.String())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("BIRD %s does not answer on its control socket: %s", name, b.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pid is the BIRD process's.
func (b *bird) pid() int { return b.cmd.Process.Pid }

// stop kills BIRD and waits for it.
func (b *bird) stop() {
	b.cmd.Process.Kill()
	<-b.exited
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctl != nil {
		b.ctl.Close()
		b.ctl = nil
	}
}

// query runs one command and returns its reply's lines without their
// reply codes. A reply code of 8000 or more is an error.
func (b *bird) query(cmd string) ([]string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ctl == nil {
		c, err := net.DialTimeout("unix", b.sock, time.Second)
		if err != nil {
			return nil, err
		}
		b.ctl, b.ctlr = c, bufio.NewReaderSize(c, 64<<10)
		if _, err := b.readReply(); err != nil { // the greeting, "0001 BIRD 2.x ready."
			b.ctl.Close()
			b.ctl = nil
			return nil, err
		}
	}
	b.ctl.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := b.ctl.Write([]byte(cmd + "\n")); err != nil {
		b.ctl.Close()
		b.ctl = nil
		return nil, err
	}
	lines, err := b.readReply()
	if err != nil && !errors.As(err, new(birdError)) {
		b.ctl.Close()
		b.ctl = nil
	}
	return lines, err
}

// birdError is an error reply.
type birdError string

func (e birdError) Error() string { return "BIRD: " + string(e) }

// readReply reads one reply: lines "NNNN-text" (more follow), " text"
// (continuing the previous code) and a last "NNNN text".
func (b *bird) readReply() ([]string, error) {
	var out []string
	var fail birdError
	for {
		line, err := b.ctlr.ReadString('\n')
		if err != nil {
			return out, err
		}
		line = strings.TrimSuffix(line, "\n")
		if len(line) >= 5 && isDigits(line[:4]) && (line[4] == ' ' || line[4] == '-') {
			code, _ := strconv.Atoi(line[:4])
			if code >= 8000 {
				fail = birdError(line[5:])
			}
			out = append(out, line[5:])
			if line[4] == ' ' {
				if fail != "" {
					return out, fail
				}
				return out, nil
			}
			continue
		}
		out = append(out, strings.TrimPrefix(line, " "))
	}
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// birdProtocol is one protocol as `show protocols all` shows it.
type birdProtocol struct {
	Name, Proto, State, Info string
	Since                    time.Time // with `timeformat protocol iso long ms`
	Imported                 int       // routes in the table, every channel
	// Updates and Withdraws are the import updates and withdraws
	// received, every channel.
	Updates, Withdraws uint64
}

// birdSinceLayout is `timeformat protocol iso long ms`.
const birdSinceLayout = "2006-01-02 15:04:05.000"

// protocols runs `show protocols all` and parses it.
func (b *bird) protocols() (map[string]*birdProtocol, error) {
	lines, err := b.query("show protocols all")
	if err != nil {
		return nil, err
	}
	return parseProtocols(lines)
}

func parseProtocols(lines []string) (map[string]*birdProtocol, error) {
	out := map[string]*birdProtocol{}
	var cur *birdProtocol
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch {
		case len(f) >= 6 && !strings.HasSuffix(f[0], ":") && (f[3] == "up" || f[3] == "down" || f[3] == "start" || f[3] == "stop") && f[0] != "Name":
			since, err := time.ParseInLocation(birdSinceLayout, f[4]+" "+f[5], time.Local)
			if err != nil {
				return nil, fmt.Errorf("show protocols: %q: %w (timeformat protocol iso long ms missing?)", l, err)
			}
			cur = &birdProtocol{Name: f[0], Proto: f[1], State: f[3], Since: since, Info: strings.Join(f[6:], " ")}
			out[cur.Name] = cur
		case cur == nil:
		case f[0] == "Routes:" && len(f) >= 3:
			n, err := strconv.Atoi(f[1])
			if err != nil {
				return nil, fmt.Errorf("show protocols: %q: %w", l, err)
			}
			cur.Imported += n
		case len(f) >= 3 && f[0] == "Import" && (f[1] == "updates:" || f[1] == "withdraws:"):
			n, err := strconv.ParseUint(f[2], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("show protocols: %q: %w", l, err)
			}
			if f[1] == "updates:" {
				cur.Updates += n
			} else {
				cur.Withdraws += n
			}
		}
	}
	return out, nil
}

// routeCount runs `show route count` and returns its Total line's route
// count.
func (b *bird) routeCount() (int, string, error) {
	lines, err := b.query("show route count")
	if err != nil {
		return 0, "", err
	}
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "Total:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, err := strconv.Atoi(f[0])
				return n, strings.TrimSpace(l), err
			}
		}
	}
	return 0, "", fmt.Errorf("show route count: no Total line in %q", lines)
}

// tailMax bounds what a tailBuffer keeps.
const tailMax = 32 << 10

// tailBuffer keeps the last tailMax bytes written to it: a process's log,
// for a failure message, without growing with a long run.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > tailMax {
		t.b = append(t.b[:0], t.b[len(t.b)-tailMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
