package policy

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// flow is one new connection to check: for Ingress from peer to pod, for
// Egress from pod to peer.
type flow struct {
	pod   string // a local pod of ns-a
	dir   Direction
	peer  func(fam int) netip.Addr
	proto Protocol // "" for ICMP
	port  uint16
	want  bool
}

func pod(name string) func(int) netip.Addr {
	return func(fam int) netip.Addr { return podAddr(name, fam) }
}

func lit(v4, v6 string) func(int) netip.Addr {
	return func(fam int) netip.Addr {
		if fam == 4 {
			return netip.MustParseAddr(v4)
		}
		return netip.MustParseAddr(v6)
	}
}

func in(podName string, peer func(int) netip.Addr, proto Protocol, port uint16, want bool) flow {
	return flow{podName, Ingress, peer, proto, port, want}
}

func out(podName string, peer func(int) netip.Addr, proto Protocol, port uint16, want bool) flow {
	return flow{podName, Egress, peer, proto, port, want}
}

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both        = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	web         = map[string]string{"app": "web"}
	all         = map[string]string{}
)

func TestComputeSemantics(t *testing.T) {
	cases := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		flows    []flow
		problems []string // reasons expected, in order
	}{
		{
			name: "no policy allows everything",
			flows: []flow{
				in("web", pod("client"), TCP, 80, true),
				out("web", lit("8.8.8.8", "2001:db8::8"), UDP, 53, true),
			},
		},
		{
			name:     "default deny ingress isolates only ingress",
			policies: pols(pol("ns-a", "deny", all, ingressOnly...)),
			flows: []flow{
				in("web", pod("client"), TCP, 80, false),
				in("db", pod("web"), TCP, 80, false),
				in("web", pod("client"), "", 0, false),
				out("web", pod("client"), TCP, 80, true),
			},
		},
		{
			name:     "default deny egress isolates only egress",
			policies: pols(pol("ns-a", "deny", all, egressOnly...)),
			flows: []flow{
				out("web", pod("client"), TCP, 80, false),
				out("web", lit("8.8.8.8", "2001:db8::8"), UDP, 53, false),
				in("web", pod("client"), TCP, 80, true),
			},
		},
		{
			name:     "empty policyTypes with only ingress rules: ingress only",
			policies: pols(pol("ns-a", "p", web).in(peers(podPeer(map[string]string{"app": "client"})))),
			flows: []flow{
				in("web", pod("client"), TCP, 80, true),
				in("web", pod("other"), TCP, 80, false),
				out("web", pod("other"), TCP, 80, true),
				in("db", pod("other"), TCP, 80, true), // not selected
			},
		},
		{
			name:     "empty policyTypes with egress rules: both directions, no ingress rule denies all ingress",
			policies: pols(pol("ns-a", "p", web).out(peers(podPeer(map[string]string{"app": "client"})))),
			flows: []flow{
				out("web", pod("client"), TCP, 80, true),
				out("web", pod("other"), TCP, 80, false), // podSelector alone: own namespace only
				in("web", pod("client"), TCP, 80, false),
			},
		},
		{
			name:     "an empty rule allows everything",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(nil)),
			flows: []flow{
				in("web", pod("other"), UDP, 9, true),
				in("web", lit("192.0.2.1", "2001:db8::1"), "", 0, true),
			},
		},
		{
			name:     "namespaceSelector alone: every pod of the matching namespaces",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(nsPeer(map[string]string{"team": "b"})))),
			flows: []flow{
				in("web", pod("other"), TCP, 80, true),
				in("web", pod("api"), TCP, 80, true),
				in("web", pod("client"), TCP, 80, false),
			},
		},
		{
			name:     "empty namespaceSelector: pods of every namespace",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(nsPodPeer(all, map[string]string{"app": "client"})))),
			flows: []flow{
				in("web", pod("other"), TCP, 80, true),
				in("web", pod("client"), TCP, 80, true),
				in("web", pod("api"), TCP, 80, false),
			},
		},
		{
			name:     "namespaceSelector by the name label the API server sets",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(nsPeer(map[string]string{NamespaceNameLabel: "ns-b"})))),
			flows: []flow{
				in("web", pod("api"), TCP, 80, true),
				in("web", pod("client"), TCP, 80, false),
			},
		},
		{
			name: "namespaceSelector and podSelector in one peer: both must match",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(
				nsPodPeer(map[string]string{"team": "b"}, map[string]string{"app": "api"})))),
			flows: []flow{
				in("web", pod("api"), TCP, 80, true),
				in("web", pod("other"), TCP, 80, false),
				in("web", pod("client"), TCP, 80, false),
			},
		},
		{
			name: "the same selectors as two peers: either matches",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(
				nsPeer(map[string]string{"team": "b"}), podPeer(map[string]string{"app": "client"})))),
			flows: []flow{
				in("web", pod("api"), TCP, 80, true),
				in("web", pod("other"), TCP, 80, true),
				in("web", pod("client"), TCP, 80, true),
				in("web", pod("db"), TCP, 80, false),
			},
		},
		{
			name: "ipBlock with except",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(
				blockPeer("10.0.1.0/24", "10.0.1.21/32"), blockPeer("fd00:1::/64", "fd00:1::21/128")))),
			flows: []flow{
				in("web", pod("client"), TCP, 80, true),
				in("web", pod("api"), TCP, 80, true),
				in("web", pod("other"), TCP, 80, false), // excepted
				in("web", lit("10.0.2.1", "fd00:2::1"), TCP, 80, false),
			},
		},
		{
			name: "an except cuts only its own block, not another peer",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(
				blockPeer("10.0.1.0/24", "10.0.1.21/32"), blockPeer("fd00:1::/64", "fd00:1::21/128"),
				podPeer(nil)), // podSelector {} also matches... own namespace only
				tcp(80))),
			flows: []flow{
				in("web", pod("other"), TCP, 80, false),
				in("web", pod("db"), TCP, 80, true),
			},
		},
		{
			name: "egress ipBlock to the outside world",
			policies: pols(pol("ns-a", "p", web, egressOnly...).out(peers(
				blockPeer("0.0.0.0/0", "10.0.0.0/8"), blockPeer("::/0", "fd00::/8")))),
			flows: []flow{
				out("web", lit("8.8.8.8", "2001:db8::8"), UDP, 53, true),
				out("web", pod("client"), TCP, 80, false),
			},
		},
		{
			name:     "ports by number, protocols TCP UDP SCTP",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(nil, tcp(80), udp(53), sctp(3868))),
			flows: []flow{
				in("web", pod("client"), TCP, 80, true),
				in("web", pod("client"), TCP, 81, false),
				in("web", pod("client"), UDP, 53, true),
				in("web", pod("client"), UDP, 80, false),
				in("web", pod("client"), SCTP, 3868, true),
				in("web", pod("client"), SCTP, 80, false),
				in("web", pod("client"), "", 0, false), // ICMP: not a listed protocol
			},
		},
		{
			name:     "protocol without port: the whole protocol",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(nil, allOf(corev1.ProtocolUDP))),
			flows: []flow{
				in("web", pod("client"), UDP, 1, true),
				in("web", pod("client"), UDP, 65535, true),
				in("web", pod("client"), TCP, 1, false),
			},
		},
		{
			name:     "endPort",
			policies: pols(pol("ns-a", "p", web, egressOnly...).out(peers(podPeer(nil)), portRange(8000, 8090))),
			flows: []flow{
				out("web", pod("db"), TCP, 8000, true),
				out("web", pod("db"), TCP, 8090, true),
				out("web", pod("db"), TCP, 7999, false),
				out("web", pod("db"), TCP, 8091, false),
				out("web", pod("db"), UDP, 8000, false),
			},
		},
		{
			name: "named ports on ingress resolve per destination pod",
			policies: pols(pol("ns-a", "p", all, ingressOnly...).in(peers(podPeer(map[string]string{"app": "client"})),
				named(corev1.ProtocolTCP, "http"), named(corev1.ProtocolUDP, "dns"), named(corev1.ProtocolSCTP, "diameter"))),
			flows: []flow{
				in("web", pod("client"), TCP, 8080, true),
				in("web", pod("client"), UDP, 5353, true),
				in("web", pod("client"), SCTP, 3868, true),
				in("web", pod("client"), UDP, 8080, false), // the name is TCP
				in("web", pod("client"), TCP, 80, false),
				in("web", pod("other"), TCP, 8080, false), // not a peer
				in("db", pod("client"), TCP, 8080, false), // db has no "http"
			},
		},
		{
			name:     "named port of the wrong protocol resolves to nothing",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(nil, named(corev1.ProtocolUDP, "http"))),
			flows: []flow{
				in("web", pod("client"), TCP, 8080, false),
				in("web", pod("client"), UDP, 8080, false),
			},
		},
		{
			name: "named ports on egress resolve per peer pod",
			policies: pols(pol("ns-a", "p", web, egressOnly...).out(peers(nsPeer(all)),
				named(corev1.ProtocolTCP, "http"))),
			flows: []flow{
				out("web", pod("api"), TCP, 9090, true),
				out("web", pod("api"), TCP, 8080, false),
				out("web", pod("client"), TCP, 8080, false), // client has no "http"
				out("web", pod("client"), TCP, 9090, false),
			},
		},
		{
			name: "named ports on egress with no peers: every pod that has the name",
			policies: pols(pol("ns-a", "p", web, egressOnly...).out(nil,
				named(corev1.ProtocolTCP, "http"), tcp(53))),
			flows: []flow{
				out("web", pod("api"), TCP, 9090, true),
				out("web", lit("8.8.8.8", "2001:db8::8"), TCP, 53, true),
				out("web", lit("8.8.8.8", "2001:db8::8"), TCP, 9090, false),
			},
		},
		{
			name: "named ports on egress with an ipBlock: pods inside the block",
			policies: pols(pol("ns-a", "p", web, egressOnly...).out(peers(blockPeer("10.0.1.16/28"), blockPeer("fd00:1::/120")),
				named(corev1.ProtocolTCP, "http"))),
			flows: []flow{
				out("web", pod("api"), TCP, 9090, true),
				out("web", pod("api"), TCP, 8080, false),
			},
		},
		{
			name: "policies add up",
			policies: pols(
				pol("ns-a", "one", web, ingressOnly...).in(peers(podPeer(map[string]string{"app": "client"})), tcp(80)),
				pol("ns-a", "two", web, ingressOnly...).in(peers(nsPeer(map[string]string{"team": "b"})), tcp(443)),
			),
			flows: []flow{
				in("web", pod("client"), TCP, 80, true),
				in("web", pod("other"), TCP, 443, true),
				in("web", pod("client"), TCP, 443, false),
				in("web", pod("other"), TCP, 80, false),
			},
		},
		{
			name: "a policy of another namespace selects nothing here",
			policies: pols(
				pol("ns-b", "deny", all, both...),
			),
			flows: []flow{
				in("web", pod("client"), TCP, 80, true),
				out("web", pod("client"), TCP, 80, true),
			},
		},
		{
			name:     "terminated and host-network pods are never peers",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(podPeer(nil)))),
			flows: []flow{
				in("web", pod("gone"), TCP, 80, false),
				in("web", pod("host"), TCP, 80, false),
				in("web", pod("client"), TCP, 80, true),
			},
		},
		{
			name:     "unsupported protocol: reported, and the port matches nothing",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(nil, protoPort("ICMP", 0))),
			flows: []flow{
				in("web", pod("client"), "", 0, false),
				in("web", pod("client"), TCP, 80, false), // not widened to "all ports"
			},
			problems: []string{"UnsupportedProtocol"},
		},
		{
			name:     "invalid port range: reported, matches nothing",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(nil, portRange(90, 80), tcp(22))),
			flows: []flow{
				in("web", pod("client"), TCP, 85, false),
				in("web", pod("client"), TCP, 22, true),
			},
			problems: []string{"InvalidPort"},
		},
		{
			name: "invalid CIDR and except: reported, the peer matches nothing",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(
				blockPeer("10.0.1.0/33"), blockPeer("fd00:1::/64", "nonsense")))),
			flows: []flow{
				in("web", pod("client"), TCP, 80, false),
			},
			problems: []string{"InvalidIPBlock", "InvalidIPBlock"},
		},
		{
			name: "invalid podSelector: reported, isolates the namespace, allows nothing",
			policies: pols(&builderPol{&networkingv1.NetworkPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns-a", Name: "bad"},
				Spec: networkingv1.NetworkPolicySpec{
					PodSelector: metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Sometimes"}}},
					Ingress:     []networkingv1.NetworkPolicyIngressRule{{}}, // would allow all
				},
			}}),
			flows: []flow{
				in("web", pod("client"), TCP, 80, false),
				in("db", pod("client"), TCP, 80, false),
				out("web", pod("client"), TCP, 80, true),
			},
			problems: []string{"InvalidPodSelector"},
		},
		{
			name: "invalid peer selector: reported, that peer matches nothing",
			policies: pols(pol("ns-a", "p", web, ingressOnly...).in(peers(
				networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "In"}}}},
				podPeer(map[string]string{"app": "db"})))),
			flows: []flow{
				in("web", pod("client"), TCP, 80, false),
				in("web", pod("db"), TCP, 80, true),
			},
			problems: []string{"InvalidPeer"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Compute(testInput(tc.policies...))
			for _, fam := range []int{4, 6} {
				for _, f := range tc.flows {
					local := podAddr(f.pod, fam)
					remote := f.peer(fam)
					got := res.Allowed(Key{"ns-a", f.pod}, f.dir, local, remote, f.proto, f.port)
					if got != f.want {
						t.Errorf("IPv%d %s %s %s %s/%d: allowed=%v, want %v", fam, f.pod, f.dir, remote, f.proto, f.port, got, f.want)
					}
				}
			}
			var reasons []string
			for _, p := range res.Problems {
				reasons = append(reasons, p.Reason)
				if p.Kind != "NetworkPolicy" || p.Object.Name == "" || p.Message == "" {
					t.Errorf("problem does not name its object and why: %+v", p)
				}
			}
			if strings.Join(reasons, ",") != strings.Join(tc.problems, ",") {
				t.Errorf("problems %v, want %v", res.Problems, tc.problems)
			}
		})
	}
}

