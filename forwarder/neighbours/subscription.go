package neighbours

import (
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// subscription is one netlink neighbour subscription.
type subscription struct {
	ch   chan netlink.NeighUpdate
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func (n *Tracker) subscribe() (*subscription, error) {
	s := &subscription{ch: make(chan netlink.NeighUpdate, 256), done: make(chan struct{})}
	opts := netlink.NeighSubscribeOptions{
		Namespace: n.opt.Namespace,
		ErrorCallback: func(err error) {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
		},
		// Room for bursts (capped by net.core.rmem_max, not forced).
		ReceiveBufferSize: 1 << 20,
	}
	if err := netlink.NeighSubscribeWithOptions(s.ch, s.done, opts); err != nil {
		close(s.done)
		return nil, fmt.Errorf("neighbours: subscribe: %w", err)
	}
	return s, nil
}

func (s *subscription) error() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close ends the subscription: closing done closes the socket, which ends
// netlink's receive goroutine; the channel is drained so that goroutine is
// never left blocked sending, and it closes the channel when it returns.
func (s *subscription) close() {
	if s == nil {
		return
	}
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	timeout := time.NewTimer(2 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case _, ok := <-s.ch:
			if !ok {
				return
			}
		case <-timeout.C:
			go func() {
				for range s.ch {
				}
			}()
			return
		}
	}
}
