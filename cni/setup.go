package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"

	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/utils/sysctl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// HostVethPrefix starts the name of every host-side veth podroute makes.
const HostVethPrefix = "pr"

// The link-local gateway every pod routes through; the node owns both
// addresses on each host-side veth (see the package doc).
var (
	GatewayV4 = netip.MustParseAddr("169.254.1.1")
	GatewayV6 = netip.MustParseAddr("fe80::1")
)

// hostVethRE matches exactly the names HostVethName makes, so nothing else
// on the node is ever mistaken for a podroute veth.
var hostVethRE = regexp.MustCompile(`^` + HostVethPrefix + `[0-9a-f]{11}$`)

// HostVethName names the node's end of an attachment's veth: the prefix and
// 11 hex digits of a SHA-256 of the container ID and interface name (13
// bytes, within the kernel's 15). The name is a function of the attachment,
// as Calico's is of the pod, so DEL, CHECK and GC find the link without any
// state, and a pod with two interfaces gets two names.
func HostVethName(containerID, ifName string) string {
	sum := sha256.Sum256([]byte(containerID + "\x00" + ifName))
	return HostVethPrefix + hex.EncodeToString(sum[:])[:11]
}

// IsHostVethName reports whether name is one HostVethName could have made.
func IsHostVethName(name string) bool { return hostVethRE.MatchString(name) }

// Attachment is one pod interface as ADD wires it.
type Attachment struct {
	ContainerID string
	IfName      string       // the interface's name inside the pod
	Netns       string       // path of the pod's network namespace
	Addrs       []netip.Addr // at most one per family
	MTU         int          // of both ends; 0 keeps the kernel's default
}

// HostVeth is the name of the attachment's host-side veth.
func (a Attachment) HostVeth() string { return HostVethName(a.ContainerID, a.IfName) }

func (a Attachment) addr4() (netip.Addr, bool) {
	for _, x := range a.Addrs {
		if x.Is4() {
			return x, true
		}
	}
	return netip.Addr{}, false
}

func (a Attachment) addr6() (netip.Addr, bool) {
	for _, x := range a.Addrs {
		if x.Is6() {
			return x, true
		}
	}
	return netip.Addr{}, false
}

// Interfaces are the two ends of a pod's veth after Setup.
type Interfaces struct {
	Host net.Interface
	Pod  net.Interface
}

// Stages Setup reports to its hook, in order.
const (
	StageVeth   = "after-veth"  // the pair exists, nothing configured yet
	StageAddr   = "after-addr"  // the pod's addresses and routes are set
	StageRoutes = "after-route" // the node's side is done
)

// Setup wires the attachment: a veth pair created inside the pod's namespace
// with the host end placed directly in the calling thread's namespace (the
// node's), the pod's addresses and routes, and the node's gateway addresses,
// sysctls and host routes. A leftover pair of the same attachment (an ADD
// repeated, or a crashed one) is replaced. If Setup fails it deletes the
// pair it made, so the node is as before. hook, if not nil, is called after
// each stage (see StageVeth etc.); tests use it to inject crashes.
func Setup(a Attachment, hook func(stage string)) (ifs Interfaces, err error) {
	if hook == nil {
		hook = func(string) {}
	}
	if len(a.Addrs) == 0 {
		return ifs, errors.New("no address to give the pod")
	}
	hostNS, err := ns.GetCurrentNS()
	if err != nil {
		return ifs, fmt.Errorf("opening the node's network namespace: %w", err)
	}
	defer hostNS.Close()
	podNS, err := openPodNS(a.Netns)
	if err != nil {
		return ifs, err
	}
	defer podNS.Close()
	if same, err := sameNetns(hostNS, podNS); err != nil {
		return ifs, err
	} else if same {
		return ifs, fmt.Errorf("pod network namespace %s is the node's own: refusing to wire the node as a pod", a.Netns)
	}

	hostName := a.HostVeth()
	if err := Teardown(hostName); err != nil {
		return ifs, fmt.Errorf("removing the leftover veth of an earlier ADD: %w", err)
	}
	err = podNS.Do(func(ns.NetNS) error {
		var err error
		ifs.Host, ifs.Pod, err = ip.SetupVethWithName(a.IfName, hostName, a.MTU, "", hostNS)
		return err
	})
	if err != nil {
		return ifs, fmt.Errorf("creating veth %s (pod) / %s (node): %w", a.IfName, hostName, err)
	}
	defer func() {
		if err != nil {
			// Deleting one end deletes both, and with them every address
			// and route Setup added on either side.
			if derr := Teardown(hostName); derr != nil {
				err = errors.Join(err, fmt.Errorf("cleaning up: %w", derr))
			}
		}
	}()
	hook(StageVeth)

	if err = podNS.Do(func(ns.NetNS) error { return configurePod(a) }); err != nil {
		return ifs, fmt.Errorf("pod namespace %s: %w", a.Netns, err)
	}
	hook(StageAddr)

	if err = configureHost(a, hostName); err != nil {
		return ifs, fmt.Errorf("node side %s: %w", hostName, err)
	}
	hook(StageRoutes)
	return ifs, nil
}

