//go:build !linux

package bgp

import (
	"errors"
	"net/netip"
	"syscall"
)

func md5Control(map[netip.Addr]string) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		return errors.New("TCP MD5 signatures are supported on Linux only")
	}
}