func pols(bs ...*builderPol) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	for _, b := range bs {
		out = append(out, b.NetworkPolicy)
	}
	return out
}

func TestComputeLocalPods(t *testing.T) {
	res := Compute(testInput(pol("ns-a", "p", web, both...).NetworkPolicy))
	var names []string
	for k := range res.Pods {
		names = append(names, k.String())
	}
	if len(res.Pods) != 2 || res.Pods[Key{"ns-a", "web"}] == nil || res.Pods[Key{"ns-a", "db"}] == nil {
		t.Fatalf("local pods %v, want ns-a/web and ns-a/db (host-network and other nodes' pods are not local)", names)
	}
	w := res.Pods[Key{"ns-a", "web"}]
	if len(w.Ingress) != 1 || len(w.Egress) != 1 || w.Ingress[0] != (Key{"ns-a", "p"}) {
		t.Errorf("web isolated by %v / %v, want ns-a/p both ways", w.Ingress, w.Egress)
	}
	if got := res.Pods[Key{"ns-a", "db"}]; len(got.Ingress)+len(got.Egress) != 0 {
		t.Errorf("db isolated by %v / %v, want nothing", got.Ingress, got.Egress)
	}
	if len(w.Addrs) != 2 || !w.Addrs[0].Is4() || !w.Addrs[1].Is6() {
		t.Errorf("web addresses %v, want IPv4 then IPv6", w.Addrs)
	}
	// A pod that is Pending but has its address (init containers run
	// then) is policed too.
	in := testInput(pol("ns-a", "p", web, both...).NetworkPolicy)
	in.Pods[0].Status.Phase = corev1.PodPending
	if res := Compute(in); res.Pods[Key{"ns-a", "web"}] == nil {
		t.Error("a Pending pod with addresses is not policed")
	}
	// Without this node's name nothing is local.
	in.NodeName = ""
	if res := Compute(in); len(res.Pods) != 0 {
		t.Errorf("no node name, yet local pods %v", res.Pods)
	}
	// A policy that selects no local pod is not compiled.
	if res := Compute(testInput(pol("ns-b", "p", all, both...).NetworkPolicy)); len(res.Policies) != 0 {
		t.Errorf("compiled %v, want nothing: the policy selects no pod of this node", res.Policies)
	}
}

