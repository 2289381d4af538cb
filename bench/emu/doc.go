// Package emu emulates a transit backbone for pnap's labs: a user-space stage
// in a network namespace that forwards every Ethernet frame between two veth
// links, both ways, unchanged, after a delay with jitter, and drops a
// fraction of them (the kernel has no netem). It never lets a frame overtake
// the one ahead of it, never blocks reading (a full queue drops and counts),
// and never lets its namespace's kernel answer or route what it carries.
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
// Delay+1.4 ms. That is what one path does; there is no reordering mode.
package emu