func openPodNS(path string) (ns.NetNS, error) {
	podNS, err := ns.GetNS(path)
	if err != nil {
		var notExist ns.NSPathNotExistErr
		if errors.As(err, &notExist) {
			return nil, fmt.Errorf("pod network namespace %s does not exist", path)
		}
		return nil, fmt.Errorf("pod network namespace %s: %w", path, err)
	}
	return podNS, nil
}

// configurePod runs inside the pod's namespace.
func configurePod(a Attachment) error {
	link, err := netlinksafe.LinkByName(a.IfName)
	if err != nil {
		return fmt.Errorf("finding %s: %w", a.IfName, err)
	}
	if _, ok := a.addr6(); ok {
		if err := setSysctls(a.IfName, ipv6On...); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting %s up: %w", a.IfName, err)
	}
	for _, addr := range a.Addrs {
		if err := netlink.AddrAdd(link, hostAddr(addr)); err != nil {
			return fmt.Errorf("adding %s to %s: %w", netip.PrefixFrom(addr, addr.BitLen()), a.IfName, err)
		}
	}
	for _, r := range podRoutes(a, link.Attrs().Index) {
		if err := netlink.RouteAdd(&r); err != nil {
			return fmt.Errorf("adding route %s: %w", describeRoute(r, a.IfName), err)
		}
	}
	return nil
}

// hostAddr is addr as a single-address prefix (/32, /128) without DAD.
func hostAddr(addr netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(addr, addr.BitLen()))}
	if addr.Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// podRoutes are the routes ADD puts in the pod: IPv4 reaches the gateway
// through a link-scope host route (the pod's own /32 has no subnet to find
// it in), and each family's default route goes through its gateway.
func podRoutes(a Attachment, linkIndex int) []netlink.Route {
	var rs []netlink.Route
	if _, ok := a.addr4(); ok {
		rs = append(rs,
			netlink.Route{LinkIndex: linkIndex, Dst: ipNet(netip.PrefixFrom(GatewayV4, 32)), Scope: netlink.SCOPE_LINK},
			netlink.Route{LinkIndex: linkIndex, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: GatewayV4.AsSlice()},
		)
	}
	if _, ok := a.addr6(); ok {
		rs = append(rs, netlink.Route{LinkIndex: linkIndex, Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: GatewayV6.AsSlice()})
	}
	return rs
}

// hostRoutes are the node's routes to the pod.
func hostRoutes(a Attachment, linkIndex int) []netlink.Route {
	var rs []netlink.Route
	for _, addr := range a.Addrs {
		rs = append(rs, netlink.Route{LinkIndex: linkIndex, Dst: ipNet(netip.PrefixFrom(addr, addr.BitLen())), Scope: netlink.SCOPE_LINK})
	}
	return rs
}

// gatewayAddrs are the addresses the node holds on a host veth.
func gatewayAddrs(a Attachment) []*netlink.Addr {
	var out []*netlink.Addr
	if _, ok := a.addr4(); ok {
		// Scope link: the gateway address exists for the pod's link only,
		// and the node must not pick it as a source on other interfaces.
		out = append(out, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(GatewayV4, 32)), Scope: int(netlink.SCOPE_LINK)})
	}
	if _, ok := a.addr6(); ok {
		out = append(out, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(GatewayV6, 64)), Flags: unix.IFA_F_NODAD})
	}
	return out
}

