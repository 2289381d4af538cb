//go:build linux

package traffic

import (
	"math"
	"strconv"
	"time"

	"github.com/cilium/ebpf/asm"
)

// Latency histogram: log-linear buckets, 64 per power of two (HdrHistogram's
// scheme with 6 significant bits). A value v in ns goes to bucket
// (k<<6) + (v>>k) with k = max(0, floor(log2 v) - 6): values below 128 ns are
// exact, larger ones fall in buckets 1/64 to 1/128 of their value wide, so a
// bucket's midpoint is within 0.8 % of anything in it. 2240 buckets reach
// 2^40 ns (18 min); longer latencies land in the last one (the maximum is
// kept exactly anyway).
const (
	histSubBits = 6
	histMaxLog  = 40
	histBuckets = (histMaxLog-histSubBits)<<histSubBits + 1<<histSubBits // 2240
)

// histBucket is the Go twin of histIndex, for tests and for bounds.
func histBucket(v uint64) int {
	v = min(v, 1<<histMaxLog-1)
	k := 0
	for v>>k >= 2<<histSubBits {
		k++
	}
	return k<<histSubBits + int(v>>k)
}

// histRange returns the values [lo, hi) that bucket b holds.
func histRange(b int) (lo, hi uint64) {
	if b < 2<<histSubBits {
		return uint64(b), uint64(b) + 1
	}
	k := b>>histSubBits - 1
	m := uint64(b - k<<histSubBits)
	return m << k, (m + 1) << k
}

// percentile returns the value below which fraction p of the counts in h
// fall, as the midpoint of its bucket, never above hiV (the exact maximum).
func percentile(h []uint64, p float64, hiV uint64) time.Duration {
	var total uint64
	for _, c := range h {
		total += c
	}
	if total == 0 {
		return 0
	}
	// The 1-based rank of the sample wanted, nearest-rank method.
	rank := min(max(uint64(math.Ceil(p*float64(total))), 1), total)
	var seen uint64
	for b, c := range h {
		seen += c
		if seen >= rank {
			lo, hi := histRange(b)
			return time.Duration(min((lo+hi-1)/2, hiV))
		}
	}
	return time.Duration(hiV)
}

// histIndex emits the bucket index of the value in v into dst (tmp and R0
// are clobbered, v is kept): floor(log2 v) by binary search, since BPF has no
// count-leading-zeros. The result is clamped to the histogram for the
// verifier.
func histIndex(dst, v, tmp asm.Register, label string) asm.Instructions {
	ins := asm.Instructions{
		asm.Mov.Reg(tmp, v),
		asm.LoadImm(dst, 1<<histMaxLog-1, asm.DWord),
		asm.JLE.Reg(tmp, dst, label+"_in"),
		asm.Mov.Reg(tmp, dst),
		asm.Mov.Imm(dst, 0).WithSymbol(label + "_in"), // dst = floor(log2 tmp)
	}
	// v >= 2^32 cannot use an immediate (32-bit, signed).
	ins = append(ins,
		asm.Mov.Reg(asm.R0, tmp),
		asm.RSh.Imm(asm.R0, 32),
		asm.JEq.Imm(asm.R0, 0, label+"_32"),
		asm.Mov.Reg(tmp, asm.R0),
		asm.Add.Imm(dst, 32),
	)
	next := label + "_32"
	for _, sh := range []int32{16, 8, 4, 2, 1} {
		skip := label + "_" + strconv.Itoa(int(sh))
		ins = append(ins,
			asm.JLT.Imm(tmp, 1<<sh, skip).WithSymbol(next),
			asm.RSh.Imm(tmp, sh),
			asm.Add.Imm(dst, sh),
		)
		next = skip
	}
	// k = max(0, log2 - 6); index = k<<6 + (clamped v)>>k.
	ins = append(ins,
		asm.Add.Imm(dst, -histSubBits).WithSymbol(next),
		asm.JSGE.Imm(dst, 0, label+"_k"),
		asm.Mov.Imm(dst, 0),
		asm.Mov.Reg(tmp, v).WithSymbol(label+"_k"),
		asm.LoadImm(asm.R0, 1<<histMaxLog-1, asm.DWord),
		asm.JLE.Reg(tmp, asm.R0, label+"_v"),
		asm.Mov.Reg(tmp, asm.R0),
		asm.RSh.Reg(tmp, dst).WithSymbol(label+"_v"),
		asm.LSh.Imm(dst, histSubBits),
		asm.Add.Reg(dst, tmp),
		asm.JLE.Imm(dst, histBuckets-1, label+"_ok"),
		asm.Mov.Imm(dst, histBuckets-1),
	)
	return append(ins, asm.Mov.Reg(dst, dst).WithSymbol(label+"_ok"))
}
