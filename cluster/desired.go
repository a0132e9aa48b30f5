package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podroute/podroute/bgp"
)

// Inputs is everything the desired state is computed from: a snapshot of
// the informers' caches.
type Inputs struct {
	LocalNode string
	Nodes     []NodeInfo
	Peers     []*BGPPeer
	Config    BGPConfigurationSpec
	// Secret returns a key of a Secret in podrouted's namespace.
	Secret func(name, key string) (string, error)
	// Services and their EndpointSlices (stripped by
	// StripServiceObjects), only read when Config has service ranges.
	Services []ServiceInfo
	Slices   []*discoveryv1.EndpointSlice
}

// Desired is this node's BGP state as Kubernetes describes it.
type Desired struct {
	// Found is false until the local Node exists; nothing else is set then.
	Found    bool
	Local    NodeInfo
	ASN      uint32
	RouterID netip.Addr
	PodCIDRs []netip.Prefix
	Peers    []bgp.Peer
	Policy   bgp.Policy
	// RouteProtocol from BGPConfiguration (0: not set there).
	RouteProtocol int

	// Services is the checked service part of BGPConfiguration; nothing
	// below is set unless it has ranges.
	Services ServiceConfig
	// Advertisements are the Service prefixes this node originates.
	Advertisements []bgp.Advertisement
	// ServiceRoutes say, per Service address and aggregate range, whether
	// this node advertises it and why.
	ServiceRoutes []ServiceRoute
	// LoadBalancer configures the (leader-elected) address allocator.
	LoadBalancer LoadBalancerConfig
}

// Problem is bad input on one object, to be reported as an Event on it.
type Problem struct {
	Kind, Name string // "Node", "BGPPeer", "BGPConfiguration", "Service" (namespace/name)
	Reason     string // CamelCase, e.g. "InvalidPeerAddress"
	Message    string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s: %s: %s", p.Kind, p.Name, p.Reason, p.Message)
}

// Timers used for sessions Kubernetes objects do not time themselves.
const (
	defaultHold        = 90 * time.Second
	defaultConnect     = 5 * time.Second
	defaultMaxPrefixes = 10000
)

