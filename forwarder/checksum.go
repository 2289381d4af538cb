package forwarder

import "encoding/binary"

// ipv4HeaderSumOK reports whether an IPv4 header's checksum is valid: the
// ones' complement sum over the header, checksum included, is 0xffff. An
// IPv4 header is IHL 32-bit words, so it sums words, not halves: the ones'
// complement sum folds the same either way, and this halves the loads.
func ipv4HeaderSumOK(h []byte) bool {
	var sum uint64
	for ; len(h) >= 4; h = h[4:] {
		sum += uint64(binary.BigEndian.Uint32(h))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

// decrementTTL lowers an IPv4 header's TTL by one and updates its checksum
// incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). The 16-bit word
// holding TTL and protocol drops by 0x0100, so ~m + m' = 0xfeff.
func decrementTTL(h []byte) {
	h[8]--
	sum := uint32(^binary.BigEndian.Uint16(h[10:12])) + 0xfeff
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	binary.BigEndian.PutUint16(h[10:12], ^uint16(sum))
}
