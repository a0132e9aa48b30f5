package routes

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpRetries bounds how often a dump interrupted by concurrent changes
// (NLM_F_DUMP_INTR) is started again before the reconciler gives up until
// its next round.
const dumpRetries = 5

// fromNetlink converts a kernel route to a Route; ok is false for kinds
// podroute never writes (those are then left alone by the diff only if
// they are not of our protocol, which the dump filter already ensures; a
// route of our protocol that we cannot represent is reported as a plain
// route without next hops so the diff replaces it).
func fromNetlink(nr netlink.Route) (Route, bool) {
	var r Route
	switch {
	case nr.Dst != nil:
		p, ok := prefixFromIPNet(nr.Dst)
		if !ok {
			return r, false
		}
		r.Prefix = p
	case nr.Family == unix.AF_INET6:
		r.Prefix = netip.MustParsePrefix("::/0")
	default:
		r.Prefix = netip.MustParsePrefix("0.0.0.0/0")
	}
	if nr.Type == unix.RTN_BLACKHOLE {
		r.Blackhole = true
		return r.normalize(), true
	}
	if gw, ok := netip.AddrFromSlice(nr.Gw); ok && nr.Gw != nil {
		r.NextHops = append(r.NextHops, gw.Unmap())
	}
	for _, nh := range nr.MultiPath {
		if gw, ok := netip.AddrFromSlice(nh.Gw); ok && nh.Gw != nil {
			r.NextHops = append(r.NextHops, gw.Unmap())
		}
	}
	return r.normalize(), true
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	addr, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	if addr.Is4In6() && len(n.Mask) == net.IPv4len {
		addr = addr.Unmap()
	} else if len(n.Mask) == net.IPv4len {
		addr = addr.Unmap()
	}
	return netip.PrefixFrom(addr, ones).Masked(), true
}

// tableOwners maps each destination in table to the protocol of the route
// there, preferring ours when several routes share a destination (with
// different metrics). It is only used to resolve EEXIST on exclusive
// creates, which happens when our view of the kernel was out of date.
func tableOwners(h *netlink.Handle, table uint32, proto uint8) (map[netip.Prefix]int, error) {
	filter := &netlink.Route{Table: int(table)}
	var list []netlink.Route
	var err error
	for attempt := 0; attempt < dumpRetries; attempt++ {
		list, err = h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list routes in table %d: %w", table, err)
	}
	out := make(map[netip.Prefix]int, len(list))
	for _, nr := range list {
		rt, ok := fromNetlink(nr)
		if !ok {
			continue
		}
		if have, seen := out[rt.Prefix]; seen && have == int(proto) {
			continue
		}
		out[rt.Prefix] = int(nr.Protocol)
	}
	return out, nil
}
