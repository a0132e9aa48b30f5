package cni

import (
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// DefaultMTU is used when the node has neither a default route nor any
// other interface to take an MTU from.
const DefaultMTU = 1500

// Probe destinations for the uplink lookup (documentation ranges, RFC 5737
// and RFC 3849): nothing routes them specifically, so the kernel answers with
// the default route, if there is one.
var uplinkProbes = []net.IP{net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")}

// UplinkMTU returns the MTU pods should get when the config sets none, and
// the interface it came from: the interface of the node's default route
// (IPv4, then IPv6), or else the lowest MTU of the node's other interfaces
// that are up (loopback and podroute's own veths aside), or else DefaultMTU.
// podroute routes without encapsulation, so the pod's MTU is the uplink's
// as it is. It runs in the calling thread's namespace (the node's).
func UplinkMTU() (int, string, error) {
	for _, dst := range uplinkProbes {
		// A route lookup, not a table dump: the node may hold 100k BGP
		// routes.
		routes, err := netlink.RouteGet(dst)
		if err != nil || len(routes) == 0 || routes[0].LinkIndex == 0 {
			continue // no route, or unreachable/blackhole
		}
		link, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return 0, "", fmt.Errorf("uplink ifindex %d: %w", routes[0].LinkIndex, err)
		}
		if a := link.Attrs(); a.Flags&net.FlagLoopback == 0 && a.MTU > 0 {
			return a.MTU, a.Name, nil
		}
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return 0, "", fmt.Errorf("listing links for the uplink MTU: %w", err)
	}
	mtu, from := 0, ""
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&net.FlagLoopback != 0 || a.Flags&net.FlagUp == 0 || IsHostVethName(a.Name) || a.MTU <= 0 {
			continue
		}
		if mtu == 0 || a.MTU < mtu {
			mtu, from = a.MTU, a.Name
		}
	}
	if mtu == 0 {
		return DefaultMTU, "", nil
	}
	return mtu, from, nil
}
