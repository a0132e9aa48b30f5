package lab

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/testbed/topology"
)

// The lab's Service address ranges in Kubernetes mode (outside every
// topology's LANs, links and pod pools).
const (
	KubeLoadBalancerPool = "10.250.0.0/24"
	KubeExternalIPRange  = "10.251.0.0/24"
	// IPv6 too in dual-stack topologies.
	KubeLoadBalancerPool6 = "fd00:250::/120"
	KubeExternalIPRange6  = "fd00:251::/120"
	KubeServiceCIDR6      = "fd00:10:96::/112"
)

// The outside client's network: documentation ranges (RFC 5737, RFC
// 3849), outside every topology's addresses and, unlike the control
// plane, outside the nodes' networks, so a Service sees it as the
// Internet would be seen.
const (
	KubeClientSubnet4 = "203.0.113.0/24"
	KubeClientSubnet6 = "2001:db8:113::/64"
)

// KubePlan is how a topology is described to Kubernetes. Like Plan it is
// pure data.
type KubePlan struct {
	ControlPlane KubeCPPlan
	// Client is a host outside the cluster, behind a spine (nil when the
	// topology has no router that is not a rack's gateway): it reaches
	// Services' LoadBalancer and external addresses through the fabric as
	// a user would, and the services e2e suite runs from it.
	Client *KubeClientPlan
	// ClusterASN is BGPConfiguration's: the AS most nodes share, or
	// podroute's default when every node has its own (each then carries
	// the podroute.io/asn annotation).
	ClusterASN    uint32
	Configuration cluster.BGPConfiguration
	Peers         []cluster.BGPPeer
	// Nodes are what each Node must carry: its labels (kubelet sets them
	// when it registers, --node-labels), annotations (the lab adds them
	// once kubelet has registered the Node) and InternalIPs (kubelet's
	// --node-ip); spec.podCIDRs is left to nodeipam.
	Nodes        []corev1.Node
	ClusterCIDRs []string
	// ServiceCIDRs are kube-apiserver's Service ranges: IPv4, and IPv6 in
	// a dual-stack topology.
	ServiceCIDRs []string
	NodeMask4    int
	NodeMask6    int
}

// KubeCPPlan places the control plane: a port of the first LAN's bridge.
type KubeCPPlan struct {
	LAN              string
	BridgeIn, Bridge string         // element holding the bridge, and its name
	Port             string         // the bridge-side veth
	Iface            topology.Iface // the control plane's side, with its addresses
	Gateways         []netip.Addr
	Address          netip.Addr // the API server's bind address
}

// KubeClientPlan places the outside client: a link to Router, whose
// Network4 (and Network6) FRR originates towards the racks.
type KubeClientPlan struct {
	Router             string
	RouterIface, Iface topology.Iface
	Gateways           []netip.Addr
	Networks           []string
}

// newKubeClientPlan puts the client behind the first router that is no
// LAN's gateway (a spine).
func newKubeClientPlan(t *topology.Topology) *KubeClientPlan {
	gateway := map[string]bool{}
	for _, lan := range t.LANs {
		gateway[lan.Gateway] = true
	}
	for _, r := range t.Routers {
		if gateway[r.Name] {
			continue
		}
		c := &KubeClientPlan{Router: r.Name,
			RouterIface: topology.Iface{Name: topology.IfName("eth-" + KubeClientElement)},
			Iface:       topology.Iface{Name: topology.IfName("eth-" + r.Name)}}
		subnets := []string{KubeClientSubnet4}
		if t.IPv6 {
			subnets = append(subnets, KubeClientSubnet6)
		}
		for _, s := range subnets {
			sub := netip.MustParsePrefix(s)
			gw, host := topology.HostAddr(sub, 1), topology.HostAddr(sub, 2)
			c.RouterIface.Addrs = append(c.RouterIface.Addrs, netip.PrefixFrom(gw, sub.Bits()))
			c.Iface.Addrs = append(c.Iface.Addrs, netip.PrefixFrom(host, sub.Bits()))
			c.Gateways = append(c.Gateways, gw)
			c.Networks = append(c.Networks, s)
		}
		return c
	}
	return nil
}

