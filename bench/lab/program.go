//go:build linux

package lab

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// Main runs body as the main part of a program (the demo) with a testing.TB
// that acts as a test's does, so that a program builds labs with the same
// helpers as the tests: Fatal, FailNow and Skip end body's goroutine
// (runtime.Goexit, as in a test), Cleanup functions run last in, first out
// once body has ended, TempDir directories go with them, and Log, Error,
// Fatal and Skip write a line to w. A panic in body is reported with its
// stack and fails. Main installs the lab's Ctrl-C handler at once (see
// OnInterrupt): an interrupt runs the hooks, which remove TempDir
// directories too, removes the namespaces and exits with status 130.
// Main reports whether body passed: no Error, Fatal, Skip or panic.
func Main(name string, w io.Writer, body func(tb testing.TB)) bool {
	handleSignals()
	p := &program{name: name, w: w}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.call(func() { body(p) })
	p.cancel()
	for {
		p.mu.Lock()
		n := len(p.cleanups)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		fn := p.cleanups[n-1]
		p.cleanups = p.cleanups[:n-1]
		p.mu.Unlock()
		p.call(fn)
	}
	return !p.Failed() && !p.Skipped()
}

// program is Main's testing.TB. The embedded TB is nil: it only supplies
// the interface's unexported method, which nothing calls; every exported
// method is defined below.
type program struct {
	testing.TB
	name   string
	w      io.Writer
	ctx    context.Context
	cancel context.CancelFunc

	mu              sync.Mutex
	cleanups        []func()
	failed, skipped bool
	artifacts       string
}

// call runs fn on a goroutine of its own, so that FailNow and SkipNow
// (runtime.Goexit) end fn alone, and waits for it.
func (p *program) call(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if r := recover(); r != nil {
				p.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		fn()
	}()
	<-done
}

func (p *program) print(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s: %s\n", p.name, strings.TrimSuffix(s, "\n"))
}

func (p *program) Name() string                      { return p.name }
func (p *program) Helper()                           {}
func (p *program) Log(args ...any)                   { p.print(fmt.Sprintln(args...)) }
func (p *program) Logf(format string, args ...any)   { p.print(fmt.Sprintf(format, args...)) }
func (p *program) Error(args ...any)                 { p.Log(args...); p.Fail() }
func (p *program) Errorf(format string, args ...any) { p.Logf(format, args...); p.Fail() }
func (p *program) Fatal(args ...any)                 { p.Log(args...); p.FailNow() }
func (p *program) Fatalf(format string, args ...any) { p.Logf(format, args...); p.FailNow() }
func (p *program) Skip(args ...any)                  { p.Log(args...); p.SkipNow() }
func (p *program) Skipf(format string, args ...any)  { p.Logf(format, args...); p.SkipNow() }
func (p *program) Output() io.Writer                 { return p.w }
func (p *program) Context() context.Context          { return p.ctx }
func (p *program) Attr(key, value string)            { p.Logf("%s: %s", key, value) }

func (p *program) Fail() {
	p.mu.Lock()
	p.failed = true
	p.mu.Unlock()
}

func (p *program) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *program) FailNow() {
	p.Fail()
	runtime.Goexit()
}

func (p *program) SkipNow() {
	p.mu.Lock()
	p.skipped = true
	p.mu.Unlock()
	runtime.Goexit()
}

func (p *program) Skipped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.skipped
}

func (p *program) Cleanup(fn func()) {
	p.mu.Lock()
	p.cleanups = append(p.cleanups, fn)
	p.mu.Unlock()
}

// TempDir is a new directory under $TMPDIR, removed when Main ends or the
// program is interrupted.
func (p *program) TempDir() string {
	dir, err := os.MkdirTemp("", "pnap-"+p.name+"-")
	if err != nil {
		p.Fatalf("TempDir: %v", err)
	}
	OnInterrupt(p, func() { os.RemoveAll(dir) })
	p.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			p.Errorf("TempDir cleanup: %v", err)
		}
	})
	return dir
}

// ArtifactDir is one TempDir for the whole run: a program keeps what it
// means to keep by writing it where its flags say.
func (p *program) ArtifactDir() string {
	p.mu.Lock()
	dir := p.artifacts
	p.mu.Unlock()
	if dir == "" {
		dir = p.TempDir()
		p.mu.Lock()
		p.artifacts = dir
		p.mu.Unlock()
	}
	return dir
}

func (p *program) Setenv(key, value string) {
	prev, had := os.LookupEnv(key)
	if err := os.Setenv(key, value); err != nil {
		p.Fatalf("Setenv: %v", err)
	}
	p.Cleanup(func() {
		if had {
			os.Setenv(key, prev)
		} else {
			os.Unsetenv(key)
		}
	})
}

func (p *program) Chdir(dir string) {
	prev, err := os.Getwd()
	if err == nil {
		err = os.Chdir(dir)
	}
	if err != nil {
		p.Fatalf("Chdir: %v", err)
	}
	p.Cleanup(func() { os.Chdir(prev) })
}
