package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// systemd's service protocol (Type=notify): READY once pnapd forwards,
// RELOADING and READY around a reload, and WATCHDOG=1 while every worker
// makes progress. Outside systemd (no NOTIFY_SOCKET) each is a no-op.

const (
	sdReady    = daemon.SdNotifyReady
	sdStopping = daemon.SdNotifyStopping
)

func (d *Daemon) notify(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		d.log.Warn("systemd notification failed", "state", state, "error", err)
	}
}

// notifyReloading is sent before a reload: systemd waits for READY=1.
func (d *Daemon) notifyReloading() {
	d.notify(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, monotonicMicros()))
}

// watchdog feeds systemd's watchdog (WatchdogSec=) at half its interval,
// but only while every worker's loop has run a round since the last feed:
// a stuck worker stops the feeding, and systemd restarts pnapd (the
// kernel forwards meanwhile: fail-open).
func (d *Daemon) watchdog(ctx context.Context) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval == 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	var last []uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := d.loopRounds()
		if stuck := stuckLoops(last, now); len(stuck) > 0 {
			d.log.Error("workers stuck: the systemd watchdog is not fed", "queues", fmt.Sprint(stuck))
		} else {
			d.notify(daemon.SdNotifyWatchdog)
		}
		last = now
	}
}

// loopRounds is every worker loop's round count, by queue.
func (d *Daemon) loopRounds() []uint64 {
	loops := d.dp.running.Load()
	if loops == nil {
		return nil
	}
	out := make([]uint64, len(*loops))
	for q, l := range *loops {
		out[q] = l.Stats().Rounds
	}
	return out
}

// stuckLoops are the queues whose round count has not moved between two
// readings (none on the first).
func stuckLoops(before, now []uint64) []int {
	var stuck []int
	for q := range now {
		if q < len(before) && now[q] == before[q] {
			stuck = append(stuck, q)
		}
	}
	return stuck
}

// monotonicMicros is CLOCK_MONOTONIC in µs, which RELOADING=1 carries.
func monotonicMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1e6 + ts.Nsec/1e3
}