// Compute derives the desired state. It never fails as a whole: every bad
// object becomes a Problem and is left out.
func Compute(in Inputs) (Desired, []Problem) {
	var d Desired
	var problems []Problem
	add := func(kind, name, reason, format string, args ...any) {
		problems = append(problems, Problem{Kind: kind, Name: name, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	var local *NodeInfo
	anyRR := false
	for i := range in.Nodes {
		if in.Nodes[i].Name == in.LocalNode {
			local = &in.Nodes[i]
		}
		if in.Nodes[i].RouteReflector() {
			anyRR = true
		}
	}
	if local == nil {
		return d, problems
	}
	d.Found, d.Local = true, *local
	d.RouteProtocol = in.Config.RouteProtocol
	d.ASN = in.Config.ASN
	if d.ASN == 0 {
		d.ASN = DefaultClusterASN
	}
	clusterASN := d.ASN
	if local.ASN != 0 {
		d.ASN = local.ASN
	}
	if a, ok := local.Addr(false); ok {
		d.RouterID = a
	} else {
		add("Node", local.Name, "NoIPv4Address", "the node has no IPv4 InternalIP to use as BGP router ID")
	}
	d.PodCIDRs = append(d.PodCIDRs, local.PodCIDRs...)

	// Policy: pools from BGPConfiguration, else the nodes' pod CIDRs.
	for _, s := range in.Config.PodPools {
		p, err := netip.ParsePrefix(s)
		if err != nil || p != p.Masked() || p.Bits() == 0 {
			add("BGPConfiguration", BGPConfigurationName, "InvalidPodPool", "spec.podPools: %q is not a network CIDR (and not /0); entry ignored", s)
			continue
		}
		d.Policy.PodPools = append(d.Policy.PodPools, p)
	}
	if len(d.Policy.PodPools) == 0 {
		for _, n := range in.Nodes {
			d.Policy.PodPools = append(d.Policy.PodPools, n.PodCIDRs...)
		}
	}
	for _, n := range in.Nodes {
		d.Policy.ProtectedAddrs = append(d.Policy.ProtectedAddrs, n.InternalIPs...)
	}
	d.Policy.ImportDefaultRoute = in.Config.ImportDefaultRoute
	// A route reflector passes other nodes' routes on.
	d.Policy.Transit = local.RouteReflector()

	seen := map[netip.Addr]string{}
	meshMax := in.Config.MeshMaxPrefixes
	if meshMax == 0 {
		meshMax = defaultMaxPrefixes
	}
	if in.Config.MeshEnabled() {
		others := append([]NodeInfo(nil), in.Nodes...)
		sort.Slice(others, func(i, j int) bool { return others[i].Name < others[j].Name })
		for _, m := range others {
			if m.Name == local.Name {
				continue
			}
			// With reflectors, clients peer only with reflectors;
			// reflectors peer with everyone.
			if anyRR && !local.RouteReflector() && !m.RouteReflector() {
				continue
			}
			asn := clusterASN
			if m.ASN != 0 {
				asn = m.ASN
			}
			for _, v6 := range []bool{false, true} {
				addr, ok := m.Addr(v6)
				mine, haveMine := local.Addr(v6)
				if !ok || !haveMine {
					continue
				}
				p := bgp.Peer{
					Address: addr, ASN: asn, Description: "node " + m.Name,
					HoldTime: defaultHold, KeepaliveInterval: defaultHold / 3, ConnectRetry: defaultConnect,
					MaxPrefixes: meshMax, GracefulRestart: true,
					// Only the node with the lower address dials. When both
					// dial, a re-created session (a Node registered again,
					// a switch to route reflector) can stay down for
					// minutes: after each failed attempt GoBGP sits in Idle
					// for a fixed 5 s, refusing connections, and two nodes
					// that fell out of phase keep dialling into each
					// other's Idle.
					Passive: addr.Less(mine),
				}
				if local.RouteReflector() && !m.RouteReflector() && asn == d.ASN {
					p.RouteReflectorClient = true
					p.RouteReflectorClusterID = local.RRClusterID
				}
				seen[addr] = "node " + m.Name
				d.Peers = append(d.Peers, p)
			}
		}
	}

	var more []Problem
	d.Services, more = ParseServiceConfig(in.Config, d.Policy.PodPools)
	problems = append(problems, more...)
	d.LoadBalancer, more = ParseLoadBalancerConfig(in.Config, d.Services)
	problems = append(problems, more...)
	d.Advertisements, d.ServiceRoutes = ComputeServiceAdvertisements(ServiceInputs{
		LocalNode: local.Name, Config: d.Services, Services: in.Services, Slices: in.Slices,
	})

	// By name, so which of two BGPPeers with one address wins is stable.
	peers := append([]*BGPPeer(nil), in.Peers...)
	sort.Slice(peers, func(i, j int) bool { return peers[i].Name < peers[j].Name })
	for _, bp := range peers {
		p, ok, problem := peerFor(bp, local, in.Secret)
		if problem != nil {
			problems = append(problems, *problem)
			continue
		}
		if !ok {
			continue
		}
		if owner, dup := seen[p.Address]; dup {
			add("BGPPeer", bp.Name, "DuplicatePeer", "peer address %s is already a peer (%s); this BGPPeer is ignored", p.Address, owner)
			continue
		}
		seen[p.Address] = "BGPPeer " + bp.Name
		d.Peers = append(d.Peers, p)
	}
	return d, problems
}

// peerFor turns a BGPPeer into a bgp.Peer if its selector matches local.
func peerFor(bp *BGPPeer, local *NodeInfo, secret func(name, key string) (string, error)) (bgp.Peer, bool, *Problem) {
	bad := func(reason, format string, args ...any) (bgp.Peer, bool, *Problem) {
		return bgp.Peer{}, false, &Problem{Kind: "BGPPeer", Name: bp.Name, Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	s := bp.Spec
	sel, err := labels.Parse(s.NodeSelector)
	if err != nil {
		return bad("InvalidNodeSelector", "spec.nodeSelector %q: %v", s.NodeSelector, err)
	}
	// Only the nodes a peer applies to judge (and report) the rest of it,
	// so one bad BGPPeer for rack 1 is not reported by every node.
	if !sel.Matches(labels.Set(local.Labels)) {
		return bgp.Peer{}, false, nil
	}
	addr, err := netip.ParseAddr(s.PeerAddress)
	if err != nil || addr.Zone() != "" || addr.IsUnspecified() || addr.IsMulticast() {
		return bad("InvalidPeerAddress", "spec.peerAddress %q is not a unicast IP address", s.PeerAddress)
	}
	if s.PeerASN == 0 || s.PeerASN == 23456 || s.PeerASN == 4294967295 {
		return bad("InvalidPeerASN", "spec.peerASN %d: must be 1..4294967294 (not 23456)", s.PeerASN)
	}
	hold := s.HoldTime.Duration
	if hold == 0 {
		hold = defaultHold
	}
	if hold < 3*time.Second {
		return bad("InvalidHoldTime", "spec.holdTime %v: must be at least 3s", hold)
	}
	keepalive := s.KeepaliveInterval.Duration
	if keepalive == 0 {
		keepalive = hold / 3
	}
	if keepalive >= hold {
		return bad("InvalidKeepalive", "spec.keepaliveInterval %v must be shorter than holdTime %v", keepalive, hold)
	}
	if _, ok := local.Addr(addr.Is6()); !ok {
		// Not a problem of the object: this node simply has no address of
		// that family.
		return bgp.Peer{}, false, nil
	}
	p := bgp.Peer{
		Address: addr.Unmap(), ASN: s.PeerASN, Description: "BGPPeer " + bp.Name,
		HoldTime: hold, KeepaliveInterval: keepalive, ConnectRetry: s.ConnectRetry.Duration,
		MultihopTTL: s.MultihopTTL, MaxPrefixes: s.MaxPrefixes, GracefulRestart: s.GracefulRestart == nil || *s.GracefulRestart,
	}
	if p.ConnectRetry == 0 {
		p.ConnectRetry = defaultConnect
	}
	if p.MaxPrefixes == 0 {
		p.MaxPrefixes = defaultMaxPrefixes
	}
	if ref := s.PasswordSecretRef; ref != nil {
		if secret == nil {
			return bad("SecretUnavailable", "spec.passwordSecretRef %s/%s: secrets cannot be read", ref.Name, ref.Key)
		}
		pw, err := secret(ref.Name, ref.Key)
		if err != nil {
			return bad("SecretNotFound", "spec.passwordSecretRef: %v; the peer is skipped until it exists", err)
		}
		if len(pw) == 0 || len(pw) > 80 {
			return bad("InvalidPassword", "spec.passwordSecretRef %s/%s: the password must be 1..80 bytes (TCP MD5 key)", ref.Name, ref.Key)
		}
		p.Password = pw
	}
	return p, true, nil
}
