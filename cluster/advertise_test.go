package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podroute/podroute/bgp"
)

// Addresses the tests use, one per kind and family, and the ranges that
// hold them.
var (
	testAddr = map[AddressKind][2]string{
		KindClusterIP:      {"10.96.0.10", "fd00:96::10"},
		KindExternalIP:     {"192.0.2.10", "2001:db8:e::10"},
		KindLoadBalancerIP: {"198.51.100.10", "2001:db8:1b::10"},
	}
	testRange = map[AddressKind][2]string{
		KindClusterIP:      {"10.96.0.0/16", "fd00:96::/112"},
		KindExternalIP:     {"192.0.2.0/24", "2001:db8:e::/64"},
		KindLoadBalancerIP: {"198.51.100.0/24", "2001:db8:1b::/64"},
	}
)

func ptr[T any](v T) *T { return &v }

// endpoint states of one Service family, as EndpointSlice endpoints.
type epCase struct {
	name string
	eps  []discoveryv1.Endpoint
	// what this node ("a") should do with policy Local
	advertise bool
	reason    Reason
}

func ep(node string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{"x"}, NodeName: ptr(node),
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
}

var epCases = []epCase{
	{"no endpoints", nil, false, ReasonNoLocalEndpoint},
	{"ready here", []discoveryv1.Endpoint{ep("a", ptr(true), nil, nil)}, true, ReasonLocalEndpoint},
	{"ready here (conditions unset mean ready)", []discoveryv1.Endpoint{ep("a", nil, nil, nil)}, true, ReasonLocalEndpoint},
	{"ready elsewhere only", []discoveryv1.Endpoint{ep("b", ptr(true), nil, nil)}, false, ReasonNoLocalEndpoint},
	{"not ready here, ready elsewhere", []discoveryv1.Endpoint{ep("a", ptr(false), ptr(false), nil), ep("b", ptr(true), nil, nil)}, false, ReasonNoLocalEndpoint},
	{"not ready here", []discoveryv1.Endpoint{ep("a", ptr(false), ptr(false), ptr(false))}, false, ReasonNoLocalEndpoint},
	{"terminating and serving here, none ready anywhere", []discoveryv1.Endpoint{ep("a", ptr(false), ptr(true), ptr(true)), ep("b", ptr(false), ptr(false), nil)}, true, ReasonLocalTerminating},
	{"terminating and serving here, ready elsewhere", []discoveryv1.Endpoint{ep("a", ptr(false), ptr(true), ptr(true)), ep("b", ptr(true), nil, nil)}, false, ReasonNoLocalEndpoint},
	{"terminating, not serving here", []discoveryv1.Endpoint{ep("a", ptr(false), ptr(false), ptr(true))}, false, ReasonNoLocalEndpoint},
	{"one ready and one not ready here", []discoveryv1.Endpoint{ep("a", ptr(false), ptr(false), nil), ep("a", ptr(true), nil, nil)}, true, ReasonLocalEndpoint},
	{"endpoint without a node", []discoveryv1.Endpoint{{Addresses: []string{"x"}}}, false, ReasonNoLocalEndpoint},
}

func slice(ns, svc, name string, v6 bool, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	at := discoveryv1.AddressTypeIPv4
	if v6 {
		at = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: at, Endpoints: eps,
	}
}

