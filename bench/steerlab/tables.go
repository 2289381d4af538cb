package steerlab

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/pnap-project/pnap/internal/shareddata"
)

// Tables returns the Internet-sized tables the demo's backbones carry: the
// real full IPv4 and IPv6 tables from the shared data where they exist, and
// otherwise tables synthesised in dir with the same size and prefix-length
// mix, so that the demo runs on any fresh clone. It says which.
func Tables(dir string) (files []string, what string, err error) {
	if d := shareddata.Dir(); d != "" {
		v4, v6 := filepath.Join(d, shareddata.IPv4Full), filepath.Join(d, shareddata.IPv6Full)
		if _, e4 := os.Stat(v4); e4 == nil {
			if _, e6 := os.Stat(v6); e6 == nil {
				return []string{v4, v6}, "the real full IPv4 and IPv6 tables of " + d, nil
			}
		}
	}
	v4, v6 := filepath.Join(dir, "synthetic-ipv4.txt"), filepath.Join(dir, "synthetic-ipv6.txt")
	rng := rand.New(rand.NewPCG(2, 3))
	if err := synthesise(v4, 4, 900_000, mix4, rng); err != nil {
		return nil, "", err
	}
	if err := synthesise(v6, 6, 160_000, mix6, rng); err != nil {
		return nil, "", err
	}
	return []string{v4, v6}, "synthesised tables (900,000 IPv4 and 160,000 IPv6 prefixes, the real tables' length mix; ../shared/data not found)", nil
}

// The prefix-length mix of the real full tables (../shared/data/README.md),
// in per mille; the rest of each family spread over the nearby lengths.
var (
	mix4 = map[int]int{24: 596, 22: 120, 23: 107, 21: 56, 20: 40, 19: 30, 16: 15, 18: 14, 17: 8, 15: 4, 14: 3, 13: 2, 12: 2, 11: 1, 10: 1, 8: 1}
	mix6 = map[int]int{48: 520, 32: 120, 44: 80, 40: 60, 36: 50, 29: 40, 46: 30, 47: 25, 45: 20, 33: 15, 34: 15, 35: 10, 28: 5, 30: 5, 31: 5}
)

// synthesise writes n distinct random global unicast prefixes of family
// fam with the length mix into path, keeping clear of the lab's ranges.
func synthesise(path string, fam, n int, mix map[int]int, rng *rand.Rand) error {
	var lengths []int
	for l, w := range mix {
		for range w {
			lengths = append(lengths, l)
		}
	}
	lab4, lab6 := netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("2001:2::/48")
	seen := make(map[netip.Prefix]bool, n)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for len(seen) < n {
		l := lengths[rng.IntN(len(lengths))]
		var p netip.Prefix
		if fam == 4 {
			a := netip.AddrFrom4([4]byte{byte(1 + rng.IntN(222)), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())})
			p = netip.PrefixFrom(a, l).Masked()
			if !a.IsGlobalUnicast() || a.IsPrivate() || p.Overlaps(lab4) || a.As4()[0] == 127 {
				continue
			}
		} else {
			var b [16]byte
			b[0], b[1] = 0x20|byte(rng.IntN(16)), byte(rng.Uint32())
			for i := 2; i < 8; i++ {
				b[i] = byte(rng.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), l).Masked()
			if p.Overlaps(lab6) {
				continue
			}
		}
		if !seen[p] {
			seen[p] = true
			fmt.Fprintln(w, p)
		}
	}
	return w.Flush()
}
