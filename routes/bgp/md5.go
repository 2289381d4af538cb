//go:build linux

package bgp

import (
	"fmt"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

// md5Control returns a net.Dialer or net.ListenConfig Control function
// that installs a TCP MD5 key (RFC 2385) for each peer address on the
// socket: on a listening socket the kernel then accepts, from those
// addresses, only segments signed with their key.
func md5Control(keys map[netip.Addr]string) func(network, address string, c syscall.RawConn) error {
	return func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for peer, key := range keys {
				if serr = setMD5(int(fd), network == "tcp6", peer, key); serr != nil {
					return
				}
			}
		})
		if err == nil {
			err = serr
		}
		return err
	}
}

// setMD5 sets the TCP_MD5SIG key for peer on fd; v6 says the socket is
// IPv6, on which an IPv4 peer is IPv4-mapped.
func setMD5(fd int, v6 bool, peer netip.Addr, key string) error {
	var sig unix.TCPMD5Sig
	sig.Keylen = uint16(len(key))
	copy(sig.Key[:], key)
	if v6 {
		// sockaddr_in6: port (2), flow info (4), address (16).
		sig.Addr.Family = unix.AF_INET6
		a := peer.As16()
		copy(sig.Addr.Data[6:22], a[:])
	} else {
		if !peer.Is4() {
			return fmt.Errorf("TCP MD5 key for %v on an IPv4 socket", peer)
		}
		// sockaddr_in: port (2), address (4).
		sig.Addr.Family = unix.AF_INET
		a := peer.As4()
		copy(sig.Addr.Data[2:6], a[:])
	}
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		return fmt.Errorf("TCP_MD5SIG for %v: %w", peer, err)
	}
	return nil
}
