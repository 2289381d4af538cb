package forwarder

import "sync/atomic"

type atomicHops = atomic.Pointer[Hops]
