package fib

// Batch lookups walk the trie one level at a time across a whole batch of
// addresses. Within a level the loads for different addresses do not depend
// on each other, so the CPU keeps many cache misses in flight at once
// instead of waiting out each address's chain of dependent misses: the
// forwarder's per-packet work otherwise fills the out-of-order window and
// serialises them (measured: 250-400 ns a packet one at a time).

// batchChunk bounds the scratch space, which lives on the stack.
const batchChunk = 64

// Forward4Batch is Forward4 for many addresses: routes[i] and backbones[i]
// receive the answer for dsts[i] (RouteID 0 when there is no route). routes
// and backbones must be at least as long as dsts.
func (v *Version) Forward4Batch(dsts []uint32, routes []RouteID, backbones []BackboneID) {
	for len(dsts) > 0 {
		n := min(len(dsts), batchChunk)
		v.forward4Chunk(dsts[:n], routes[:n], backbones[:n])
		dsts, routes, backbones = dsts[n:], routes[n:], backbones[n:]
	}
}

func (v *Version) forward4Chunk(dsts []uint32, routes []RouteID, backbones []BackboneID) {
	var e, best [batchChunk]uint32
	for i, a := range dsts {
		e[i] = v.root4[a>>24][a>>16&0xff]
	}
	for i, a := range dsts {
		if e[i]&childFlag != 0 {
			e[i], best[i] = searchBitmap(v.words, e[i]&^childFlag, uint8(a>>8))
		}
	}
	for i, a := range dsts {
		if e[i]&childFlag != 0 {
			val, def := searchBitmap(v.words, e[i]&^childFlag, uint8(a))
			if def != 0 {
				best[i] = def
			}
			e[i] = val
		}
	}
	v.finishChunk(e[:len(dsts)], best[:len(dsts)], routes, backbones)
}

// Forward6Batch is Forward6 for many addresses, each given as {hi, lo}.
func (v *Version) Forward6Batch(dsts [][2]uint64, routes []RouteID, backbones []BackboneID) {
	for len(dsts) > 0 {
		n := min(len(dsts), batchChunk)
		v.forward6Chunk(dsts[:n], routes[:n], backbones[:n])
		dsts, routes, backbones = dsts[n:], routes[n:], backbones[n:]
	}
}

func (v *Version) forward6Chunk(dsts [][2]uint64, routes []RouteID, backbones []BackboneID) {
	var e, best [batchChunk]uint32
	for i, a := range dsts {
		e[i] = v.root6[a[0]>>56][a[0]>>48&0xff]
	}
	// Keys after the root are the address's bytes 2..15.
	for sh := 40; ; sh -= 8 {
		walked := false
		for i, a := range dsts {
			if e[i]&childFlag == 0 {
				continue
			}
			var key uint8
			if sh >= 0 {
				key = uint8(a[0] >> sh)
			} else {
				key = uint8(a[1] >> (64 + sh))
			}
			val, def := searchBitmap(v.words, e[i]&^childFlag, key)
			if def != 0 {
				best[i] = def
			}
			e[i] = val
			walked = true
		}
		if !walked {
			break
		}
	}
	v.finishChunk(e[:len(dsts)], best[:len(dsts)], routes, backbones)
}

// finishChunk turns a chunk's last trie values (and the deepest defaults
// passed) into routes, then reads their selections: a separate loop, so
// those loads overlap too.
func (v *Version) finishChunk(e, best []uint32, routes []RouteID, backbones []BackboneID) {
	for i, id := range e {
		if id == 0 {
			id = best[i]
		}
		routes[i] = RouteID(id)
	}
	for i := range e {
		backbones[i] = v.selected(uint32(routes[i]))
	}
}
