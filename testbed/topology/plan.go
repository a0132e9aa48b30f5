package topology

import (
	"fmt"
	"math/big"
	"net/netip"
	"time"

	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
)

// Plan is a Topology resolved into everything the lab creates: interfaces
// and addresses, FRR configurations, podrouted configurations and pods.
// It is pure data, computed the same way for the namespace lab and for
// containerlab.
type Plan struct {
	Topology *Topology
	Routers  []*RouterPlan
	Nodes    []*NodePlan
	// Switches are namespaces that only hold a bridge (LANs without a
	// gateway router).
	Switches []string
	Wires    []Wire
	Bridges  []Bridge
}

// Iface is one interface of an element with its addresses.
type Iface struct {
	Name  string
	Addrs []netip.Prefix
}

// Wire is a veth pair between two elements (routers, nodes, switches).
type Wire struct {
	A, AIf string
	B, BIf string
}

// Bridge is a LAN's Linux bridge inside element In, with Ports attached.
type Bridge struct {
	In    string
	Name  string
	Ports []string
	Addrs []netip.Prefix // the gateway's addresses, on the bridge itself
}

// RouterPlan is an FRR router.
type RouterPlan struct {
	Router
	RouterID string
	Ifaces   []Iface
	Spec     frr.RouterSpec
}

// NodePlan is a podrouted node.
type NodePlan struct {
	Node
	Index    int // 1-based, picks the pod CIDRs
	Ifaces   []Iface
	PodCIDRs []netip.Prefix
	Config   *config.Config
	PodPlans []PodPlan
	// Gateways are the node's default gateways: the IPv4 (and IPv6)
	// address of the gateway router of its first LAN that has one. As in
	// a real fabric, the node reaches everything outside its LAN (a
	// control plane in another rack) through its ToR; podrouted's routes
	// to pod CIDRs are more specific and win.
	Gateways []netip.Addr
}

// PodPlan is one pod behind a node.
type PodPlan struct {
	Name   string // <node>-p<j>
	Node   string
	HostIf string // the node-side veth
	Addrs  []netip.Addr
}

// Addresses returns every address of the node's interfaces.
func (n *NodePlan) Addresses() []netip.Addr {
	var out []netip.Addr
	for _, i := range n.Ifaces {
		for _, a := range i.Addrs {
			out = append(out, a.Addr())
		}
	}
	return out
}

// Lab-wide constants of the address plan.
var (
	linkPool4 = netip.MustParsePrefix("172.30.0.0/16") // /30 per link
	linkPool6 = netip.MustParsePrefix("fd00:30::/48")  // /64 per link
)

// RouteProtocol is the route protocol podrouted uses in the lab.
const RouteProtocol = 201

