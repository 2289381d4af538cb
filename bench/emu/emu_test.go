//go:build linux

package emu

import (
	"testing"
	"time"
)

// TestDelayAccuracy sends 64-byte frames at 100 kpps for 1 s from A to B
// through the emulator at 100 ms, after measuring the same path at 0 ms: the
// measurement's own error (sender bursts, the veths) shows in that baseline.
// The delay of a frame is B's kernel receive time minus the time the sender
// stamped in it before sending.
//
// The target, 99.9 % of frames within ±0.5 ms, holds only while the machine
// lets the emulator's thread run on time, which a shared 2-CPU VM often does
// not: a SCHED_FIFO canary thread on the emulator's CPU records the stalls
// that no user-space thread can escape. An attempt that misses the target
// during such stalls, or whose sender was held up, is repeated (three at
// most; then the test skips, saying why); one that misses it on an
// undisturbed machine fails the test. Receiver drops are no excuse: with a
// 32 MiB buffer they mean the emulator released frames in bursts, so an
// undisturbed attempt with any fails the test.
// Frames must never be lost, duplicated, reordered or early, stalls or not.
func TestDelayAccuracy(t *testing.T) {
	w := newWire(t)
	const (
		rate     = 100_000
		base     = 30_000
		count    = 100_000
		delay    = 100 * time.Millisecond
		tol      = LateAfter
		attempts = 3
	)
	hcpu, ecpu := cpus()
	e := startTimed(t, w, Params{}, Params{})
	s := newSender(t, w.la, hcpu)

	delayBaseline(t, w, s, hcpu, rate, base)
	if err := e.Set(Params{Delay: delay}, Params{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; ; i++ {
		d := runDelay(t, w, e, s, hcpu, ecpu, rate, count, delay)
		r, c, took, rdrops, ab, ab0 := d.r, d.c, d.took, d.rdrops, d.after, d.before
		recv, fwd, over := ab.Received-ab0.Received, ab.Forwarded-ab0.Forwarded, ab.Overrun-ab0.Overrun
		if fwd != recv {
			t.Fatalf("emulator received %d frames and forwarded %d, want all (stats %+v)", recv, fwd, ab)
		}
		// Frames the emulator never got were dropped on the way to it: by
		// its socket (Overrun: it fell behind) or by the kernel before.

		got, miss := r.delays()
		errs, outside, early := delayErrors(got, delay, tol)
		m := summarise(errs)
		share := float64(outside) / count
		t.Logf("attempt %d: 100 ms, %d frames in %v: delay error %v; %d (%.3f %%) outside ±%v; emulator: %d late, max %v; canary: %v; receiver dropped %d; emulator used %v of CPU and waited %v for it",
			i, count, took.Round(time.Millisecond), m, outside, 100*share, tol, ab.Late-ab0.Late, ab.MaxLate, c, rdrops, d.cpu.Round(time.Millisecond), d.wait.Round(time.Millisecond))
		if uint64(miss) > rdrops+count-recv || r.dups > 0 || r.reordered > 0 {
			t.Fatalf("%d frames missing (emulator got %d of %d, receiver dropped %d), %d duplicated, %d out of order; want none", miss, recv, count, rdrops, r.dups, r.reordered)
		}
		if early > 0 {
			t.Fatalf("%d frames left more than %v early", early, tol)
		}
		// However busy the machine, most frames leave on time: a median
		// this far off is the emulator's.
		if m.p50 > 20*time.Millisecond {
			t.Fatalf("median error %v", m.p50)
		}
		// The machine disturbed the attempt if it stalled the emulator's CPU,
		// or the sender's (which then sent in bursts). Receiver drops are
		// not a disturbance but what a bursty emulator causes.
		disturbed := len(c.late) > 0 || took > count*time.Second/rate*105/100
		if rdrops > 0 && !disturbed {
			t.Fatalf("receiver dropped %d frames though neither the emulator's CPU nor the sender stalled: the emulator released frames in bursts", rdrops)
		}
		// Frames the receiver dropped were not measured: no pass with any.
		if recv == count && rdrops == 0 && share <= 0.001 {
			return
		}
		if !disturbed {
			if m.p50 > tol {
				t.Fatalf("median error %v, want within ±%v", m.p50, tol)
			}
			if recv < count {
				t.Fatalf("emulator got %d of %d frames (%d dropped by its socket) on an undisturbed machine", recv, count, over)
			}
			t.Fatalf("%.3f %% of frames outside ±%v, want at most 0.1 %%; the machine did not stall the emulator's CPU", 100*share, tol)
		}
		if i == attempts {
			t.Skipf("the machine disturbed all %d attempts (last: canary %v, sender %v, receiver dropped %d): the ±%v target for 99.9 %% of frames cannot be checked now", attempts, c, took.Round(time.Millisecond), rdrops, tol)
		}
	}
}

// delayBaseline measures n frames at rate through the emulator at 0 ms: the
// measurement's own error. None may be lost but to the receiver's socket.
func delayBaseline(t *testing.T, w *wire, s *sender, cpu, rate, n int) {
	t.Helper()
	r := newReceiver(t, w.lb, cpu, s.seq, n)
	if err := s.run(rate, n); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	rdrops := r.finish()
	bd, bmiss := r.delays()
	t.Logf("0 ms baseline, %d frames at %d pps: delay %v; %d missing (receiver dropped %d)", n, rate, summarise(bd), bmiss, rdrops)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if uint64(bmiss) > rdrops || r.dups > 0 {
		t.Fatalf("baseline: %d frames missing (receiver dropped %d), %d duplicated; want none", bmiss, rdrops, r.dups)
	}
}

// delayRun is what one attempt of TestDelayAccuracy measured.
type delayRun struct {
	r             *receiver
	c             *canary
	took          time.Duration // to send every frame
	cpu, wait     time.Duration // the emulator thread's CPU time, and its wait for a CPU
	rdrops        uint64
	before, after Counters // the emulator's, A to B
}

// runDelay sends count frames at rate through the emulator, with a canary on
// its CPU, and waits for them to arrive.
func runDelay(t *testing.T, w *wire, e *Emulator, s *sender, hcpu, ecpu, rate, count int, delay time.Duration) delayRun {
	t.Helper()
	d := delayRun{before: e.Stats().AB}
	cpu0, wait0 := schedstat(t, e.tid.Load())
	d.r = newReceiver(t, w.lb, hcpu, s.seq, count)
	d.c = startCanary(ecpu)
	start := time.Now()
	if err := s.run(rate, count); err != nil {
		t.Fatal(err)
	}
	d.took = time.Since(start)
	time.Sleep(delay + 50*time.Millisecond)
	d.c.finish()
	cpu, wait := schedstat(t, e.tid.Load())
	d.cpu, d.wait = cpu-cpu0, wait-wait0
	d.rdrops = d.r.finish()
	d.after = e.Stats().AB
	if d.r.err != nil || d.c.err != nil {
		t.Fatal(d.r.err, d.c.err)
	}
	return d
}

// delayErrors returns each delay's error (ns) and how many are outside
// ±tol, and how many of those early.
func delayErrors(got []int64, delay, tol time.Duration) (errs []int64, outside, early int) {
	errs = make([]int64, len(got))
	for i, d := range got {
		errs[i] = d - int64(delay)
		if errs[i] < -int64(tol) {
			early++
		}
		if errs[i] < -int64(tol) || errs[i] > int64(tol) {
			outside++
		}
	}
	return errs, outside, early
}

// TestLoss checks a 10 % loss over 60k frames, as the emulator counts it and
// as B sees it.
func TestLoss(t *testing.T) {
	w := newWire(t)
	const (
		count = 60_000
		loss  = 0.10
	)
	hcpu, _ := cpus()
	e := startTimed(t, w, Params{Delay: time.Millisecond, Loss: loss}, Params{})
	s := newSender(t, w.la, hcpu)
	r := newReceiver(t, w.lb, hcpu, s.seq, count)
	if err := s.run(100_000, count); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	rdrops := r.finish()
	st := e.Stats().AB
	got, miss := r.delays()
	t.Logf("stats %+v; B got %d of %d (its socket dropped %d)", st, len(got), count, rdrops)
	if st.Received != count || st.Lost+st.Forwarded != count || st.Overrun > 0 {
		t.Fatalf("emulator stats %+v, want %d received, each lost or forwarded", st, count)
	}
	if rate := float64(st.Lost) / count; rate < loss-0.01 || rate > loss+0.01 {
		t.Errorf("emulator dropped %.2f %%, want %.0f ± 1 %%", 100*rate, 100*loss)
	}
	if rdrops == 0 && uint64(miss) != st.Lost {
		t.Errorf("B missed %d frames, the emulator dropped %d: want the same", miss, st.Lost)
	}
	if rate := float64(miss) / count; rate < loss-0.01 || rate > loss+0.01 {
		t.Errorf("B missed %.2f %% of frames, want %.0f ± 1 %%", 100*rate, 100*loss)
	}

	// All or nothing.
	if err := e.Set(Params{Loss: 1}, Params{}); err != nil {
		t.Fatal(err)
	}
	r = newReceiver(t, w.lb, hcpu, s.seq, 1000)
	if err := s.run(10_000, 1000); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	r.finish()
	if got, _ := r.delays(); len(got) > 0 {
		t.Errorf("loss 1: B got %d frames, want none", len(got))
	}
	if err := e.Set(Params{Loss: 1.5}, Params{}); err == nil {
		t.Error("Set accepted loss 1.5")
	}
}

// TestSet changes the delay from 10 to 50 ms in the middle of a stream:
// frames sent before the change keep 10 ms, frames sent after it get 50.
func TestSet(t *testing.T) {
	w := newWire(t)
	const (
		rate  = 10_000
		count = 6000 // 0.6 s
		tol   = LateAfter
	)
	hcpu, _ := cpus()
	e := startTimed(t, w, Params{Delay: 10 * time.Millisecond}, Params{})
	s := newSender(t, w.la, hcpu)
	r := newReceiver(t, w.lb, hcpu, s.seq, count)
	set := make(chan int64, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		at := time.Now().UnixNano()
		if err := e.Set(Params{Delay: 50 * time.Millisecond}, Params{}); err != nil {
			t.Error(err)
		}
		set <- at
	}()
	if err := s.run(rate, count); err != nil {
		t.Fatal(err)
	}
	at := <-set
	time.Sleep(100 * time.Millisecond)
	rdrops := r.finish()
	st := e.Stats().AB
	if ab, _ := e.Params(); ab.Delay != 50*time.Millisecond {
		t.Errorf("Params after Set: %+v", ab)
	}
	// A frame is stamped before the sender's sendmmsg and reaches the
	// emulator microseconds later: 2 ms either side of the change is
	// ambiguous.
	var before, after []int64
	missing := 0
	for i, d := range r.delay {
		switch sent := r.sent[i]; {
		case d < 0:
			missing++
		case sent < at-2e6:
			before = append(before, d)
		case sent > at+2e6:
			after = append(after, d)
		}
	}
	// Frames lost on a busy machine before the emulator got them, or by
	// B's socket, are the machine's; the emulator must forward all it got.
	if missing > 0 && st.Received == count && rdrops == 0 || st.Forwarded != st.Received {
		t.Errorf("%d frames missing; emulator %+v, B's socket dropped %d", missing, st, rdrops)
	}
	for _, c := range []struct {
		name  string
		ds    []int64
		delay time.Duration
	}{{"before", before, 10 * time.Millisecond}, {"after", after, 50 * time.Millisecond}} {
		d := summarise(c.ds)
		t.Logf("%d frames sent %s Set: delay %v", len(c.ds), c.name, d)
		if len(c.ds) < count/3 {
			t.Errorf("%s: only %d frames", c.name, len(c.ds))
		}
		// Never early; the median a little late at most (this checks which
		// delay applies, TestDelayAccuracy how exactly).
		if d.min < c.delay-tol || d.p50 > c.delay+5*time.Millisecond {
			t.Errorf("%s Set: delay min %v, median %v; want %v", c.name, d.min, d.p50, c.delay)
		}
	}
}

// TestJitter checks the spread of delays with jitter: uniform over
// [Delay-Jitter, Delay+Jitter] while frames come further apart than
// 2*Jitter, and piled up towards Delay+Jitter, in order, when they come
// closer.
func TestJitter(t *testing.T) {
	w := newWire(t)
	const (
		delay  = 10 * time.Millisecond
		jitter = 2 * time.Millisecond
		tol    = LateAfter
	)
	hcpu, _ := cpus()
	e := startTimed(t, w, Params{Delay: delay, Jitter: jitter}, Params{})
	s := newSender(t, w.la, hcpu)

	// Sparse: one frame every 5 ms (> 2*jitter), 1.5 s.
	r := newReceiver(t, w.lb, hcpu, s.seq, 300)
	if err := s.run(200, 300); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay + jitter + 10*time.Millisecond)
	r.finish()
	got, miss := r.delays()
	low := 0
	for _, d := range got {
		if d < int64(delay) {
			low++
		}
	}
	d := summarise(got)
	t.Logf("sparse (200 pps): delay %v; %d of %d below %v", d, low, len(got), delay)
	if miss > 0 {
		t.Errorf("%d frames missing", miss)
	}
	if d.min < delay-jitter || d.max > delay+jitter+tol && e.Stats().AB.Late == 0 {
		t.Errorf("delays from %v to %v, want within %v ± %v", d.min, d.max, delay, jitter)
	}
	// Uniform: about half below delay (a busy machine makes frames late,
	// hence the slack), the extremes reached. Frames the emulator sent
	// late (its thread did not get the CPU in time) skew the shape: then
	// the machine, not the emulator, is measured, and it is only logged.
	if frac := float64(low) / float64(len(got)); frac < 0.3 || frac > 0.7 {
		if late := e.Stats().AB.Late; late > 0 {
			t.Logf("%.0f %% of delays below %v with %d frames sent late: shape not judged on a busy machine", 100*frac, delay, late)
		} else {
			t.Errorf("%.0f %% of delays below %v, want about half", 100*frac, delay)
		}
	}
	if d.min > delay-jitter*8/10 || d.max < delay+jitter*8/10 {
		t.Errorf("delays from %v to %v, want them to span most of %v ± %v", d.min, d.max, delay, jitter)
	}

	// Dense: 10 kpps, one frame every 0.1 ms: order kept, delays pile up.
	r = newReceiver(t, w.lb, hcpu, s.seq, 3000)
	if err := s.run(10_000, 3000); err != nil {
		t.Fatal(err)
	}
	time.Sleep(delay + jitter + 10*time.Millisecond)
	r.finish()
	got, miss = r.delays()
	d = summarise(got)
	t.Logf("dense (10 kpps): delay %v; %d out of order", d, r.reordered)
	if miss > 0 || r.reordered > 0 {
		t.Errorf("%d frames missing, %d out of order; want none", miss, r.reordered)
	}
	if d.min < delay-jitter || d.p50 < delay+jitter/2 {
		t.Errorf("dense: delay min %v, median %v; want at least %v and %v", d.min, d.p50, delay-jitter, delay+jitter/2)
	}
}