// NewKubePlan maps p onto Kubernetes objects. It refuses what the cluster
// model cannot say the way the static plan does: a node on two gateway
// LANs (one rack label), or a node-to-node mesh that is not one LAN of
// every node (the mesh is cluster-wide in Kubernetes).
func NewKubePlan(p *topology.Plan) (*KubePlan, error) {
	t := p.Topology
	if len(t.LANs) == 0 || len(p.Bridges) != len(t.LANs) {
		return nil, fmt.Errorf("kubernetes mode: topology %s has no LAN to attach the control plane to", t.Name)
	}
	for _, r := range t.Routers {
		if r.Name == KubeCPElement {
			return nil, fmt.Errorf("kubernetes mode: the name %q is taken by the control plane", r.Name)
		}
	}
	for _, n := range t.Nodes {
		if n.Name == KubeCPElement {
			return nil, fmt.Errorf("kubernetes mode: the name %q is taken by the control plane", n.Name)
		}
	}
	kp := &KubePlan{NodeMask4: 24, NodeMask6: 64}

	// The control plane: host .100 (::100) of the first LAN.
	lan0 := t.LANs[0]
	cp := KubeCPPlan{LAN: lan0.Name, BridgeIn: p.Bridges[0].In, Bridge: p.Bridges[0].Name, Port: "l-" + KubeCPElement,
		Iface: topology.Iface{Name: topology.IfName("eth-" + lan0.Name)}}
	subnets := []string{lan0.Subnet4}
	if t.IPv6 {
		subnets = append(subnets, lan0.Subnet6)
	}
	taken := map[netip.Addr]string{}
	for _, n := range p.Nodes {
		for _, a := range n.Addresses() {
			taken[a] = n.Name
		}
	}
	for _, s := range subnets {
		sub, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("lan %s: %w", lan0.Name, err)
		}
		a := topology.HostAddr(sub, kubeCPHost)
		if !sub.Contains(a) || taken[a] != "" {
			return nil, fmt.Errorf("kubernetes mode: the control plane's address %s on LAN %s is not free (%s)", a, lan0.Name, taken[a])
		}
		cp.Iface.Addrs = append(cp.Iface.Addrs, netip.PrefixFrom(a, sub.Bits()))
		if lan0.Gateway != "" {
			cp.Gateways = append(cp.Gateways, topology.HostAddr(sub, 1))
		}
	}
	cp.Address = cp.Iface.Addrs[0].Addr()
	kp.ControlPlane = cp
	for _, r := range t.Routers {
		if r.Name == KubeClientElement {
			return nil, fmt.Errorf("kubernetes mode: the name %q is taken by the outside client", r.Name)
		}
	}
	kp.Client = newKubeClientPlan(t)

	// Pools: nodeipam hands out /24s and /64s of them.
	kp.ClusterCIDRs = []string{t.PodPool4}
	if t.IPv6 {
		kp.ClusterCIDRs = append(kp.ClusterCIDRs, t.PodPool6)
	}
	for _, c := range kp.ClusterCIDRs {
		pool, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("pod pool %q: %w", c, err)
		}
		mask := kp.NodeMask4
		if pool.Addr().Is6() {
			mask = kp.NodeMask6
		}
		if pool.Bits() > mask || mask-pool.Bits() > 16 {
			return nil, fmt.Errorf("kubernetes mode: pod pool %s: nodeipam gives each node a /%d, which must be inside it and at most 16 bits longer", c, mask)
		}
	}

	// The cluster's AS: the one most nodes share.
	count := map[uint32]int{}
	for _, n := range t.Nodes {
		count[n.ASN]++
	}
	kp.ClusterASN = cluster.DefaultClusterASN
	best := 1
	for _, n := range t.Nodes {
		if count[n.ASN] > best {
			kp.ClusterASN, best = n.ASN, count[n.ASN]
		}
	}

	// Racks, mesh and ToR peers.
	rack := map[string]string{}
	meshLANs := 0
	routerASN := map[string]uint32{}
	for _, r := range t.Routers {
		routerASN[r.Name] = r.ASN
	}
	// The topology's hold time, as the static plan has it; a BGPPeer's is
	// at least 3 s.
	holdSecs := t.HoldTime
	if holdSecs == 0 {
		holdSecs = 9
	}
	hold := metav1.Duration{Duration: time.Duration(max(holdSecs, 3)) * time.Second}
	gr := true
	peer := func(name, selector string, addr netip.Addr, asn uint32) cluster.BGPPeer {
		return cluster.BGPPeer{
			TypeMeta:   metav1.TypeMeta{APIVersion: cluster.Group + "/" + cluster.Version, Kind: "BGPPeer"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: cluster.BGPPeerSpec{NodeSelector: selector, PeerAddress: addr.String(), PeerASN: asn,
				HoldTime: hold, ConnectRetry: metav1.Duration{Duration: time.Second}, GracefulRestart: &gr},
		}
	}
	for _, lan := range t.LANs {
		if lan.Mesh {
			meshLANs++
			if meshLANs > 1 || len(lan.Members) != len(t.Nodes) {
				return nil, fmt.Errorf("kubernetes mode: LAN %s: the node-to-node mesh is cluster-wide in Kubernetes, so it needs one mesh LAN with every node on it", lan.Name)
			}
		}
		for _, m := range lan.Members {
			switch {
			case rack[m] == "":
				rack[m] = lan.Name
			case lan.Gateway != "":
				return nil, fmt.Errorf("kubernetes mode: node %s is on LANs %s and %s; a node has one rack label", m, rack[m], lan.Name)
			}
		}
		if lan.Gateway == "" {
			continue
		}
		sel := KubeRackLabel + "=" + lan.Name
		for i, s := range subnets4and6(lan, t.IPv6) {
			sub, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("lan %s: %w", lan.Name, err)
			}
			name := lan.Name + "-" + lan.Gateway
			if i == 1 {
				name += "-v6"
			}
			kp.Peers = append(kp.Peers, peer(name, sel, topology.HostAddr(sub, 1), routerASN[lan.Gateway]))
		}
	}
	// A node wired straight to a router (a Link, not a LAN) peers with it
	// over the link. NewPlan wires the links first, in order.
	for i, link := range t.Links {
		w := p.Wires[i]
		np, r, rIf := planNode(p, link.B), planRouter(p, link.A), w.AIf
		if np == nil || r == nil {
			np, r, rIf = planNode(p, link.A), planRouter(p, link.B), w.BIf
		}
		if np == nil || r == nil {
			continue
		}
		for _, ifc := range r.Ifaces {
			if ifc.Name != rIf {
				continue
			}
			for _, a := range ifc.Addrs {
				name := np.Name + "-" + r.Name
				if a.Addr().Is6() {
					name += "-v6"
				}
				kp.Peers = append(kp.Peers, peer(name, "kubernetes.io/hostname="+np.Name, a.Addr(), r.ASN))
			}
		}
	}
	mesh := meshLANs > 0
	lbPool, extIPs := []string{KubeLoadBalancerPool}, []cluster.ServiceRange{{CIDR: KubeExternalIPRange}}
	kp.ServiceCIDRs = []string{KubeServiceCIDR}
	lbRanges := []cluster.ServiceRange{{CIDR: KubeLoadBalancerPool}}
	if t.IPv6 {
		lbPool = append(lbPool, KubeLoadBalancerPool6)
		lbRanges = append(lbRanges, cluster.ServiceRange{CIDR: KubeLoadBalancerPool6})
		extIPs = append(extIPs, cluster.ServiceRange{CIDR: KubeExternalIPRange6})
		kp.ServiceCIDRs = append(kp.ServiceCIDRs, KubeServiceCIDR6)
	}
	kp.Configuration = cluster.BGPConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: cluster.Group + "/" + cluster.Version, Kind: "BGPConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: cluster.BGPConfigurationName},
		Spec: cluster.BGPConfigurationSpec{ASN: kp.ClusterASN, NodeToNodeMesh: &mesh, PodPools: kp.ClusterCIDRs,
			// LoadBalancer Services get addresses from the lab's pool and
			// the fabric routes them (and external IPs of the lab's range)
			// to the nodes that serve them, as the LoadBalancer and
			// ExternalIP e2e specs (make e2e SUITE=services) need.
			ServiceLoadBalancerIPs: lbRanges,
			ServiceExternalIPs:     extIPs,
			LoadBalancer: &cluster.LoadBalancerSpec{Pools: []cluster.LoadBalancerPool{
				{Name: "lab", CIDRs: lbPool},
			}},
		},
	}

	for _, np := range p.Nodes {
		node := corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: np.Name, Labels: map[string]string{
				"kubernetes.io/hostname": np.Name, "kubernetes.io/os": "linux",
			}},
		}
		if rack[np.Name] != "" {
			node.Labels[KubeRackLabel] = rack[np.Name]
		}
		if np.ASN != kp.ClusterASN {
			node.Annotations = map[string]string{cluster.AnnotationASN: strconv.FormatUint(uint64(np.ASN), 10)}
		}
		node.Status.Addresses = kubeNodeAddresses(np)
		kp.Nodes = append(kp.Nodes, node)
	}
	return kp, nil
}

func subnets4and6(lan topology.LAN, ipv6 bool) []string {
	if ipv6 {
		return []string{lan.Subnet4, lan.Subnet6}
	}
	return []string{lan.Subnet4}
}

// kubeNodeAddresses are np's InternalIPs, IPv4 first (the first is the
// router ID, as in the static plan), and its Hostname.
func kubeNodeAddresses(np *topology.NodePlan) []corev1.NodeAddress {
	addrs := np.Addresses()
	slices.SortStableFunc(addrs, func(a, b netip.Addr) int {
		switch {
		case a.Is4() && !b.Is4():
			return -1
		case !a.Is4() && b.Is4():
			return 1
		}
		return 0
	})
	var out []corev1.NodeAddress
	for _, a := range addrs {
		out = append(out, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
	}
	return append(out, corev1.NodeAddress{Type: corev1.NodeHostName, Address: np.Name})
}

func planNode(p *topology.Plan, name string) *topology.NodePlan {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func planRouter(p *topology.Plan, name string) *topology.RouterPlan {
	for _, r := range p.Routers {
		if r.Name == name {
			return r
		}
	}
	return nil
}