// NewPlan resolves t. It fails only on a topology Validate would reject or
// one too large for the address plan.
func NewPlan(t *Topology) (*Plan, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	hold := t.HoldTime
	if hold == 0 {
		hold = 9
	}
	p := &Plan{Topology: t}
	routers := map[string]*RouterPlan{}
	nodes := map[string]*NodePlan{}
	for i, r := range t.Routers {
		rp := &RouterPlan{Router: r, RouterID: fmt.Sprintf("10.255.0.%d", i+1)}
		// Every router spreads a prefix over neighbours of different ASes
		// (lab nodes have one AS each; a Service address comes from several),
		// and sends a session that comes back its routes at once.
		rp.Spec = frr.RouterSpec{Name: r.Name, ASN: r.ASN, RouterID: rp.RouterID, MultipathRelax: true, UpdateAtOnce: true}
		routers[r.Name] = rp
		p.Routers = append(p.Routers, rp)
	}
	pool4, err := netip.ParsePrefix(t.PodPool4)
	if err != nil {
		return nil, fmt.Errorf("podPool4: %w", err)
	}
	var pool6 netip.Prefix
	if t.IPv6 {
		if pool6, err = netip.ParsePrefix(t.PodPool6); err != nil {
			return nil, fmt.Errorf("podPool6: %w", err)
		}
	}
	for i, n := range t.Nodes {
		np := &NodePlan{Node: n, Index: i + 1}
		c4, err := nthSubnet(pool4, 24, i+1)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		np.PodCIDRs = append(np.PodCIDRs, c4)
		if t.IPv6 {
			c6, err := nthSubnet(pool6, 64, i+1)
			if err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
			np.PodCIDRs = append(np.PodCIDRs, c6)
		}
		nodes[n.Name] = np
		p.Nodes = append(p.Nodes, np)
	}
	// peers collects each node's podrouted peers as they are derived.
	peers := map[string][]config.Peer{}
	asnOf := func(name string) uint32 {
		if r := routers[name]; r != nil {
			return r.ASN
		}
		return nodes[name].ASN
	}
	addSession := func(local, remote string, remoteAddr netip.Addr, localAddr netip.Addr) {
		if r := routers[local]; r != nil {
			r.Spec.Neighbors = append(r.Spec.Neighbors, frr.Neighbor{Address: remoteAddr.String(), ASN: asnOf(remote), Hold: hold})
			return
		}
		peers[local] = append(peers[local], config.Peer{
			Address: remoteAddr.String(), ASN: asnOf(remote), LocalAddress: localAddr.String(), Description: remote,
		})
	}
	addIface := func(elem string, ifc Iface) {
		if r := routers[elem]; r != nil {
			r.Ifaces = append(r.Ifaces, ifc)
		} else {
			nodes[elem].Ifaces = append(nodes[elem].Ifaces, ifc)
		}
	}

	for i, l := range t.Links {
		a4, b4, err := linkAddrs(linkPool4, 30, i)
		if err != nil {
			return nil, err
		}
		ifA, ifB := IfName(l.B), IfName(l.A)
		ia, ib := Iface{Name: ifA, Addrs: []netip.Prefix{a4}}, Iface{Name: ifB, Addrs: []netip.Prefix{b4}}
		var a6, b6 netip.Prefix
		if t.IPv6 {
			if a6, b6, err = linkAddrs(linkPool6, 64, i); err != nil {
				return nil, err
			}
			ia.Addrs = append(ia.Addrs, a6)
			ib.Addrs = append(ib.Addrs, b6)
		}
		addIface(l.A, ia)
		addIface(l.B, ib)
		p.Wires = append(p.Wires, Wire{A: l.A, AIf: ifA, B: l.B, BIf: ifB})
		addSession(l.A, l.B, b4.Addr(), a4.Addr())
		addSession(l.B, l.A, a4.Addr(), b4.Addr())
		if t.IPv6 {
			addSession(l.A, l.B, b6.Addr(), a6.Addr())
			addSession(l.B, l.A, a6.Addr(), b6.Addr())
		}
	}

	for _, lan := range t.LANs {
		s4, err := netip.ParsePrefix(lan.Subnet4)
		if err != nil {
			return nil, fmt.Errorf("lan %s subnet4: %w", lan.Name, err)
		}
		var s6 netip.Prefix
		if t.IPv6 {
			if s6, err = netip.ParsePrefix(lan.Subnet6); err != nil {
				return nil, fmt.Errorf("lan %s subnet6: %w", lan.Name, err)
			}
		}
		br := Bridge{In: lan.Gateway, Name: "br-" + lan.Name}
		if len(br.Name) > netns.MaxIfNameLen {
			br.Name = br.Name[:netns.MaxIfNameLen]
		}
		if lan.Gateway == "" {
			br.In = "sw-" + lan.Name
			p.Switches = append(p.Switches, br.In)
		}
		var gw4, gw6 netip.Addr
		if lan.Gateway != "" {
			gw4 = HostAddr(s4, 1)
			br.Addrs = append(br.Addrs, netip.PrefixFrom(gw4, s4.Bits()))
			if t.IPv6 {
				gw6 = HostAddr(s6, 1)
				br.Addrs = append(br.Addrs, netip.PrefixFrom(gw6, s6.Bits()))
			}
			rp := routers[lan.Gateway]
			rp.Ifaces = append(rp.Ifaces, Iface{Name: br.Name, Addrs: br.Addrs})
			// The LAN's subnet (and the router's links) reach the rest of
			// the fabric, so a node can talk to anything on another LAN;
			// podrouted's import policy rejects these prefixes (they are
			// not in the pod pools), as it should.
			rp.Spec.RedistributeConnected = true
			// Any node of the LAN may peer: a node added later needs no
			// router change.
			rp.Spec.PeerGroups = append(rp.Spec.PeerGroups, frr.PeerGroup{Name: lan.Name + "-v4", Range: s4.String(), RemoteAS: "external", Hold: hold})
			if t.IPv6 {
				rp.Spec.PeerGroups = append(rp.Spec.PeerGroups, frr.PeerGroup{Name: lan.Name + "-v6", Range: s6.String(), RemoteAS: "external", Hold: hold})
			}
		}
		memberAddr := map[string][2]netip.Addr{}
		for j, m := range lan.Members {
			hostIf := "l-" + m
			if len(hostIf) > netns.MaxIfNameLen {
				hostIf = hostIf[:netns.MaxIfNameLen]
			}
			a4 := HostAddr(s4, 11+j)
			ifc := Iface{Name: "eth-" + lan.Name, Addrs: []netip.Prefix{netip.PrefixFrom(a4, s4.Bits())}}
			if len(ifc.Name) > netns.MaxIfNameLen {
				ifc.Name = ifc.Name[:netns.MaxIfNameLen]
			}
			var a6 netip.Addr
			if t.IPv6 {
				a6 = HostAddr(s6, 11+j)
				ifc.Addrs = append(ifc.Addrs, netip.PrefixFrom(a6, s6.Bits()))
			}
			memberAddr[m] = [2]netip.Addr{a4, a6}
			addIface(m, ifc)
			if np := nodes[m]; lan.Gateway != "" && len(np.Gateways) == 0 {
				np.Gateways = append(np.Gateways, gw4)
				if t.IPv6 {
					np.Gateways = append(np.Gateways, gw6)
				}
			}
			p.Wires = append(p.Wires, Wire{A: br.In, AIf: hostIf, B: m, BIf: ifc.Name})
			br.Ports = append(br.Ports, hostIf)
			if lan.Gateway != "" {
				addSession(m, lan.Gateway, gw4, a4)
				if t.IPv6 {
					addSession(m, lan.Gateway, gw6, a6)
				}
			}
		}
		if lan.Mesh {
			for _, m := range lan.Members {
				for _, o := range lan.Members {
					if m == o {
						continue
					}
					addSession(m, o, memberAddr[o][0], memberAddr[m][0])
					if t.IPv6 {
						addSession(m, o, memberAddr[o][1], memberAddr[m][1])
					}
				}
			}
		}
		p.Bridges = append(p.Bridges, br)
	}

	for _, np := range p.Nodes {
		if len(np.Ifaces) == 0 {
			return nil, fmt.Errorf("node %s is not connected to anything", np.Name)
		}
		np.Config = nodeConfig(t, np, peers[np.Name], hold)
		for j := 1; j <= np.Node.Pods; j++ {
			pod := PodPlan{Name: fmt.Sprintf("%s-p%d", np.Name, j), Node: np.Name, HostIf: fmt.Sprintf("pod%d", j)}
			for _, c := range np.PodCIDRs {
				pod.Addrs = append(pod.Addrs, HostAddr(c, 9+j))
			}
			np.PodPlans = append(np.PodPlans, pod)
		}
	}
	return p, nil
}

