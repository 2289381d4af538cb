// Package emu emulates a transit backbone for pnap's labs: a user-space stage
// in a network namespace that forwards every Ethernet frame between two veth
// links, both ways, unchanged, after a delay with jitter, and drops a
// fraction of them (the kernel has no netem). It never lets a frame overtake
// the one ahead of it to the same destination prefix (with per-destination
// delays; without them, any frame ahead of it), never blocks reading (a full
// queue drops and counts), and never lets its namespace's kernel answer or
// route what it carries.
//
// Timing. A frame is due at its kernel receive time (SO_TIMESTAMPNS, turned
// into the monotonic clock) plus its delay. One thread sleeps in ppoll, with
// 1 ns timer slack, until the earliest due frame or new input, and sends what
// is due with sendmmsg; idle, it uses no CPU. It does not spin: spinning
// before due times did not help here (a spinning thread is held up by the
// same stalls, and takes a CPU from the forwarder and generator beside it).
// At 100 kpps frames leave 60-80 µs after their due time at the median and
// ~0.25 ms at the 99th percentile, using ~60 % of a CPU (most of it the
// kernel's: the veths and B's receive path run inside its sendmmsg). What
// the emulator cannot control is whether it gets the CPU on time: on the
// 2-CPU lab VMs
// the kernel (not preemptible) or the hypervisor holds a CPU for 1-5 ms
// several times a second even from a SCHED_FIFO thread, and then 0.02 % to
// ~1 % of frames leave more than 0.5 ms late. Counters.Late and MaxLate
// report it per run; Options.Nice and CPUs give the thread a CPU of its own
// (a thread at nice 0 beside a nice -20 generator gets ~1 % of a CPU). Start
// raises GOMAXPROCS by one per running emulator so that its thread finds a
// free P after each system call (procs.go).
//
// Jitter. With Jitter j each frame draws its delay uniformly from
// [Delay-j, Delay+j], but it leaves no earlier than the frame ahead of it.
// While frames come more than 2j apart the draws stand; when they come
// closer, a frame's delay is the largest of its own draw and those of the
// frames just ahead less the time between, so delays pile up towards
// Delay+j: with j = 2 ms and frames 0.1 ms apart the median delay is about
// Delay+1.4 ms. That is what one path does: without per-destination delays
// there is no reordering.
//
// Per-destination delays. Params.DestDelay adds to Delay an extra delay per
// destination IPv4 /24 or IPv6 /48 (non-IP frames get none), from a table that
// Set swaps whole. One FIFO per direction would hold a frame to a 10 ms prefix
// behind one to a 100 ms prefix for 100 ms, which no backbone does. So a frame
// waits only for the frames ahead of it to the same prefix and for those
// queued without a table (a frame queued without one waits for all ahead of
// it, as before), and otherwise leaves when due: frames to different prefixes
// are reordered as their delays say, frames to one prefix keep their order,
// and jitter piles up per prefix as above. The line stays a FIFO until a frame
// is due before one ahead of it; then a heap by due time orders it until it
// empties (line.go): ~0.18 µs a frame with 10,000 prefixes
// (BenchmarkLinePrefixes) against ~0.017 µs for the FIFO (BenchmarkLine),
// beside the ~6 µs a frame of the loop's system calls at 100 kpps. Room in the
// queue is freed from its oldest frame, so Options.QueueFrames and QueueBytes
// count every frame since the oldest still queued, as a FIFO's would: size
// them for the longest delay.
package emu
