package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// GoBGP v4 hands paths over as Go values (apiutil.Path with decoded NLRI
// and attributes); nothing here goes through protobuf.

// pathPrefix is the destination of a unicast path.
func pathPrefix(p *apiutil.Path) (netip.Prefix, error) {
	switch n := p.Nlri.(type) {
	case *bgp.IPAddrPrefix:
		if !n.Prefix.IsValid() {
			return netip.Prefix{}, fmt.Errorf("NLRI %v has no valid prefix", n)
		}
		return n.Prefix.Masked(), nil
	case nil:
		return netip.Prefix{}, fmt.Errorf("path has no NLRI")
	default:
		return netip.Prefix{}, fmt.Errorf("NLRI %T is not an IP unicast prefix", n)
	}
}

// pathNextHop is a path's global next hop: NEXT_HOP for IPv4, the first
// next hop of MP_REACH_NLRI for IPv6. A link-local next hop (RFC 2545's
// second one) is not usable without an interface.
func pathNextHop(p *apiutil.Path) (netip.Addr, error) {
	for _, a := range p.Attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			if !a.Value.IsValid() {
				return netip.Addr{}, fmt.Errorf("NEXT_HOP attribute is empty")
			}
			return a.Value.Unmap(), nil
		case *bgp.PathAttributeMpReachNLRI:
			if a.Nexthop.IsValid() && !a.Nexthop.IsLinkLocalUnicast() && !a.Nexthop.IsUnspecified() {
				return a.Nexthop.Unmap(), nil
			}
			return netip.Addr{}, fmt.Errorf("no usable next hop in MP_REACH_NLRI (global %v, link-local %v)", a.Nexthop, a.LinkLocalNexthop)
		}
	}
	return netip.Addr{}, fmt.Errorf("path has no next hop attribute")
}

// advertisementPath is originPath with the advertisement's communities.
func advertisementPath(a Advertisement) (*apiutil.Path, error) {
	path, err := originPath(a.Prefix)
	if err != nil {
		return nil, err
	}
	if len(a.Communities) > 0 {
		path.Attrs = append(path.Attrs, bgp.NewPathAttributeCommunities(slices.Clone(a.Communities)))
	}
	if len(a.LargeCommunities) > 0 {
		lc := make([]*bgp.LargeCommunity, len(a.LargeCommunities))
		for i, c := range a.LargeCommunities {
			lc[i] = bgp.NewLargeCommunity(c[0], c[1], c[2])
		}
		path.Attrs = append(path.Attrs, bgp.NewPathAttributeLargeCommunities(lc))
	}
	return path, nil
}

// originPath is a locally originated path for p with next hop self
// (GoBGP fills in the session's local address for an unspecified one).
func originPath(p netip.Prefix) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", p, err)
	}
	family := bgp.RF_IPv4_UC
	nh := netip.IPv4Unspecified()
	if p.Addr().Is6() {
		family = bgp.RF_IPv6_UC
		nh = netip.IPv6Unspecified()
	}
	attrs := []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	if family == bgp.RF_IPv4_UC {
		a, err := bgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	} else {
		a, err := bgp.NewPathAttributeMpReachNLRI(family, []bgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: attrs, Age: time.Now().Unix()}, nil
}
