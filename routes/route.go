package routes

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Route is one destination podroute wants in the kernel.
type Route struct {
	// Prefix is the destination, always in canonical (masked) form.
	Prefix netip.Prefix
	// NextHops are the gateways; more than one makes an ECMP route. Empty
	// together with Blackhole false is invalid.
	NextHops []netip.Addr
	// Blackhole drops matching traffic locally. It is used for this node's
	// own pod CIDRs so that packets to unallocated pod addresses are not
	// sent out of the default route.
	Blackhole bool
}

// normalize returns r with a masked prefix and sorted, de-duplicated next
// hops, so that two routes meaning the same thing compare equal.
//
// Next hops that are already sorted and distinct (one next hop, the usual
// case) are not copied.
func (r Route) normalize() Route {
	n := Route{Prefix: r.Prefix.Masked(), Blackhole: r.Blackhole}
	if r.Blackhole {
		return n
	}
	sorted := true
	for i := 1; i < len(r.NextHops); i++ {
		if r.NextHops[i-1].Compare(r.NextHops[i]) >= 0 {
			sorted = false
			break
		}
	}
	if sorted {
		n.NextHops = r.NextHops
		return n
	}
	n.NextHops = slices.Clone(r.NextHops)
	slices.SortFunc(n.NextHops, func(a, b netip.Addr) int { return a.Compare(b) })
	n.NextHops = slices.Compact(n.NextHops)
	return n
}

// Equal reports whether two normalized routes are the same kernel route.
func (r Route) Equal(o Route) bool {
	return r.Prefix == o.Prefix && r.Blackhole == o.Blackhole && slices.Equal(r.NextHops, o.NextHops)
}

// validate rejects routes the kernel could not hold or that mix families.
func (r Route) validate() error {
	if !r.Prefix.IsValid() {
		return fmt.Errorf("route has no valid prefix")
	}
	if r.Blackhole {
		if len(r.NextHops) > 0 {
			return fmt.Errorf("route %s: a blackhole has no next hops", r.Prefix)
		}
		return nil
	}
	if len(r.NextHops) == 0 {
		return fmt.Errorf("route %s: no next hops", r.Prefix)
	}
	for _, nh := range r.NextHops {
		if nh.Is4() != r.Prefix.Addr().Is4() || !nh.IsValid() || nh.IsUnspecified() {
			return fmt.Errorf("route %s: next hop %s is not a usable address of the prefix's family", r.Prefix, nh)
		}
	}
	return nil
}

func (r Route) String() string {
	if r.Blackhole {
		return "blackhole " + r.Prefix.String()
	}
	hops := make([]string, len(r.NextHops))
	for i, nh := range r.NextHops {
		hops[i] = nh.String()
	}
	return r.Prefix.String() + " via " + strings.Join(hops, ",")
}