// configureHost runs in the node's namespace (the caller's).
func configureHost(a Attachment, hostName string) error {
	link, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("finding %s: %w", hostName, err)
	}
	var settings []sysctlSetting
	if _, ok := a.addr4(); ok {
		settings = append(settings, sysctlSetting{"net/ipv4/conf/%s/forwarding", "1"})
	}
	if _, ok := a.addr6(); ok {
		settings = append(settings, ipv6On...)
		settings = append(settings, sysctlSetting{"net/ipv6/conf/%s/forwarding", "1"})
	}
	if err := setSysctls(hostName, settings...); err != nil {
		return err
	}
	for _, addr := range gatewayAddrs(a) {
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("adding gateway %s: %w", addr.IPNet, err)
		}
	}
	for _, r := range hostRoutes(a, link.Attrs().Index) {
		if err := netlink.RouteAdd(&r); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("host route %s already exists through another link: is the address held twice? (podroute ipam check)", r.Dst)
			}
			return fmt.Errorf("adding host route %s: %w", describeRoute(r, hostName), err)
		}
	}
	return nil
}

// sysctlSetting is one per-interface sysctl; key has a %s for the
// interface name.
type sysctlSetting struct{ key, value string }

// ipv6On makes an interface usable for IPv6 at once: the runtime may have
// IPv6 off by default, and the addresses are unique by construction (IPAM),
// so duplicate address detection would only hold them "tentative".
var ipv6On = []sysctlSetting{
	{"net/ipv6/conf/%s/disable_ipv6", "0"},
	{"net/ipv6/conf/%s/accept_dad", "0"},
}

// setSysctls applies settings to ifName. /proc/sys/net belongs to the
// calling thread's network namespace.
func setSysctls(ifName string, settings ...sysctlSetting) error {
	for _, s := range settings {
		key := fmt.Sprintf(s.key, ifName)
		if _, err := sysctl.Sysctl(key, s.value); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", key, s.value, err)
		}
	}
	return nil
}

// Teardown deletes the host-side veth hostName, and with it the pod's end,
// their addresses and the routes through them. A link that is already gone
// is success (DEL is idempotent). A link of that name that is not a veth is
// not podroute's and is left alone.
func Teardown(hostName string) error {
	link, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			return nil
		}
		return fmt.Errorf("finding %s: %w", hostName, err)
	}
	if link.Type() != "veth" {
		return fmt.Errorf("%s is a %s, not a veth podroute made: leaving it alone", hostName, link.Type())
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting %s: %w", hostName, err)
	}
	return nil
}

// IsOwnNetns reports whether the network namespace at path is the calling
// thread's own, which for the plugin is the node's: the same namespace
// file (device and inode), however it is named (/proc/self/ns/net, a
// /proc/PID/ns/net of another process in it, a bind mount under
// /run/netns). Wiring it as a pod would give the node a pod's address and
// a default route through the pod gateway.
func IsOwnNetns(path string) (bool, error) {
	var target unix.Stat_t
	if err := unix.Stat(path, &target); err != nil {
		return false, err
	}
	own, err := ns.GetCurrentNS()
	if err != nil {
		return false, fmt.Errorf("opening the node's network namespace: %w", err)
	}
	defer own.Close()
	var cur unix.Stat_t
	if err := unix.Fstat(int(own.Fd()), &cur); err != nil {
		return false, err
	}
	return target.Dev == cur.Dev && target.Ino == cur.Ino, nil
}

// sameNetns reports whether two open namespaces are one.
func sameNetns(a, b ns.NetNS) (bool, error) {
	var sa, sb unix.Stat_t
	if err := unix.Fstat(int(a.Fd()), &sa); err != nil {
		return false, err
	}
	if err := unix.Fstat(int(b.Fd()), &sb); err != nil {
		return false, err
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino, nil
}

// NetnsExists reports whether path is still there, for DEL and GC: a pod
// whose namespace is gone has nothing left to unwire inside it.
func NetnsExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func describeRoute(r netlink.Route, dev string) string {
	s := r.Dst.String()
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	s += " dev " + dev
	if r.Scope == netlink.SCOPE_LINK {
		s += " scope link"
	}
	return s
}