// The shape of a compiled rule depends on the policy alone, so that a pod
// coming or going changes set elements, not rules.
func TestComputeRuleShapeIndependentOfPods(t *testing.T) {
	p := pol("ns-a", "p", web, both...).
		in(peers(podPeer(map[string]string{"app": "client"})), tcp(80), named(corev1.ProtocolTCP, "http")).
		out(nil, named(corev1.ProtocolTCP, "http")).NetworkPolicy
	a := Compute(testInput(p)).Policies[Key{"ns-a", "p"}]
	in := testInput(p)
	in.Pods = in.Pods[:2] // only web and db: no client, no api
	b := Compute(in).Policies[Key{"ns-a", "p"}]
	for d, pair := range [][2][]Rule{{a.Ingress, b.Ingress}, {a.Egress, b.Egress}} {
		if len(pair[0]) != len(pair[1]) {
			t.Fatalf("direction %d: %d rules vs %d", d, len(pair[0]), len(pair[1]))
		}
		for i := range pair[0] {
			x, y := pair[0][i], pair[1][i]
			if x.AnyPeer != y.AnyPeer || x.AnyPort != y.AnyPort || x.HasNamed != y.HasNamed || len(x.Ports) != len(y.Ports) {
				t.Errorf("direction %d rule %d changes shape with the pods: %+v vs %+v", d, i, x, y)
			}
		}
	}
	if len(a.Ingress[0].Peers) == 0 || len(b.Ingress[0].Peers) != 0 {
		t.Errorf("peers %v / %v: want client's addresses, then none", a.Ingress[0].Peers, b.Ingress[0].Peers)
	}
	// web's own "http" stays (a pod may talk to itself); api's goes.
	if len(a.Egress[0].Named) != 4 || len(b.Egress[0].Named) != 2 {
		t.Errorf("egress named ports %v / %v: want web's and api's, then web's only", a.Egress[0].Named, b.Egress[0].Named)
	}
}

