package policy

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The test cluster: node n1 is "this node".
//
//	ns-a (team=a): web (n1, ports http=8080/TCP dns=5353/UDP diameter=3868/SCTP),
//	               db (n1), client (n2), host (n1, hostNetwork, app=web),
//	               gone (n2, Succeeded, app=client)
//	ns-b (team=b): other (n2, app=client), api (n2, app=api, http=9090/TCP)
//
// Every pod is dual-stack: 10.0.<node>.<n> and fd00:<node>::<n>.
const thisNode = "n1"

type podSpec struct {
	ns, name, node string
	n              int
	labels         map[string]string
	ports          []corev1.ContainerPort
	hostNet        bool
	phase          corev1.PodPhase
}

var testPods = []podSpec{
	{ns: "ns-a", name: "web", node: "n1", n: 10, labels: map[string]string{"app": "web"}, ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080},
		{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP},
		{Name: "diameter", ContainerPort: 3868, Protocol: corev1.ProtocolSCTP},
	}},
	{ns: "ns-a", name: "db", node: "n1", n: 11, labels: map[string]string{"app": "db"}},
	{ns: "ns-a", name: "client", node: "n2", n: 20, labels: map[string]string{"app": "client"}},
	{ns: "ns-a", name: "host", node: "n1", n: 12, labels: map[string]string{"app": "web"}, hostNet: true},
	{ns: "ns-a", name: "gone", node: "n2", n: 99, labels: map[string]string{"app": "client"}, phase: corev1.PodSucceeded},
	{ns: "ns-b", name: "other", node: "n2", n: 21, labels: map[string]string{"app": "client"}},
	{ns: "ns-b", name: "api", node: "n2", n: 22, labels: map[string]string{"app": "api"}, ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 9090},
	}},
}

func nodeIndex(node string) int {
	if node == "n1" {
		return 0
	}
	return 1
}

// podAddr is the test pod's address in family 4 or 6.
func podAddr(name string, fam int) netip.Addr {
	for _, p := range testPods {
		if p.name == name {
			return famAddr(fam, nodeIndex(p.node), p.n)
		}
	}
	panic("no pod " + name)
}

func famAddr(fam, node, n int) netip.Addr {
	if fam == 4 {
		return netip.AddrFrom4([4]byte{10, 0, byte(node), byte(n)})
	}
	return netip.MustParseAddr(fmt.Sprintf("fd00:%d::%d", node, n))
}

func makePod(s podSpec) *corev1.Pod {
	phase := s.phase
	if phase == "" {
		phase = corev1.PodRunning
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.ns, Name: s.name, Labels: s.labels},
		Spec: corev1.PodSpec{NodeName: s.node, HostNetwork: s.hostNet,
			Containers: []corev1.Container{{Name: "c", Ports: s.ports}}},
		Status: corev1.PodStatus{Phase: phase},
	}
	for _, fam := range []int{4, 6} {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: famAddr(fam, nodeIndex(s.node), s.n).String()})
	}
	p.Status.PodIP = p.Status.PodIPs[0].IP
	return p
}

func testInput(pols ...*networkingv1.NetworkPolicy) Input {
	in := Input{NodeName: thisNode, Policies: pols}
	for _, s := range testPods {
		in.Pods = append(in.Pods, makePod(s))
	}
	for _, ns := range []struct{ name, team string }{{"ns-a", "a"}, {"ns-b", "b"}} {
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.name, Labels: map[string]string{"team": ns.team}}})
	}
	return in
}

// Policy builders, so cases read like the YAML they stand for.

func netpol(ns, name string, sel map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: sel},
			PolicyTypes: types,
		},
	}
}

func (b *builderPol) in(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) *builderPol {
	b.Spec.Ingress = append(b.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers, Ports: ports})
	return b
}

func (b *builderPol) out(peers []networkingv1.NetworkPolicyPeer, ports ...networkingv1.NetworkPolicyPort) *builderPol {
	b.Spec.Egress = append(b.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers, Ports: ports})
	return b
}

type builderPol struct{ *networkingv1.NetworkPolicy }

func pol(ns, name string, sel map[string]string, types ...networkingv1.PolicyType) *builderPol {
	return &builderPol{netpol(ns, name, sel, types...)}
}

func peers(ps ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyPeer { return ps }

func podPeer(sel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: sel}}
}

func nsPeer(sel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: sel}}
}

func nsPodPeer(nsSel, podSel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: nsSel},
		PodSelector:       &metav1.LabelSelector{MatchLabels: podSel},
	}
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func tcp(port int32) networkingv1.NetworkPolicyPort { return protoPort(corev1.ProtocolTCP, port) }
func udp(port int32) networkingv1.NetworkPolicyPort { return protoPort(corev1.ProtocolUDP, port) }
func sctp(port int32) networkingv1.NetworkPolicyPort {
	return protoPort(corev1.ProtocolSCTP, port)
}

func protoPort(proto corev1.Protocol, port int32) networkingv1.NetworkPolicyPort {
	p := intstr.FromInt32(port)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func portRange(port, end int32) networkingv1.NetworkPolicyPort {
	p := tcp(port)
	p.EndPort = &end
	return p
}

func named(proto corev1.Protocol, name string) networkingv1.NetworkPolicyPort {
	p := intstr.FromString(name)
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func allOf(proto corev1.Protocol) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto}
}
