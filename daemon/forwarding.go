package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pnap-project/pnap/forwarder"
	"github.com/pnap-project/pnap/forwarder/neighbours"
	"github.com/pnap-project/pnap/forwarder/slowpath"
)

// workerStopTimeout is how long stopping waits for the workers; they leave
// poll(2) within its timeout, so longer means one is stuck.
const workerStopTimeout = 2 * time.Second

// startNeighbours resolves the next hops (gateways, customer hosts) and
// follows their changes over netlink.
func (d *Daemon) startNeighbours(context.Context) (func() error, error) {
	neigh, err := neighbours.New(d.dp.plane, d.dp.spec, neighbours.Options{})
	if err != nil {
		return nil, fmt.Errorf("next hops: %w", err)
	}
	d.neigh = neigh
	done := make(chan struct{})
	var wg sync.WaitGroup
	d.goRun(&wg, "neighbours", func() error { return neigh.Run(done) })
	return func() error { close(done); wg.Wait(); return nil }, nil
}

// slowPath answers, off the workers, what needs the kernel's help or an
// ICMP error.
type slowPath struct {
	path *slowpath.Responder
	in   chan forwarder.SlowFrame
	done chan struct{}
}

func (d *Daemon) startSlowPath(context.Context) (func() error, error) {
	ifindex := make([]int, len(d.dp.links))
	for i, l := range d.dp.links {
		ifindex[i] = l.Attrs().Index
	}
	path, err := slowpath.New(d.dp.slowPorts, slowpath.Options{
		Resolve: func(port uint8, host netip.Addr) { d.neigh.Resolve(ifindex[port], host) },
	})
	if err != nil {
		return nil, err
	}
	s := &slowPath{path: path, in: make(chan forwarder.SlowFrame, 1024), done: make(chan struct{})}
	go func() { s.path.Run(s.in); close(s.done) }()
	d.slow = s
	return func() error {
		if d.dp.stuck {
			return nil // a stuck worker may still send on in
		}
		close(s.in)
		<-s.done
		return s.path.Close()
	}, nil
}

// startWorkers makes one loop per queue, serving that queue of every port,
// and runs each on its own locked thread.
func (d *Daemon) startWorkers(context.Context) (func() error, error) {
	fw := d.cfg.Load().Forwarder
	var probeReply func(frame []byte, at int64)
	if p := d.ctl.probes; p != nil && p.Active() {
		probeReply = func(frame []byte, at int64) { p.OfferReply(frame, at) }
	}
	for q, w := range d.dp.workers {
		cpu := -1
		if q < len(fw.CPUs) {
			cpu = fw.CPUs[q]
		}
		opt := d.plan.loop
		opt.Slow, opt.ProbeReply = d.slow.in, probeReply
		if q == 0 {
			opt.Inject = d.dp.inject // the first loop sends the probes
		}
		d.dp.loops = append(d.dp.loops, forwarder.NewLoop(w, d.dp.byQueue[q], cpu, opt))
	}
	d.dp.running.Store(&d.dp.loops)
	var wg sync.WaitGroup
	for i, l := range d.dp.loops {
		d.goRun(&wg, fmt.Sprintf("worker %d", i), l.Run)
	}
	stop := func() error { return d.stopWorkers(&wg) }
	for i, l := range d.dp.loops {
		if err := <-l.Ready(); err != nil {
			stop()
			return nil, fmt.Errorf("worker %d: %w", i, err)
		}
	}
	return stop, nil
}

// stopWorkers stops the loops and waits for them. A worker that does not
// stop may still be using its sockets: the data plane is then abandoned to
// the process exit (which also detaches the XDP programs) rather than
// pulled from under it.
func (d *Daemon) stopWorkers(wg *sync.WaitGroup) error {
	for _, l := range d.dp.loops {
		l.Stop()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(workerStopTimeout):
		d.dp.abandon()
		return fmt.Errorf("workers did not stop within %v; their sockets are left to the process exit", workerStopTimeout)
	}
}
