package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podroute/podroute/internal/community"
)

// AddressKind is the kind of a Service address: which BGPConfiguration
// list of ranges governs it and which traffic policy applies.
type AddressKind string

const (
	KindClusterIP      AddressKind = "ClusterIP"      // spec.clusterIPs; internalTrafficPolicy
	KindExternalIP     AddressKind = "ExternalIP"     // spec.externalIPs; externalTrafficPolicy
	KindLoadBalancerIP AddressKind = "LoadBalancerIP" // status.loadBalancer.ingress; externalTrafficPolicy
)

// field is the BGPConfiguration list holding ranges of this kind.
func (k AddressKind) field() string {
	switch k {
	case KindClusterIP:
		return "serviceClusterIPs"
	case KindExternalIP:
		return "serviceExternalIPs"
	default:
		return "serviceLoadBalancerIPs"
	}
}

// RangeMode says how a range is advertised.
type RangeMode string

const (
	// ModeAggregate advertises the range as one prefix from every node,
	// whatever the Services in it (kube-proxy on every node handles any
	// of its addresses). Per-Service settings cannot narrow it.
	ModeAggregate RangeMode = "Aggregate"
	// ModePerAddress advertises a /32 or /128 per Service address, from
	// the nodes the Service's traffic policy allows.
	ModePerAddress RangeMode = "PerAddress"
)

// ServiceRangeInfo is a checked ServiceRange.
type ServiceRangeInfo struct {
	Kind             AddressKind
	Field            string // e.g. "spec.serviceExternalIPs[1]", for messages
	Prefix           netip.Prefix
	Mode             RangeMode
	Communities      []uint32
	LargeCommunities [][3]uint32
}

// ServiceConfig is the checked service part of BGPConfiguration.
type ServiceConfig struct {
	Ranges []ServiceRangeInfo
}

// Enabled reports whether any range is configured: without one, nothing
// about Services is advertised (or even watched).
func (c ServiceConfig) Enabled() bool { return len(c.Ranges) > 0 }

// rangeFor returns the range of kind holding a (ranges never overlap).
func (c ServiceConfig) rangeFor(kind AddressKind, a netip.Addr) *ServiceRangeInfo {
	for i := range c.Ranges {
		if r := &c.Ranges[i]; r.Kind == kind && r.Prefix.Contains(a) {
			return r
		}
	}
	return nil
}

