package cluster

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/podroute/podroute/bgp"
)

// ServiceInputs is what this node's service advertisements are computed
// from: a snapshot of the informers' caches.
type ServiceInputs struct {
	LocalNode string
	Config    ServiceConfig
	Services  []ServiceInfo
	// Slices are the EndpointSlices of every Service (stripped: only the
	// service-name label, address type, and each endpoint's conditions
	// and node name are read).
	Slices []*discoveryv1.EndpointSlice
}

// ServiceRoute says what happens to one Service address (or one
// aggregate range) on this node and why: the status `podroute routes`
// shows.
type ServiceRoute struct {
	// Prefix is the address as a /32 or /128, or an aggregate range.
	Prefix netip.Prefix
	// Via is the prefix advertised for it: Prefix itself, or the
	// aggregate range holding it; invalid when nothing is.
	Via netip.Prefix
	// Service is "namespace/name"; empty on an aggregate range's own line.
	Service    string
	Kind       AddressKind
	Advertised bool
	Reason     Reason
}

// Reason says why a Service address is or is not advertised by this node.
type Reason string

const (
	ReasonAggregateRange Reason = "aggregate range, from every node"
	ReasonInAggregate    Reason = "inside an aggregate range"
	// The aggregate is advertised whatever one Service says: an opt-out
	// or a Local traffic policy cannot narrow it, and the line says so.
	ReasonInAggregateOptOut Reason = "inside an aggregate range (opt-out cannot narrow it)"
	ReasonInAggregateLocal  Reason = "inside an aggregate range (policy Local not honoured: use PerAddress)"
	ReasonOutOfRange        Reason = "out of range"
	ReasonOptedOut          Reason = "opted out (" + AnnotationAdvertise + ")"
	ReasonPolicyCluster     Reason = "policy Cluster: every node"
	ReasonLocalEndpoint     Reason = "policy Local: ready endpoint on this node"
	// kube-proxy falls back to serving, terminating endpoints when no
	// ready one is left anywhere; so does advertisement, or the address
	// would vanish while those endpoints still answer.
	ReasonLocalTerminating Reason = "policy Local: no ready endpoint anywhere, terminating one here still serves"
	ReasonNoLocalEndpoint  Reason = "no ready endpoint on this node (policy Local)"
)

// endpointState is one Service family's endpoints as this node sees them.
type endpointState struct {
	localReady, anyReady, localServing bool
}

type endpointKey struct {
	ns, svc string
	v6      bool
}

// indexEndpoints reads every EndpointSlice once.
func indexEndpoints(local string, slices []*discoveryv1.EndpointSlice) map[endpointKey]endpointState {
	out := map[endpointKey]endpointState{}
	for _, s := range slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		var v6 bool
		switch s.AddressType {
		case discoveryv1.AddressTypeIPv4:
		case discoveryv1.AddressTypeIPv6:
			v6 = true
		default:
			continue // FQDN slices carry no routable address
		}
		k := endpointKey{s.Namespace, svc, v6}
		st := out[k]
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			// nil means ready (and serving), as the API documents.
			ready := c.Ready == nil || *c.Ready
			serving := ready
			if c.Serving != nil {
				serving = *c.Serving
			}
			terminating := c.Terminating != nil && *c.Terminating
			here := ep.NodeName != nil && *ep.NodeName == local
			if ready {
				st.anyReady = true
				st.localReady = st.localReady || here
			} else if here && serving && terminating {
				st.localServing = true
			}
		}
		out[k] = st
	}
	return out
}

// ComputeServiceAdvertisements derives the Service prefixes this node
// originates and, for each Service address and aggregate range, whether it
// is advertised and why. It is a pure function of its inputs:
//
//   - Only addresses inside a configured range of their kind are ever
//     advertised.
//   - An Aggregate range is advertised as one prefix from every node.
//   - In a PerAddress range each address is a /32 (/128): with traffic
//     policy Cluster from every node; with Local (externalTrafficPolicy for
//     external and LoadBalancer addresses, internalTrafficPolicy for
//     ClusterIPs) only from nodes with a ready endpoint of the Service's
//     family, or, when none is ready anywhere, a serving terminating one.
//   - Every address of a dual-stack Service is considered, each family on
//     its own EndpointSlices.
//   - podroute.io/advertise: "false" keeps a Service's addresses out.
//
// With no range configured it returns nothing at all.
func ComputeServiceAdvertisements(in ServiceInputs) ([]bgp.Advertisement, []ServiceRoute) {
	if !in.Config.Enabled() {
		return nil, nil
	}
	want := map[netip.Prefix]bgp.Advertisement{}
	adv := func(p netip.Prefix, r *ServiceRangeInfo) {
		want[p] = bgp.Advertisement{Prefix: p, Communities: r.Communities, LargeCommunities: r.LargeCommunities}
	}
	var routes []ServiceRoute
	for i := range in.Config.Ranges {
		r := &in.Config.Ranges[i]
		if r.Mode == ModeAggregate {
			adv(r.Prefix, r)
			routes = append(routes, ServiceRoute{Prefix: r.Prefix, Via: r.Prefix, Kind: r.Kind, Advertised: true, Reason: ReasonAggregateRange})
		}
	}
	eps := indexEndpoints(in.LocalNode, in.Slices)
	svcs := slices.Clone(in.Services)
	sortServices(svcs)
	for _, s := range svcs {
		if s.Type == corev1.ServiceTypeExternalName {
			continue
		}
		consider := func(kind AddressKind, addrs []netip.Addr, local bool) {
			for _, a := range addrs {
				p := netip.PrefixFrom(a, a.BitLen())
				line := ServiceRoute{Prefix: p, Service: s.Key(), Kind: kind}
				r := in.Config.rangeFor(kind, a)
				switch {
				case r == nil:
					line.Reason = ReasonOutOfRange
				case r.Mode == ModeAggregate:
					line.Advertised, line.Via, line.Reason = true, r.Prefix, ReasonInAggregate
					if s.OptOut {
						line.Reason = ReasonInAggregateOptOut
					} else if local {
						line.Reason = ReasonInAggregateLocal
					}
				case s.OptOut:
					line.Reason = ReasonOptedOut
				case !local:
					line.Advertised, line.Reason = true, ReasonPolicyCluster
				default:
					st := eps[endpointKey{s.Namespace, s.Name, a.Is6()}]
					switch {
					case st.localReady:
						line.Advertised, line.Reason = true, ReasonLocalEndpoint
					case !st.anyReady && st.localServing:
						line.Advertised, line.Reason = true, ReasonLocalTerminating
					default:
						line.Reason = ReasonNoLocalEndpoint
					}
				}
				if line.Advertised && r.Mode == ModePerAddress {
					line.Via = p
					adv(p, r)
				}
				routes = append(routes, line)
			}
		}
		consider(KindClusterIP, s.ClusterIPs, s.InternalLocal)
		consider(KindExternalIP, s.ExternalIPs, s.ExternalLocal)
		consider(KindLoadBalancerIP, s.IngressIPs, s.ExternalLocal)
	}
	out := make([]bgp.Advertisement, 0, len(want))
	for _, a := range want {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b bgp.Advertisement) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out, routes
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