// TestServiceAdvertisementMatrix runs every combination of address kind,
// range mode, traffic policy, endpoint state, opt-out and address family
// against the rules written down once in want().
func TestServiceAdvertisementMatrix(t *testing.T) {
	kinds := []AddressKind{KindClusterIP, KindExternalIP, KindLoadBalancerIP}
	modes := []RangeMode{"", ModeAggregate, ModePerAddress} // "": no range of that kind
	// "other": Local set on the policy that does not govern this kind
	// (externalTrafficPolicy for a ClusterIP, internalTrafficPolicy for
	// the others), which must change nothing.
	policies := []string{"Cluster", "Local", "other"}
	n := 0
	for _, kind := range kinds {
		for _, mode := range modes {
			for _, policy := range policies {
				for _, ec := range epCases {
					for _, optOut := range []bool{false, true} {
						for fam := 0; fam < 2; fam++ {
							n++
							name := fmt.Sprintf("%s/%s/%s/%s/optout=%v/v6=%v", kind, orNone(mode), policy, ec.name, optOut, fam == 1)
							addr := netip.MustParseAddr(testAddr[kind][fam])
							rng := netip.MustParsePrefix(testRange[kind][fam])
							var cfg ServiceConfig
							if mode != "" {
								cfg.Ranges = []ServiceRangeInfo{{Kind: kind, Prefix: rng, Mode: mode, Communities: []uint32{64512<<16 | 7}}}
							} else {
								// Some other kind has a range holding the
								// very same address: kinds never mix.
								other := KindExternalIP
								if kind == KindExternalIP {
									other = KindLoadBalancerIP
								}
								cfg.Ranges = []ServiceRangeInfo{{Kind: other, Prefix: rng, Mode: ModePerAddress}}
							}
							svc := ServiceInfo{Namespace: "ns", Name: "svc", Type: corev1.ServiceTypeClusterIP, OptOut: optOut}
							switch kind {
							case KindClusterIP:
								svc.ClusterIPs = []netip.Addr{addr}
							case KindExternalIP:
								svc.ExternalIPs = []netip.Addr{addr}
							case KindLoadBalancerIP:
								svc.Type = corev1.ServiceTypeLoadBalancer
								svc.IngressIPs = []netip.Addr{addr}
							}
							local := policy == "Local"
							if kind == KindClusterIP {
								svc.InternalLocal = local
								svc.ExternalLocal = policy == "other"
							} else {
								svc.ExternalLocal = local
								svc.InternalLocal = policy == "other"
							}
							advs, lines := ComputeServiceAdvertisements(ServiceInputs{
								LocalNode: "a", Config: cfg, Services: []ServiceInfo{svc},
								Slices: []*discoveryv1.EndpointSlice{slice("ns", "svc", "svc-x", fam == 1, ec.eps...)},
							})

							// The rules.
							wantAdv, wantVia, wantReason := false, netip.Prefix{}, ReasonOutOfRange
							var wantPrefixes []netip.Prefix
							host := netip.PrefixFrom(addr, addr.BitLen())
							switch {
							case mode == "":
							case mode == ModeAggregate:
								wantAdv, wantVia, wantReason = true, rng, ReasonInAggregate
								if optOut {
									wantReason = ReasonInAggregateOptOut
								} else if local {
									wantReason = ReasonInAggregateLocal
								}
								wantPrefixes = []netip.Prefix{rng}
							case optOut:
								wantReason = ReasonOptedOut
							case !local:
								wantAdv, wantVia, wantReason = true, host, ReasonPolicyCluster
							default:
								wantAdv, wantReason = ec.advertise, ec.reason
								if wantAdv {
									wantVia = host
								}
							}
							if mode == ModePerAddress && wantAdv {
								wantPrefixes = []netip.Prefix{host}
							}

							var got []netip.Prefix
							for _, a := range advs {
								got = append(got, a.Prefix)
								if mode != "" && !slices.Equal(a.Communities, []uint32{64512<<16 | 7}) {
									t.Errorf("%s: %s without the range's community: %v", name, a.Prefix, a.Communities)
								}
							}
							if !slices.Equal(got, wantPrefixes) {
								t.Errorf("%s: advertised %v, want %v", name, got, wantPrefixes)
							}
							var line *ServiceRoute
							for i := range lines {
								if lines[i].Service == "ns/svc" {
									if line != nil {
										t.Errorf("%s: two status lines for one address: %+v", name, lines)
									}
									line = &lines[i]
								}
							}
							if line == nil {
								t.Errorf("%s: no status line for the Service (lines %+v)", name, lines)
								continue
							}
							if line.Prefix != host || line.Kind != kind || line.Advertised != wantAdv || line.Via != wantVia || line.Reason != wantReason {
								t.Errorf("%s: status %+v, want prefix %s advertised %v via %v reason %q", name, *line, host, wantAdv, wantVia, wantReason)
							}
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations of kind, range mode, policy, endpoint state, opt-out and family", n)
}

func orNone(m RangeMode) string {
	if m == "" {
		return "no-range"
	}
	return string(m)
}

// Which nodes advertise a Service: all for Cluster (so routers spread
// traffic over every node, ECMP), exactly those with a ready endpoint for
// Local, each family on its own slices, and every address of a
// dual-stack Service.
func TestServiceAdvertisementPerNode(t *testing.T) {
	cfg, problems := ParseServiceConfig(BGPConfigurationSpec{
		ServiceClusterIPs:      []ServiceRange{{CIDR: "10.96.0.0/16", Advertise: "PerAddress"}, {CIDR: "fd00:96::/112", Advertise: "PerAddress"}},
		ServiceExternalIPs:     []ServiceRange{{CIDR: "192.0.2.0/24"}},
		ServiceLoadBalancerIPs: []ServiceRange{{CIDR: "198.51.100.0/24", LargeCommunities: []string{"64512:2:1"}}, {CIDR: "2001:db8:1b::/64"}},
	}, nil)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	a := netip.MustParseAddr
	svcs := []ServiceInfo{
		{Namespace: "web", Name: "cluster", Type: corev1.ServiceTypeLoadBalancer,
			ClusterIPs: []netip.Addr{a("10.96.0.1"), a("fd00:96::1")}, IngressIPs: []netip.Addr{a("198.51.100.1"), a("2001:db8:1b::1")}},
		{Namespace: "web", Name: "local", Type: corev1.ServiceTypeLoadBalancer, ExternalLocal: true, InternalLocal: true,
			ClusterIPs: []netip.Addr{a("10.96.0.2"), a("fd00:96::2")}, IngressIPs: []netip.Addr{a("198.51.100.2"), a("2001:db8:1b::2")},
			ExternalIPs: []netip.Addr{a("192.0.2.2")}},
		// Shares its external IP with "local" (other ports): advertised
		// once, from every node, because this one is Cluster.
		{Namespace: "web", Name: "shared", Type: corev1.ServiceTypeClusterIP, ExternalIPs: []netip.Addr{a("192.0.2.2")}},
		{Namespace: "web", Name: "name", Type: corev1.ServiceTypeExternalName},
	}
	eps := []*discoveryv1.EndpointSlice{
		// IPv4: ready on a and b, not ready on c. IPv6: ready on a only.
		slice("web", "local", "local-4", false, ep("a", ptr(true), nil, nil), ep("b", nil, nil, nil), ep("c", ptr(false), nil, nil)),
		slice("web", "local", "local-6", true, ep("a", ptr(true), nil, nil), ep("b", ptr(false), nil, nil)),
		// Same-named Service in another namespace: not ours.
		slice("other", "local", "local-x", false, ep("c", ptr(true), nil, nil)),
	}
	who := map[string][]string{}
	for _, node := range []string{"a", "b", "c"} {
		advs, _ := ComputeServiceAdvertisements(ServiceInputs{LocalNode: node, Config: cfg, Services: svcs, Slices: eps})
		for _, adv := range advs {
			who[adv.Prefix.String()] = append(who[adv.Prefix.String()], node)
			if adv.Prefix.String() == "198.51.100.1/32" && (len(adv.LargeCommunities) != 1 || adv.LargeCommunities[0] != [3]uint32{64512, 2, 1}) {
				t.Errorf("198.51.100.1/32 large communities %v, want 64512:2:1", adv.LargeCommunities)
			}
		}
	}
	want := map[string][]string{
		"10.96.0.1/32": {"a", "b", "c"}, "fd00:96::1/128": {"a", "b", "c"},
		"198.51.100.1/32": {"a", "b", "c"}, "2001:db8:1b::1/128": {"a", "b", "c"},
		"10.96.0.2/32": {"a", "b"}, "fd00:96::2/128": {"a"},
		"198.51.100.2/32": {"a", "b"}, "2001:db8:1b::2/128": {"a"},
		"192.0.2.2/32": {"a", "b", "c"},
	}
	for p, nodes := range want {
		if !slices.Equal(who[p], nodes) {
			t.Errorf("%s advertised by %v, want %v", p, who[p], nodes)
		}
	}
	if len(who) != len(want) {
		t.Errorf("advertised %v, want exactly %v", who, want)
	}
	_, lines := ComputeServiceAdvertisements(ServiceInputs{LocalNode: "c", Config: cfg, Services: svcs, Slices: eps})
	var shared []string
	for _, l := range lines {
		if l.Prefix.String() == "192.0.2.2/32" {
			shared = append(shared, fmt.Sprintf("%s %v %s", l.Service, l.Advertised, l.Reason))
		}
	}
	if want := []string{"web/local false " + string(ReasonNoLocalEndpoint), "web/shared true " + string(ReasonPolicyCluster)}; !slices.Equal(shared, want) {
		t.Errorf("node c's lines for the shared external IP: %q, want %q", shared, want)
	}
}

// Nothing configured: nothing advertised and nothing to report, whatever
// the Services (podrouted behaves as before the feature).
func TestServiceAdvertisementOff(t *testing.T) {
	svcs := []ServiceInfo{{Namespace: "a", Name: "b", Type: corev1.ServiceTypeLoadBalancer,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")}, IngressIPs: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}}
	advs, lines := ComputeServiceAdvertisements(ServiceInputs{LocalNode: "a", Services: svcs})
	if advs != nil || lines != nil {
		t.Errorf("no ranges: got %v %v, want nothing", advs, lines)
	}
	d, _ := Compute(Inputs{LocalNode: "a", Nodes: parseAll(t, node("a", "10.0.0.1", "10.244.1.0/24", nil, nil)), Services: svcs})
	if d.Advertisements != nil || d.ServiceRoutes != nil || d.Services.Enabled() || d.LoadBalancer.Enabled() {
		t.Errorf("Compute without service config: %+v", d)
	}
}

// Aggregate ranges are advertised as such, with a line of their own, and
// Compute passes everything through to Desired.
func TestComputeServiceRanges(t *testing.T) {
	nodes := parseAll(t, node("a", "10.0.0.1", "10.244.1.0/24", nil, nil), node("b", "10.0.0.2", "10.244.2.0/24", nil, nil))
	svc := ServiceInfo{Namespace: "ns", Name: "s", Type: corev1.ServiceTypeClusterIP, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.3.4")}}
	d, problems := Compute(Inputs{LocalNode: "a", Nodes: nodes, Services: []ServiceInfo{svc}, Config: BGPConfigurationSpec{
		ServiceClusterIPs: []ServiceRange{{CIDR: "10.96.0.0/16", Communities: []string{"64512:100"}}},
	}})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	want := []bgp.Advertisement{{Prefix: netip.MustParsePrefix("10.96.0.0/16"), Communities: []uint32{64512<<16 | 100}}}
	if len(d.Advertisements) != 1 || !d.Advertisements[0].Prefix.IsValid() || d.Advertisements[0].Prefix != want[0].Prefix ||
		!slices.Equal(d.Advertisements[0].Communities, want[0].Communities) {
		t.Errorf("advertisements %+v, want %+v", d.Advertisements, want)
	}
	var got []string
	for _, l := range d.ServiceRoutes {
		got = append(got, fmt.Sprintf("%s %s %v via %s: %s", l.Prefix, l.Service, l.Advertised, l.Via, l.Reason))
	}
	wantLines := []string{
		"10.96.0.0/16  true via 10.96.0.0/16: " + string(ReasonAggregateRange),
		"10.96.3.4/32 ns/s true via 10.96.0.0/16: " + string(ReasonInAggregate),
	}
	if !slices.Equal(got, wantLines) {
		t.Errorf("lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLines, "\n"))
	}
}

func TestParseServiceConfig(t *testing.T) {
	spec := BGPConfigurationSpec{
		ServiceClusterIPs: []ServiceRange{
			{CIDR: "10.96.0.0/16"},
			{CIDR: "10.97.0.5/16"},                   // host bits
			{CIDR: "0.0.0.0/0"},                      // everything
			{CIDR: "10.96.128.0/17"},                 // overlaps [0]
			{CIDR: "10.98.0.0/16", Advertise: "all"}, // bad mode
		},
		ServiceExternalIPs: []ServiceRange{
			{CIDR: "192.0.2.0/24", Communities: []string{"64512:1", "70000:1"}}, // bad community
			{CIDR: "10.244.0.0/24"}, // a pod pool
			{CIDR: "203.0.113.0/24", LargeCommunities: []string{"1:2"}}, // bad large community
		},
		ServiceLoadBalancerIPs: []ServiceRange{
			{CIDR: "10.96.200.0/24"}, // overlaps a ClusterIP range
			{CIDR: "198.51.100.0/24", Advertise: "Aggregate", Communities: []string{"64512:5"}, LargeCommunities: []string{"64512:1:2"}},
		},
	}
	cfg, problems := ParseServiceConfig(spec, []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")})
	var kept []string
	for _, r := range cfg.Ranges {
		kept = append(kept, fmt.Sprintf("%s %s %s %v %v", r.Field, r.Prefix, r.Mode, r.Communities, r.LargeCommunities))
	}
	wantKept := []string{
		"spec.serviceClusterIPs[0] 10.96.0.0/16 Aggregate [] []",
		"spec.serviceLoadBalancerIPs[1] 198.51.100.0/24 Aggregate [4227858437] [[64512 1 2]]",
	}
	if !slices.Equal(kept, wantKept) {
		t.Errorf("kept\n%s\nwant\n%s", strings.Join(kept, "\n"), strings.Join(wantKept, "\n"))
	}
	var got []string
	for _, p := range problems {
		if p.Kind != "BGPConfiguration" || p.Name != "default" {
			t.Errorf("problem on %s %s", p.Kind, p.Name)
		}
		got = append(got, p.Reason+": "+p.Message)
	}
	for _, want := range []string{
		`InvalidServiceRange: spec.serviceClusterIPs[1].cidr: "10.97.0.5/16" is not a network CIDR`,
		`InvalidServiceRange: spec.serviceClusterIPs[2].cidr: "0.0.0.0/0" is not a network CIDR (and not /0)`,
		`OverlappingServiceRange: spec.serviceClusterIPs[3].cidr 10.96.128.0/17 overlaps spec.serviceClusterIPs[0] (10.96.0.0/16)`,
		`InvalidServiceRange: spec.serviceClusterIPs[4].advertise: "all" must be Aggregate or PerAddress`,
		`InvalidCommunity: spec.serviceExternalIPs[0].communities[1]: "70000:1" is not a standard community`,
		`ServiceRangeOverlapsPodPool: spec.serviceExternalIPs[1].cidr 10.244.0.0/24 overlaps pod pool 10.244.0.0/16`,
		`InvalidCommunity: spec.serviceExternalIPs[2].largeCommunities[0]: "1:2" is not a large community`,
		`OverlappingServiceRange: spec.serviceLoadBalancerIPs[0].cidr 10.96.200.0/24 overlaps spec.serviceClusterIPs[0] (10.96.0.0/16)`,
	} {
		found := false
		for _, g := range got {
			found = found || strings.HasPrefix(g, want)
		}
		if !found {
			t.Errorf("no problem starting %q in\n%s", want, strings.Join(got, "\n"))
		}
	}
	if len(got) != 8 {
		t.Errorf("%d problems, want 8:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestParseLoadBalancerConfig(t *testing.T) {
	def, problems := ParseLoadBalancerConfig(BGPConfigurationSpec{}, ServiceConfig{})
	if def.Class != DefaultLoadBalancerClass || !def.AllocateClassless || def.Enabled() || len(problems) > 0 {
		t.Errorf("defaults %+v %v", def, problems)
	}
	svcCfg, _ := ParseServiceConfig(BGPConfigurationSpec{ServiceLoadBalancerIPs: []ServiceRange{{CIDR: "198.51.100.0/24"}}}, nil)
	cfg, problems := ParseLoadBalancerConfig(BGPConfigurationSpec{LoadBalancer: &LoadBalancerSpec{
		Class: "example.com/lb", AllocateClassless: ptr(false),
		Pools: []LoadBalancerPool{
			{Name: "a", CIDRs: []string{"198.51.100.0/28", "2001:db8:1b::/120"}},
			{Name: "a", CIDRs: []string{"198.51.100.16/28"}},       // duplicate name
			{Name: "b", CIDRs: []string{"198.51.100.8/29", "bad"}}, // overlaps a; not a CIDR
			{Name: "", CIDRs: []string{"198.51.100.64/28"}},        // no name
			{Name: "c", CIDRs: []string{"198.51.100.128/28"}},
		},
	}}, svcCfg)
	var pools []string
	for _, p := range cfg.Pools {
		pools = append(pools, fmt.Sprintf("%s %v", p.Name, p.Prefixes))
	}
	if want := []string{"a [198.51.100.0/28 2001:db8:1b::/120]", "c [198.51.100.128/28]"}; !slices.Equal(pools, want) {
		t.Errorf("pools %q, want %q", pools, want)
	}
	var reasons []string
	for _, p := range problems {
		reasons = append(reasons, p.Reason)
	}
	// a's IPv6 CIDR is in no serviceLoadBalancerIPs range; b loses both
	// entries and so is ignored as a whole.
	if want := []string{"PoolNotAdvertised", "InvalidPool", "InvalidPool", "InvalidPool", "InvalidPool", "InvalidPool"}; !slices.Equal(reasons, want) {
		t.Errorf("problems %v, want reasons %v", problems, want)
	}
	classless := ServiceInfo{Type: corev1.ServiceTypeLoadBalancer}
	ours := ServiceInfo{Type: corev1.ServiceTypeLoadBalancer, Class: "example.com/lb"}
	theirs := ServiceInfo{Type: corev1.ServiceTypeLoadBalancer, Class: DefaultLoadBalancerClass}
	notLB := ServiceInfo{Type: corev1.ServiceTypeNodePort, Class: "example.com/lb"}
	if cfg.Serves(classless) || !cfg.Serves(ours) || cfg.Serves(theirs) || cfg.Serves(notLB) {
		t.Errorf("Serves: classless %v ours %v theirs %v not-LB %v", cfg.Serves(classless), cfg.Serves(ours), cfg.Serves(theirs), cfg.Serves(notLB))
	}
	if !def.Serves(classless) || !def.Serves(theirs) {
		t.Error("by default, classless Services and podroute's class are served")
	}
}

func TestParseService(t *testing.T) {
	local := corev1.ServiceInternalTrafficPolicyLocal
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", Annotations: map[string]string{
			AnnotationAdvertise: "false", AnnotationLoadBalancerIPs: "198.51.100.7, 2001:db8:1b::7", AnnotationAddressPool: "blue",
		}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.96.0.1", "fd00:96::1"}, ExternalIPs: []string{"192.0.2.1"},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal, InternalTrafficPolicy: &local,
			LoadBalancerIP: "198.51.100.9", LoadBalancerClass: ptr("podroute.io/bgp"),
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol},
		},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.7"}, {Hostname: "lb.example"}}}},
	}
	info, errs := ParseService(svc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	got := fmt.Sprintf("%s %v %v %v ext-local=%v int-local=%v optout=%v class=%s req=%v pool=%s", info.Key(), info.ClusterIPs, info.ExternalIPs, info.IngressIPs,
		info.ExternalLocal, info.InternalLocal, info.OptOut, info.Class, info.RequestedIPs, info.Pool)
	want := "ns/s [10.96.0.1 fd00:96::1] [192.0.2.1] [198.51.100.7] ext-local=true int-local=true optout=true class=podroute.io/bgp req=[198.51.100.7 2001:db8:1b::7] pool=blue"
	if got != want {
		t.Errorf("ParseService\n got %s\nwant %s", got, want)
	}

	// Bad annotations are reported and ignored; spec.loadBalancerIP
	// stands in when the annotation is absent; a Service that is not a
	// LoadBalancer has no ingress addresses, whatever its status says.
	svc.Annotations = map[string]string{AnnotationAdvertise: "nope"}
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	info, errs = ParseService(svc)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `"nope" must be "true" or "false"`) || info.OptOut {
		t.Errorf("bad advertise annotation: %v, opt-out %v", errs, info.OptOut)
	}
	if len(info.IngressIPs) != 0 || len(info.RequestedIPs) != 1 || info.RequestedIPs[0].String() != "198.51.100.9" {
		t.Errorf("ClusterIP Service: ingress %v requested %v", info.IngressIPs, info.RequestedIPs)
	}
	svc.Annotations = map[string]string{AnnotationLoadBalancerIPs: "198.51.100.7,198.51.100.8"}
	info, errs = ParseService(svc)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "two addresses of one family") || len(info.RequestedIPs) != 0 {
		t.Errorf("two IPv4 addresses asked for: %v %v", errs, info.RequestedIPs)
	}
	p := ServiceProblem(info, []error{fmt.Errorf("one"), fmt.Errorf("two")})
	if p.Kind != "Service" || p.Name != "ns/s" || p.Message != "one; two" {
		t.Errorf("ServiceProblem %+v", p)
	}
	headless := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone}}}
	if info, errs := ParseService(headless); len(info.ClusterIPs) != 0 || len(errs) != 0 {
		t.Errorf("headless: %v %v", info.ClusterIPs, errs)
	}
}

func TestStripServiceObjects(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "s", ResourceVersion: "7", Labels: map[string]string{"app": "x"},
			Annotations:   map[string]string{AnnotationAdvertise: "false", "kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4096)},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.96.0.1"}, Selector: map[string]string{"app": "x"},
			Ports: []corev1.ServicePort{{Port: 80}}, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal},
		Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}}}},
	}
	o, err := StripServiceObjects(svc)
	if err != nil {
		t.Fatal(err)
	}
	s := o.(*corev1.Service)
	if len(s.Annotations) != 1 || s.Labels != nil || s.ManagedFields != nil || s.Spec.Ports != nil || s.Spec.Selector != nil {
		t.Errorf("stripped Service keeps too much: %+v", s)
	}
	before, _ := ParseService(svc)
	after, _ := ParseService(s)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("stripping changed what ParseService reads:\n%+v\n%+v", before, after)
	}
	again, _ := StripServiceObjects(s)
	if fmt.Sprint(again) != fmt.Sprint(s) {
		t.Error("StripServiceObjects is not idempotent")
	}
	es := slice("ns", "s", "s-1", false, ep("a", ptr(true), nil, nil))
	es.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z"}}}
	es.Ports = []discoveryv1.EndpointPort{{Port: ptr(int32(80))}}
	es.Labels["endpointslice.kubernetes.io/managed-by"] = "me"
	o, _ = StripServiceObjects(es)
	e := o.(*discoveryv1.EndpointSlice)
	if len(e.Labels) != 1 || e.Ports != nil || e.Endpoints[0].Addresses != nil || e.Endpoints[0].Hints != nil || *e.Endpoints[0].NodeName != "a" {
		t.Errorf("stripped EndpointSlice: %+v", e)
	}
	if other, _ := StripServiceObjects("x"); other != "x" {
		t.Error("other objects must pass through")
	}
}