// ParseServiceConfig checks the service ranges of spec. podPools are the
// prefixes import accepts from peers: a service range overlapping them
// would let nodes import each other's service routes, so it is refused.
// Every bad range is a Problem and is left out; the rest apply.
func ParseServiceConfig(spec BGPConfigurationSpec, podPools []netip.Prefix) (ServiceConfig, []Problem) {
	var cfg ServiceConfig
	var problems []Problem
	add := func(reason, format string, args ...any) {
		problems = append(problems, Problem{Kind: "BGPConfiguration", Name: BGPConfigurationName, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	lists := []struct {
		kind   AddressKind
		ranges []ServiceRange
		def    RangeMode
	}{
		{KindClusterIP, spec.ServiceClusterIPs, ModeAggregate},
		{KindExternalIP, spec.ServiceExternalIPs, ModePerAddress},
		{KindLoadBalancerIP, spec.ServiceLoadBalancerIPs, ModePerAddress},
	}
	for _, l := range lists {
		for i, r := range l.ranges {
			field := fmt.Sprintf("spec.%s[%d]", l.kind.field(), i)
			p, err := netip.ParsePrefix(r.CIDR)
			if err != nil || p != p.Masked() || p.Bits() == 0 {
				add("InvalidServiceRange", "%s.cidr: %q is not a network CIDR (and not /0); range ignored, its addresses are not advertised", field, r.CIDR)
				continue
			}
			info := ServiceRangeInfo{Kind: l.kind, Field: field, Prefix: p, Mode: l.def}
			switch RangeMode(r.Advertise) {
			case "":
			case ModeAggregate, ModePerAddress:
				info.Mode = RangeMode(r.Advertise)
			default:
				add("InvalidServiceRange", "%s.advertise: %q must be Aggregate or PerAddress; range ignored", field, r.Advertise)
				continue
			}
			bad := false
			for j, s := range r.Communities {
				c, err := community.ParseStandard(s)
				if err != nil {
					add("InvalidCommunity", "%s.communities[%d]: %v; range ignored (not advertised without the communities routers may filter on)", field, j, err)
					bad = true
					continue
				}
				info.Communities = append(info.Communities, c)
			}
			for j, s := range r.LargeCommunities {
				c, err := community.ParseLarge(s)
				if err != nil {
					add("InvalidCommunity", "%s.largeCommunities[%d]: %v; range ignored (not advertised without the communities routers may filter on)", field, j, err)
					bad = true
					continue
				}
				info.LargeCommunities = append(info.LargeCommunities, c)
			}
			if bad {
				continue
			}
			if other := overlapping(cfg.Ranges, p); other != nil {
				add("OverlappingServiceRange", "%s.cidr %s overlaps %s (%s); range ignored", field, p, other.Field, other.Prefix)
				continue
			}
			if pool, ok := overlapsAny(podPools, p); ok {
				add("ServiceRangeOverlapsPodPool", "%s.cidr %s overlaps pod pool %s: nodes would import each other's service routes; range ignored", field, p, pool)
				continue
			}
			cfg.Ranges = append(cfg.Ranges, info)
		}
	}
	return cfg, problems
}

func overlapping(ranges []ServiceRangeInfo, p netip.Prefix) *ServiceRangeInfo {
	for i := range ranges {
		if ranges[i].Prefix.Overlaps(p) {
			return &ranges[i]
		}
	}
	return nil
}

func overlapsAny(ps []netip.Prefix, p netip.Prefix) (netip.Prefix, bool) {
	for _, q := range ps {
		if q.Overlaps(p) {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

// LoadBalancerConfig is the checked LoadBalancer allocator configuration.
type LoadBalancerConfig struct {
	Class             string
	AllocateClassless bool
	Pools             []Pool
}

// Pool is a checked LoadBalancerPool.
type Pool struct {
	Name     string
	Prefixes []netip.Prefix
}

// Enabled reports whether there is anything to allocate from.
func (c LoadBalancerConfig) Enabled() bool { return len(c.Pools) > 0 }

// Serves reports whether the allocator owns s's LoadBalancer addresses.
func (c LoadBalancerConfig) Serves(s ServiceInfo) bool {
	if s.Type != corev1.ServiceTypeLoadBalancer {
		return false
	}
	if s.Class == "" {
		return c.AllocateClassless
	}
	return s.Class == c.Class
}

// ParseLoadBalancerConfig checks spec.loadBalancer. A pool no
// serviceLoadBalancerIPs range covers still hands out addresses (another
// component may announce them), with a Problem saying podroute will not.
func ParseLoadBalancerConfig(spec BGPConfigurationSpec, svc ServiceConfig) (LoadBalancerConfig, []Problem) {
	cfg := LoadBalancerConfig{Class: DefaultLoadBalancerClass, AllocateClassless: true}
	lb := spec.LoadBalancer
	if lb == nil {
		return cfg, nil
	}
	var problems []Problem
	add := func(reason, format string, args ...any) {
		problems = append(problems, Problem{Kind: "BGPConfiguration", Name: BGPConfigurationName, Reason: reason, Message: fmt.Sprintf(format, args...)})
	}
	if lb.Class != "" {
		cfg.Class = lb.Class
	}
	if lb.AllocateClassless != nil {
		cfg.AllocateClassless = *lb.AllocateClassless
	}
	names := map[string]bool{}
	var all []ServiceRangeInfo // pool prefixes so far, for overlap checks
	for i, p := range lb.Pools {
		field := fmt.Sprintf("spec.loadBalancer.pools[%d]", i)
		if p.Name == "" || names[p.Name] {
			add("InvalidPool", "%s.name: %q must be set and unique; pool ignored", field, p.Name)
			continue
		}
		names[p.Name] = true
		pool := Pool{Name: p.Name}
		for j, s := range p.CIDRs {
			cf := fmt.Sprintf("%s.cidrs[%d]", field, j)
			pfx, err := netip.ParsePrefix(s)
			if err != nil || pfx != pfx.Masked() || pfx.Bits() == 0 {
				add("InvalidPool", "%s: %q is not a network CIDR (and not /0); entry ignored", cf, s)
				continue
			}
			if other := overlapping(all, pfx); other != nil {
				add("InvalidPool", "%s: %s overlaps %s (%s): one address would be in two pools; entry ignored", cf, pfx, other.Field, other.Prefix)
				continue
			}
			all = append(all, ServiceRangeInfo{Field: cf, Prefix: pfx})
			covered := false
			for _, r := range svc.Ranges {
				if r.Kind == KindLoadBalancerIP && r.Prefix.Bits() <= pfx.Bits() && r.Prefix.Contains(pfx.Addr()) {
					covered = true
				}
			}
			if !covered {
				add("PoolNotAdvertised", "%s: %s is in no spec.serviceLoadBalancerIPs range: its addresses are handed out but podroute does not advertise them", cf, pfx)
			}
			pool.Prefixes = append(pool.Prefixes, pfx)
		}
		if len(pool.Prefixes) == 0 {
			add("InvalidPool", "%s (%s) has no usable CIDR; pool ignored", field, p.Name)
			continue
		}
		cfg.Pools = append(cfg.Pools, pool)
	}
	return cfg, problems
}

// ServiceInfo is what podroute needs of a Service, parsed and checked.
type ServiceInfo struct {
	Namespace, Name string
	UID             types.UID
	ResourceVersion string
	Created         time.Time
	Type            corev1.ServiceType
	ClusterIPs      []netip.Addr
	ExternalIPs     []netip.Addr
	// IngressIPs are status.loadBalancer.ingress IPs, for type
	// LoadBalancer only: a Service that changed type keeps a stale status
	// that nothing serves.
	IngressIPs    []netip.Addr
	ExternalLocal bool // externalTrafficPolicy: Local
	InternalLocal bool // internalTrafficPolicy: Local
	OptOut        bool // podroute.io/advertise: "false"
	// Allocation inputs.
	Class        string // spec.loadBalancerClass, "" for none
	IPFamilies   []corev1.IPFamily
	RequestedIPs []netip.Addr // annotation, else spec.loadBalancerIP
	Pool         string       // podroute.io/address-pool
	// Lifecycle: the Service carries LoadBalancerCleanupFinalizer, and it
	// is being deleted (it stays until its finalizers are gone).
	HasCleanupFinalizer bool
	Deleting            bool
}

// LoadBalancerCleanupFinalizer is Kubernetes' finalizer for a Service
// whose load balancer must be cleaned up before the object goes (the name
// a cloud provider's service controller uses, and Kubernetes' e2e tests
// check). The allocator adds it to the Services it serves, so that a
// deleted Service's addresses stay taken until the allocator has seen the
// deletion, and removes it once a Service is deleted or no longer of type
// LoadBalancer.
const LoadBalancerCleanupFinalizer = "service.kubernetes.io/load-balancer-cleanup"

// Key is "namespace/name".
func (s ServiceInfo) Key() string { return s.Namespace + "/" + s.Name }

// ParseService reads a Service. A bad annotation is returned as an error
// and ignored (the Service is treated as if it were absent); an address
// that does not parse is skipped.
func ParseService(svc *corev1.Service) (ServiceInfo, []error) {
	s := ServiceInfo{
		Namespace: svc.Namespace, Name: svc.Name, UID: svc.UID, ResourceVersion: svc.ResourceVersion,
		Created: svc.CreationTimestamp.Time, Type: svc.Spec.Type,
		HasCleanupFinalizer: slices.Contains(svc.Finalizers, LoadBalancerCleanupFinalizer),
		Deleting:            svc.DeletionTimestamp != nil,
		ExternalLocal:       svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		InternalLocal:       svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		IPFamilies:          svc.Spec.IPFamilies,
	}
	if svc.Spec.LoadBalancerClass != nil {
		s.Class = *svc.Spec.LoadBalancerClass
	}
	var problems []error
	addrs := func(field string, in []string) []netip.Addr {
		var out []netip.Addr
		for _, v := range in {
			if v == "" || v == corev1.ClusterIPNone {
				continue
			}
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				problems = append(problems, fmt.Errorf("%s: %q is not an IP address; skipped", field, v))
				continue
			}
			out = append(out, a.Unmap())
		}
		return out
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return s, nil
	}
	cips := svc.Spec.ClusterIPs
	if len(cips) == 0 && svc.Spec.ClusterIP != "" {
		cips = []string{svc.Spec.ClusterIP}
	}
	s.ClusterIPs = addrs("spec.clusterIPs", cips)
	s.ExternalIPs = addrs("spec.externalIPs", svc.Spec.ExternalIPs)
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		var ing []string
		for _, i := range svc.Status.LoadBalancer.Ingress {
			ing = append(ing, i.IP)
		}
		s.IngressIPs = addrs("status.loadBalancer.ingress", ing)
	}
	if v, ok := svc.Annotations[AnnotationAdvertise]; ok {
		switch v {
		case "true":
		case "false":
			s.OptOut = true
		default:
			problems = append(problems, fmt.Errorf("annotation %s: %q must be \"true\" or \"false\"; ignored (the Service is advertised as if it were absent)", AnnotationAdvertise, v))
		}
	}
	if v, ok := svc.Annotations[AnnotationLoadBalancerIPs]; ok {
		req, err := parseRequested(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("annotation %s: %v; ignored", AnnotationLoadBalancerIPs, err))
		} else {
			s.RequestedIPs = req
		}
	} else if v := svc.Spec.LoadBalancerIP; v != "" {
		req, err := parseRequested(v)
		if err != nil {
			problems = append(problems, fmt.Errorf("spec.loadBalancerIP: %v; ignored", err))
		} else {
			s.RequestedIPs = req
		}
	}
	s.Pool = svc.Annotations[AnnotationAddressPool]
	return s, problems
}

// ServiceProblem is ParseService's errors as one Problem (one Event, one
// log line) on the Service.
func ServiceProblem(info ServiceInfo, errs []error) Problem {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	return Problem{Kind: "Service", Name: info.Key(), Reason: "InvalidService", Message: strings.Join(msgs, "; ")}
}

// parseRequested reads "a[,b]": IP addresses, at most one per family.
func parseRequested(v string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		a, err := netip.ParseAddr(part)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%q is not an IP address (want one address per family, comma-separated)", part)
		}
		a = a.Unmap()
		for _, b := range out {
			if b.Is4() == a.Is4() {
				return nil, fmt.Errorf("%q asks for two addresses of one family (%s and %s); a Service has one per family", v, b, a)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// StripServiceObjects is the transform of the Service and EndpointSlice
// informers: it keeps only what ParseService and the advertisement
// computation read, so that watching every Service and EndpointSlice of
// the cluster costs a few hundred bytes per object, not its whole spec
// (ports, selectors, managed fields, endpoint addresses and hints). It is
// idempotent, as client-go requires, and passes anything else through.
func StripServiceObjects(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
				CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp},
			Spec: corev1.ServiceSpec{
				Type: o.Spec.Type, ClusterIP: o.Spec.ClusterIP, ClusterIPs: o.Spec.ClusterIPs, ExternalIPs: o.Spec.ExternalIPs,
				ExternalTrafficPolicy: o.Spec.ExternalTrafficPolicy, InternalTrafficPolicy: o.Spec.InternalTrafficPolicy,
				IPFamilies: o.Spec.IPFamilies, IPFamilyPolicy: o.Spec.IPFamilyPolicy,
				LoadBalancerClass: o.Spec.LoadBalancerClass, LoadBalancerIP: o.Spec.LoadBalancerIP,
			},
			Status: corev1.ServiceStatus{LoadBalancer: o.Status.LoadBalancer},
		}
		if slices.Contains(o.Finalizers, LoadBalancerCleanupFinalizer) {
			s.Finalizers = []string{LoadBalancerCleanupFinalizer}
		}
		for k, v := range o.Annotations {
			if strings.HasPrefix(k, "podroute.io/") {
				if s.Annotations == nil {
					s.Annotations = map[string]string{}
				}
				s.Annotations[k] = v
			}
		}
		return s, nil
	case *discoveryv1.EndpointSlice:
		e := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion},
			AddressType: o.AddressType,
		}
		if svc, ok := o.Labels[discoveryv1.LabelServiceName]; ok {
			e.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
		}
		e.Endpoints = make([]discoveryv1.Endpoint, len(o.Endpoints))
		for i, ep := range o.Endpoints {
			e.Endpoints[i] = discoveryv1.Endpoint{Conditions: ep.Conditions, NodeName: ep.NodeName}
		}
		return e, nil
	}
	return obj, nil
}

// sortServices orders Services by namespace and name, so that output and
// Problems come in a stable order.
func sortServices(ss []ServiceInfo) {
	slices.SortFunc(ss, func(a, b ServiceInfo) int { return strings.Compare(a.Key(), b.Key()) })
}