func TestComputeIsDeterministic(t *testing.T) {
	mk := func() *networkingv1.NetworkPolicy {
		return pol("ns-a", "p", web, both...).in(peers(nsPeer(all), blockPeer("10.0.0.0/8", "10.1.0.0/16")), tcp(443), tcp(80), udp(53)).NetworkPolicy
	}
	a := Compute(testInput(mk(), pol("ns-a", "q", all, ingressOnly...).NetworkPolicy))
	in := testInput(pol("ns-a", "q", all, ingressOnly...).NetworkPolicy, mk())
	// Reverse the pods too.
	for i, j := 0, len(in.Pods)-1; i < j; i, j = i+1, j-1 {
		in.Pods[i], in.Pods[j] = in.Pods[j], in.Pods[i]
	}
	b := Compute(in)
	ra, rb := a.Policies[Key{"ns-a", "p"}].Ingress[0], b.Policies[Key{"ns-a", "p"}].Ingress[0]
	if len(ra.Peers) != len(rb.Peers) || len(ra.Ports) != 3 {
		t.Fatalf("rules differ with input order: %+v vs %+v", ra, rb)
	}
	for i := range ra.Peers {
		if ra.Peers[i] != rb.Peers[i] {
			t.Errorf("peer %d: %v vs %v", i, ra.Peers[i], rb.Peers[i])
		}
	}
	if ra.Ports[0] != (PortRange{TCP, 80, 80}) || ra.Ports[2] != (PortRange{UDP, 53, 53}) {
		t.Errorf("ports not sorted by protocol then number: %v", ra.Ports)
	}
}

