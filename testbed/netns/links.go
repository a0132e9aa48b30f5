package netns

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// Veth creates a veth pair with aIf in a and bIf in b, sets the MTU on both
// ends (0 keeps the kernel default) and brings both up.
//
// The pair is created by a netlink socket that lives inside a, with the peer's
// target namespace given in the same request, so the kernel creates bIf
// directly in b: no end ever exists in the root namespace, not even briefly
// or on error. If a later step fails the pair is deleted again.
func Veth(a *Namespace, aIf string, b *Namespace, bIf string, mtu int) error {
	if err := errors.Join(checkIfName(aIf), checkIfName(bIf)); err != nil {
		return err
	}
	if mtu < 0 {
		return fmt.Errorf("veth %s/%s: mtu %d: must be >= 0", aIf, bIf, mtu)
	}
	aHandle, aNetlink, err := netlinkIn(a)
	if err != nil {
		return err
	}
	defer aHandle.Close()
	defer aNetlink.Close()
	bHandle, bNetlink, err := netlinkIn(b)
	if err != nil {
		return err
	}
	defer bHandle.Close()
	defer bNetlink.Close()

	veth := netlink.NewVeth(netlink.LinkAttrs{Name: aIf, MTU: mtu})
	veth.PeerName = bIf
	veth.PeerNamespace = netlink.NsFd(int(bHandle))
	veth.PeerMTU = uint32(mtu)
	if err := aNetlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s:%s <-> %s:%s: create: %w", a.Name, aIf, b.Name, bIf, err)
	}
	if err := errors.Join(linkUp(aNetlink, a, aIf), linkUp(bNetlink, b, bIf)); err != nil {
		// Deleting one end deletes the pair.
		return errors.Join(err, deleteLink(aNetlink, a, aIf))
	}
	return nil
}

// netlinkIn returns a netlink handle whose socket was opened inside n, so
// every request on it acts on n regardless of which thread sends it.
func netlinkIn(n *Namespace) (vnetns.NsHandle, *netlink.Handle, error) {
	nsHandle, err := vnetns.GetFromName(n.Name)
	if err != nil {
		return 0, nil, fmt.Errorf("namespace %s: open: %w", n.Name, err)
	}
	h, err := netlink.NewHandleAt(nsHandle)
	if err != nil {
		nsHandle.Close()
		return 0, nil, fmt.Errorf("namespace %s: netlink socket: %w", n.Name, err)
	}
	return nsHandle, h, nil
}

func linkUp(h *netlink.Handle, n *Namespace, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("namespace %s: find %s: %w", n.Name, name, err)
	}
	if err := h.LinkSetUp(link); err != nil {
		return fmt.Errorf("namespace %s: set %s up: %w", n.Name, name, err)
	}
	return nil
}

func deleteLink(h *netlink.Handle, n *Namespace, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return fmt.Errorf("namespace %s: find %s: %w", n.Name, name, err)
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("namespace %s: delete %s: %w", n.Name, name, err)
	}
	return nil
}

// IP runs `ip -n NAME argv...`; ip enters the namespace itself, so nothing
// runs in the root namespace. The error includes ip's output.
func (n *Namespace) IP(argv ...string) ([]byte, error) {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, argv...)...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ip -n %s %s: %w: %s", n.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

func (n *Namespace) ip(argv ...string) error {
	_, err := n.IP(argv...)
	return err
}

// AddAddr adds an IPv4 or IPv6 address in CIDR form. IPv6 addresses get
// nodad so they are usable at once instead of after duplicate detection.
func (n *Namespace) AddAddr(ifName, cidr string) error {
	argv := []string{"addr", "add", cidr, "dev", ifName}
	if strings.Contains(cidr, ":") {
		argv = append(argv, "nodad")
	}
	return n.ip(argv...)
}

// SetUp brings an interface up.
func (n *Namespace) SetUp(ifName string) error { return n.ip("link", "set", ifName, "up") }

// SetDown brings an interface down (for link-failure tests).
func (n *Namespace) SetDown(ifName string) error { return n.ip("link", "set", ifName, "down") }

// AddRoute runs `ip route add argv...` in the namespace, e.g.
// AddRoute("10.1.0.0/24", "via", "10.0.0.1"); use "-6" first for IPv6
// routes given without an address that says so.
func (n *Namespace) AddRoute(argv ...string) error {
	if len(argv) > 0 && (argv[0] == "-6" || argv[0] == "-4") {
		return n.ip(append([]string{argv[0], "route", "add"}, argv[1:]...)...)
	}
	return n.ip(append([]string{"route", "add"}, argv...)...)
}

// AddBridge creates a Linux bridge (an L2 segment, e.g. a rack's LAN) and
// brings it up.
func (n *Namespace) AddBridge(name string) error {
	if err := checkIfName(name); err != nil {
		return err
	}
	if err := n.ip("link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return n.SetUp(name)
}

// Attach enslaves an interface to a bridge in the same namespace and brings
// it up.
func (n *Namespace) Attach(ifName, bridge string) error {
	if err := n.ip("link", "set", ifName, "master", bridge); err != nil {
		return err
	}
	return n.SetUp(ifName)
}

// KernelRoute is one route as `ip -j route show` reports it.
type KernelRoute struct {
	Dst      string          `json:"dst"`  // "default" for the default route
	Type     string          `json:"type"` // "blackhole", "unreachable"; empty for unicast
	Gateway  string          `json:"gateway"`
	Dev      string          `json:"dev"`
	Protocol string          `json:"protocol"` // "bgp" for FRR's, a number for unnamed ones
	Metric   int             `json:"metric"`
	NextHops []KernelNexthop `json:"nexthops"` // set for multipath routes instead of Gateway/Dev
}

// KernelNexthop is one path of a multipath kernel route.
type KernelNexthop struct {
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
}

// KernelRoutes lists the main table of the namespace's kernel for family
// "ipv4" or "ipv6", as the kernel sees it (not as FRR believes it is).
func (n *Namespace) KernelRoutes(family string) ([]KernelRoute, error) {
	flag, err := FamilyFlag(family)
	if err != nil {
		return nil, err
	}
	out, err := n.IP("-j", flag, "route", "show")
	if err != nil {
		return nil, err
	}
	var routes []KernelRoute
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("namespace %s: parsing ip -j route: %w", n.Name, err)
	}
	return routes, nil
}

// FamilyFlag is ip(8)'s flag for address family "ipv4" (-4) or "ipv6" (-6).
func FamilyFlag(family string) (string, error) {
	switch family {
	case "ipv4":
		return "-4", nil
	case "ipv6":
		return "-6", nil
	}
	return "", fmt.Errorf("address family %q: want ipv4 or ipv6", family)
}
