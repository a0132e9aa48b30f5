package cni

import (
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
)

// CheckError lists every way the attachment differs from what ADD made.
type CheckError struct {
	Attachment string
	Diffs      []string
}

func (e *CheckError) Error() string {
	return fmt.Sprintf("CHECK %s: %d difference(s) from what ADD set up: %s", e.Attachment, len(e.Diffs), strings.Join(e.Diffs, "; "))
}

// Check compares the node's and the pod's side of the attachment with what
// Setup makes and returns a *CheckError naming each difference (nil if there
// is none). It changes nothing.
func Check(a Attachment) error {
	c := &CheckError{Attachment: a.ContainerID + "/" + a.IfName}
	diff := func(format string, args ...any) { c.Diffs = append(c.Diffs, fmt.Sprintf(format, args...)) }

	hostName := a.HostVeth()
	hostIndex := -1
	if link, err := netlinksafe.LinkByName(hostName); err != nil {
		diff("host-side veth %s is missing in the node's namespace (%v)", hostName, err)
	} else {
		hostIndex = link.Attrs().Index
		checkLink(link, hostName, "host-side veth", a.MTU, diff)
		checkAddrs(link, hostName, "the node's network namespace", gatewayAddrs(a), diff)
		checkRoutes(hostName, "the node's network namespace", hostRoutes(a, hostIndex), diff)
		if _, ok := a.addr4(); ok {
			checkSysctl(fmt.Sprintf("net/ipv4/conf/%s/forwarding", hostName), "1", "the node's network namespace", diff)
		}
	}

	podNS, err := openPodNS(a.Netns)
	if err != nil {
		diff("%v", err)
		return c.orNil()
	}
	defer podNS.Close()
	err = podNS.Do(func(ns.NetNS) error {
		link, err := netlinksafe.LinkByName(a.IfName)
		if err != nil {
			diff("interface %s is missing in pod namespace %s (%v)", a.IfName, a.Netns, err)
			return nil
		}
		checkLink(link, a.IfName, "pod interface", a.MTU, diff)
		if veth, ok := link.(*netlink.Veth); ok && hostIndex > 0 {
			// The peer's index is in the node's namespace.
			if peer, err := netlink.VethPeerIndex(veth); err == nil && peer != hostIndex {
				diff("pod interface %s is paired with ifindex %d in the node's namespace, not with %s (ifindex %d)", a.IfName, peer, hostName, hostIndex)
			}
		}
		var want []*netlink.Addr
		for _, addr := range a.Addrs {
			want = append(want, hostAddr(addr))
		}
		checkAddrs(link, a.IfName, "the pod's network namespace", want, diff)
		checkRoutes(a.IfName, "the pod's network namespace", podRoutes(a, link.Attrs().Index), diff)
		return nil
	})
	if err != nil {
		diff("entering pod namespace %s: %v", a.Netns, err)
	}
	return c.orNil()
}

func (c *CheckError) orNil() error {
	if len(c.Diffs) == 0 {
		return nil
	}
	return c
}

func checkLink(link netlink.Link, name, what string, mtu int, diff func(string, ...any)) {
	if link.Type() != "veth" {
		diff("%s %s is a %s, not a veth", what, name, link.Type())
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		diff("%s %s is down", what, name)
	}
	if mtu != 0 && link.Attrs().MTU != mtu {
		diff("%s %s has MTU %d, want %d", what, name, link.Attrs().MTU, mtu)
	}
}

// checkAddrs reports each wanted address that is missing from link, or
// present with another prefix length.
func checkAddrs(link netlink.Link, name, where string, want []*netlink.Addr, diff func(string, ...any)) {
	have, err := netlinksafe.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		diff("listing addresses of %s in %s: %v", name, where, err)
		return
	}
	for _, w := range want {
		found := false
		for _, h := range have {
			if !h.IP.Equal(w.IP) {
				continue
			}
			found = true
			if hOnes, _ := h.Mask.Size(); hOnes != maskOnes(w.IPNet) {
				diff("%s in %s has %s, want %s", name, where, h.IPNet, w.IPNet)
			}
		}
		if !found {
			diff("address %s is missing from %s in %s", w.IPNet, name, where)
		}
	}
}

func maskOnes(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

// checkRoutes reports each wanted route of the main table that is missing
// or goes elsewhere.
func checkRoutes(name, where string, want []netlink.Route, diff func(string, ...any)) {
	for _, w := range want {
		family := netlink.FAMILY_V4
		if w.Dst.IP.To4() == nil {
			family = netlink.FAMILY_V6
		}
		have, err := netlinksafe.RouteListFiltered(family, &netlink.Route{Dst: w.Dst, Table: 254}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
		if err != nil {
			diff("listing routes to %s in %s: %v", w.Dst, where, err)
			continue
		}
		var others []string
		ok := false
		for _, h := range have {
			if h.LinkIndex == w.LinkIndex && gwEqual(h.Gw, w.Gw) {
				ok = true
				break
			}
			others = append(others, describeHave(h))
		}
		switch {
		case ok:
		case len(others) == 0:
			diff("route %s is missing in %s", describeRoute(w, name), where)
		default:
			diff("route %s is missing in %s; found %s instead", describeRoute(w, name), where, strings.Join(others, ", "))
		}
	}
}

func gwEqual(a, b net.IP) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return a.Equal(b)
}

func describeHave(r netlink.Route) string {
	dev := fmt.Sprintf("ifindex %d", r.LinkIndex)
	if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	s := "dev " + dev
	if r.Gw != nil {
		s = "via " + r.Gw.String() + " " + s
	}
	return s
}

func checkSysctl(key, want, where string, diff func(string, ...any)) {
	got, err := sysctl.Sysctl(key)
	switch {
	case err != nil:
		diff("reading sysctl %s in %s: %v", key, where, err)
	case strings.TrimSpace(got) != want:
		diff("sysctl %s is %s in %s, want %s", key, strings.TrimSpace(got), where, want)
	}
}