// Rules with the same peers share a PeerID (and so one kernel set), in any
// policy; different peers never do.
func TestComputePeerIDs(t *testing.T) {
	res := Compute(testInput(
		pol("ns-a", "one", web, ingressOnly...).in(peers(nsPeer(map[string]string{"team": "b"})), tcp(80)).
			in(peers(blockPeer("10.0.0.0/8", "10.1.0.0/16"))).NetworkPolicy,
		pol("ns-a", "two", all, ingressOnly...).in(peers(nsPeer(map[string]string{"team": "b"}))).
			in(peers(blockPeer("10.0.0.0/8", "10.1.0.0/16"))).
			in(peers(blockPeer("10.0.0.0/8", "10.2.0.0/16"))).
			in(peers(nsPeer(map[string]string{"team": "a"}))).NetworkPolicy,
	))
	one, two := res.Policies[Key{"ns-a", "one"}], res.Policies[Key{"ns-a", "two"}]
	if one.Ingress[0].PeerID != two.Ingress[0].PeerID || one.Ingress[1].PeerID != two.Ingress[1].PeerID {
		t.Errorf("same peers, different IDs: %q/%q, %q/%q", one.Ingress[0].PeerID, two.Ingress[0].PeerID, one.Ingress[1].PeerID, two.Ingress[1].PeerID)
	}
	ids := map[string]bool{}
	for _, r := range two.Ingress {
		ids[r.PeerID] = true
	}
	if len(ids) != 4 {
		t.Errorf("different peers share an ID: %v", ids)
	}
	// The ID is stable from one Compute to the next.
	again := Compute(testInput(pol("ns-a", "one", web, ingressOnly...).in(peers(blockPeer("10.0.0.0/8", "10.1.0.0/16"))).NetworkPolicy))
	if got := again.Policies[Key{"ns-a", "one"}].Ingress[0].PeerID; got != one.Ingress[1].PeerID {
		t.Errorf("PeerID changed between runs: %q vs %q", got, one.Ingress[1].PeerID)
	}
}
