package daemon

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// neededCaps are the capabilities `pnapd run` always uses, and it needs
// CAP_SYS_NICE too for real-time workers, as it has by default
// (configs/pnapd.service grants exactly these; TestRunWithServiceCapabilities
// shows each is needed).
var neededCaps = []capability{
	{unix.CAP_NET_ADMIN, "CAP_NET_ADMIN", "attach XDP programs, netlink"},
	{unix.CAP_NET_RAW, "CAP_NET_RAW", "AF_XDP and raw sockets"},
	{unix.CAP_BPF, "CAP_BPF", "load BPF programs and maps"},
	{unix.CAP_PERFMON, "CAP_PERFMON", "the verifier's packet pointer arithmetic"},
}

type capability struct {
	bit  uint
	name string
	why  string
}

// checkCapabilities says which needed capabilities the process lacks, so
// that a missing one is reported by name instead of as whichever system
// call fails first.
//
// PNAPD_SKIP_CAPABILITY_CHECK=1 skips it, so that tests can show the kernel
// itself refuses pnapd without each of them.
func checkCapabilities(realtime bool) error {
	if os.Getenv("PNAPD_SKIP_CAPABILITY_CHECK") == "1" {
		return nil
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell; the system calls will say
	}
	var eff uint64
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			eff, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return nil
			}
		}
	}
	var missing []string
	needed := neededCaps
	if realtime {
		needed = append(needed[:len(needed):len(needed)], capability{unix.CAP_SYS_NICE, "CAP_SYS_NICE", "real-time worker threads; or set [forwarder] priority = 0"})
	}
	for _, c := range needed {
		if eff&(1<<c.bit) == 0 {
			missing = append(missing, fmt.Sprintf("%s (%s)", c.name, c.why))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing capabilities: %s; run as root or with the capabilities of configs/pnapd.service", strings.Join(missing, ", "))
	}
	return nil
}
