//go:build linux

package traffic

import (
	"encoding/binary"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// XDP return codes.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

// storeBytes emits immediate stores that write b at [dst+off], in words,
// then a half and a byte: what the programs use to restore constant headers.
func storeBytes(dst asm.Register, off int, b []byte) asm.Instructions {
	var ins asm.Instructions
	for len(b) > 0 {
		switch {
		case len(b) >= 4:
			ins = append(ins, asm.StoreImm(dst, int16(off), int64(int32(binary.NativeEndian.Uint32(b))), asm.Word))
			off, b = off+4, b[4:]
		case len(b) >= 2:
			ins = append(ins, asm.StoreImm(dst, int16(off), int64(binary.NativeEndian.Uint16(b)), asm.Half))
			off, b = off+2, b[2:]
		default:
			ins = append(ins, asm.StoreImm(dst, int16(off), int64(b[0]), asm.Byte))
			off, b = off+1, b[1:]
		}
	}
	return ins
}

// mapLookup looks up the key stored at [RFP+key] in m: R0 then points at
// the value, or the program jumps to miss when there is none. R1 to R5 are
// clobbered, as by any helper call.
func mapLookup(m *ebpf.Map, key int16, miss string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(key)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
	}
}

// be16 is v as a native-endian load of its network-order bytes reads it.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// foldSum folds the 32-bit one's-complement sum in r into 16 bits and
// complements it (the checksum, in host order), using tmp.
func foldSum(r, tmp asm.Register) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(tmp, r), asm.RSh.Imm(tmp, 16), asm.And.Imm(r, 0xffff), asm.Add.Reg(r, tmp),
		asm.Mov.Reg(tmp, r), asm.RSh.Imm(tmp, 16), asm.And.Imm(r, 0xffff), asm.Add.Reg(r, tmp),
		asm.Xor.Imm(r, 0xffff),
	}
}

// atomicMem is op.Mem with the immediate set as well. cilium/ebpf v0.22.0's
// Instruction.Marshal takes the immediate before it derives it from the
// atomic op, so every atomic op but add reaches the kernel as a plain add
// (imm 0: Xchg.Mem encodes as c3 .. 00000000). Setting both fields is right
// with that bug and after its fix.
func atomicMem(op asm.AtomicOp, dst, src asm.Register, size asm.Size, off int16) asm.Instruction {
	ins := op.Mem(dst, src, size, off)
	ins.Constant = int64(op >> 8)
	return ins
}