// nodeConfig is node np's podrouted configuration.
func nodeConfig(t *Topology, np *NodePlan, peers []config.Peer, hold int) *config.Config {
	port := int32(179)
	gr := true
	c := &config.Config{
		NodeName:      np.Name,
		RouterID:      np.Addresses()[0].String(),
		ASN:           np.ASN,
		ListenPort:    &port,
		PodPools:      []string{t.PodPool4},
		RouteProtocol: RouteProtocol,
		GoBGPAPI:      "127.0.0.1:50051",
		LogLevel:      "info",
		Peers:         peers,
	}
	if t.IPv6 {
		c.PodPools = append(c.PodPools, t.PodPool6)
	}
	for _, pc := range np.PodCIDRs {
		c.PodCIDRs = append(c.PodCIDRs, pc.String())
	}
	c.GracefulRestart.Enabled = &gr
	c.GracefulRestart.RestartTime.Duration = 60 * time.Second
	c.GracefulRestart.StaleRouteTimeout.Duration = 60 * time.Second
	for i := range c.Peers {
		c.Peers[i].HoldTime.Duration = time.Duration(hold) * time.Second
		c.Peers[i].KeepaliveInterval.Duration = time.Duration(hold) * time.Second / 3
		c.Peers[i].ConnectRetry.Duration = time.Second
	}
	return c
}

// IsBridge reports whether ifName in element elem is one of the plan's
// bridges (a LAN), rather than a link or a pod's veth.
func (p *Plan) IsBridge(elem, ifName string) bool {
	for _, b := range p.Bridges {
		if b.In == elem && b.Name == ifName {
			return true
		}
	}
	return false
}

// IfName names the interface towards elem.
func IfName(elem string) string {
	if len(elem) > netns.MaxIfNameLen {
		return elem[:netns.MaxIfNameLen]
	}
	return elem
}

// nthSubnet returns the n-th subnet of length bits inside pool.
func nthSubnet(pool netip.Prefix, bits, n int) (netip.Prefix, error) {
	if bits < pool.Bits() || bits-pool.Bits() < 63 && n >= 1<<(bits-pool.Bits()) {
		return netip.Prefix{}, fmt.Errorf("pool %s has no room for subnet #%d of /%d", pool, n, bits)
	}
	return netip.PrefixFrom(addOffset(pool.Masked().Addr(), uint64(n), pool.Addr().BitLen()-bits), bits), nil
}

// linkAddrs numbers link i: the i-th subnet of length bits in pool, .1
// and .2 (::1 and ::2).
func linkAddrs(pool netip.Prefix, bits, i int) (a, b netip.Prefix, err error) {
	sub, err := nthSubnet(pool, bits, i)
	if err != nil {
		return a, b, fmt.Errorf("too many links: %w", err)
	}
	return netip.PrefixFrom(HostAddr(sub, 1), bits), netip.PrefixFrom(HostAddr(sub, 2), bits), nil
}

// HostAddr is address number n of subnet p.
func HostAddr(p netip.Prefix, n int) netip.Addr {
	return addOffset(p.Masked().Addr(), uint64(n), 0)
}

// addOffset adds n << shift to a (wrapping is the caller's problem:
// nthSubnet checks the range).
func addOffset(a netip.Addr, n uint64, shift int) netip.Addr {
	v := new(big.Int).SetBytes(a.AsSlice())
	v.Add(v, new(big.Int).Lsh(new(big.Int).SetUint64(n), uint(shift)))
	b := v.FillBytes(make([]byte, len(a.AsSlice())))
	out, _ := netip.AddrFromSlice(b)
	return out
}
