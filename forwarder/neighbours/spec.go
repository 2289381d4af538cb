package neighbours

import (
	"fmt"
	"net/netip"

	"github.com/pnap-project/pnap/fib"
)

// HopSpec says which next hops the plane needs.
type HopSpec struct {
	Backbones []BackboneHop // index = fib.BackboneID
	Customers []CustomerHop // index = customer "backbone" id in forwarder.Plane.Customers
}

// BackboneHop is a backbone's port and its gateways. A zero gateway means
// the backbone is not used in that family.
type BackboneHop struct {
	Port               uint8
	Ifindex            int
	Gateway4, Gateway6 netip.Addr
}

// CustomerHop is a customer's port, its static next hops (zero if none) and
// the port's connected subnets (zero if none): neighbours on Ifindex inside
// a subnet are published in forwarder.Hops.Neigh4 and Neigh6.
type CustomerHop struct {
	Port               uint8
	Ifindex            int
	NextHop4, NextHop6 netip.Addr
	Subnet4, Subnet6   netip.Prefix
}

// normalizeSpec checks spec and returns a copy with plain addresses (no
// zone, IPv4 not mapped) and masked prefixes.
func normalizeSpec(spec HopSpec, ports int) (HopSpec, error) {
	var out HopSpec
	if len(spec.Backbones) > fib.MaxBackbones || len(spec.Customers) > fib.MaxBackbones {
		return out, fmt.Errorf("neighbours: %d backbones and %d customers; at most %d each", len(spec.Backbones), len(spec.Customers), fib.MaxBackbones)
	}
	addr := func(what string, i int, a netip.Addr, v4 bool) (netip.Addr, error) {
		if !a.IsValid() {
			return a, nil
		}
		a = a.WithZone("").Unmap()
		if a.Is4() != v4 || !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
			return a, fmt.Errorf("neighbours: %s %d: %s is not a usable IPv%d unicast address", what, i, a, ipv(v4))
		}
		return a, nil
	}
	prefix := func(what string, i int, p netip.Prefix, v4 bool) (netip.Prefix, error) {
		if !p.IsValid() {
			return netip.Prefix{}, nil
		}
		a := p.Addr().WithZone("")
		if a.Is4In6() && p.Bits() >= 96 {
			a, p = a.Unmap(), netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		if a.Is4() != v4 || p.Bits() == 0 {
			return p, fmt.Errorf("neighbours: customer %d: %s %s is not an IPv%d subnet", i, what, p, ipv(v4))
		}
		return netip.PrefixFrom(a, p.Bits()).Masked(), nil
	}
	port := func(what string, i int, port uint8, ifindex int, used bool) error {
		if int(port) >= ports {
			return fmt.Errorf("neighbours: %s %d: port %d, but the plane has %d ports", what, i, port, ports)
		}
		if used && ifindex <= 0 {
			return fmt.Errorf("neighbours: %s %d: no ifindex", what, i)
		}
		return nil
	}
	var err error
	for i, b := range spec.Backbones {
		if b.Gateway4, err = addr("backbone", i, b.Gateway4, true); err != nil {
			return out, err
		}
		if b.Gateway6, err = addr("backbone", i, b.Gateway6, false); err != nil {
			return out, err
		}
		if err := port("backbone", i, b.Port, b.Ifindex, b.Gateway4.IsValid() || b.Gateway6.IsValid()); err != nil {
			return out, err
		}
		out.Backbones = append(out.Backbones, b)
	}
	for i, c := range spec.Customers {
		if c.NextHop4, err = addr("customer", i, c.NextHop4, true); err != nil {
			return out, err
		}
		if c.NextHop6, err = addr("customer", i, c.NextHop6, false); err != nil {
			return out, err
		}
		if c.Subnet4, err = prefix("Subnet4", i, c.Subnet4, true); err != nil {
			return out, err
		}
		if c.Subnet6, err = prefix("Subnet6", i, c.Subnet6, false); err != nil {
			return out, err
		}
		used := c.NextHop4.IsValid() || c.NextHop6.IsValid() || c.Subnet4.IsValid() || c.Subnet6.IsValid()
		if err := port("customer", i, c.Port, c.Ifindex, used); err != nil {
			return out, err
		}
		out.Customers = append(out.Customers, c)
	}
	return out, nil
}

func ipv(v4 bool) int {
	if v4 {
		return 4
	}
	return 6
}
