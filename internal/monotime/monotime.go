// Package monotime is pnap's one monotonic clock: nanoseconds since the
// process started, as a plain int64 that a forwarder Sample, a probe reply's
// receive time and the probes' own bookkeeping can hold and compare. Every
// timestamp that crosses from the forwarder to probes is read from it; a
// second clock with another zero would make those times meaningless, so
// nothing here may ever grow a different epoch or read the wall clock.
package monotime

import "time"

// start is the zero of the clock. time.Since reads only its monotonic
// reading, so wall-clock steps (NTP, settimeofday) never move Now.
var start = time.Now()

// Now returns the nanoseconds since the process started. It never goes
// backward and costs one vDSO clock read, cheap enough for once per batch
// on the forwarder's fast path.
func Now() int64 { return int64(time.Since(start)) }
