package nft

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podroute/podroute/policy"
)

var (
	ingressOnly = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egressOnly  = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
)

// semanticsPods: web and db on this node, client, other and api on the
// remote node.
var semanticsPods = []labPod{
	{ns: "ns-a", name: "web", local: true, n: 10, labels: map[string]string{"app": "web"}, ports: []corev1.ContainerPort{
		{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP}}},
	{ns: "ns-a", name: "db", local: true, n: 11, labels: map[string]string{"app": "db"}},
	{ns: "ns-a", name: "client", n: 20, labels: map[string]string{"app": "client"}},
	{ns: "ns-b", name: "other", n: 21, labels: map[string]string{"app": "client"}},
	{ns: "ns-b", name: "api", n: 22, labels: map[string]string{"app": "api"}, ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 9090}}},
}

// semanticsPolicies:
//   - web-in: web accepts client (own namespace) on its named port "http"
//     (8080), and the remote /24 minus other on UDP 5353 (ipBlock except);
//   - web-out: web may reach api (team=b) on api's "http" (9090), and
//     other's address on TCP 7000;
//   - db-deny: db accepts nothing (default deny).
func semanticsPolicies() []*networkingv1.NetworkPolicy {
	webIn := netpol("ns-a", "web-in", map[string]string{"app": "web"}, ingressOnly...)
	webIn.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{
		{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "client"})},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("http"))}},
		{From: []networkingv1.NetworkPolicyPeer{blockPeer("10.0.1.0/24", "10.0.1.21/32"), blockPeer("fd00:1::/64", "fd00:1::21/128")},
			// SCTP: the rule must load (sctp dport); this kernel may not
			// have SCTP sockets to send traffic with (see TestKernelSCTP).
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, intstr.FromInt32(5353)), port(corev1.ProtocolSCTP, intstr.FromInt32(3868))}},
	}
	webOut := netpol("ns-a", "web-out", map[string]string{"app": "web"}, egressOnly...)
	webOut.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
		{To: []networkingv1.NetworkPolicyPeer{nsPodPeer(map[string]string{"team": "b"}, map[string]string{"app": "api"})},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("http"))}},
		{To: []networkingv1.NetworkPolicyPeer{blockPeer("10.0.1.21/32"), blockPeer("fd00:1::21/128")},
			Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromInt32(7000))}},
	}
	dbDeny := netpol("ns-a", "db-deny", map[string]string{"app": "db"}, ingressOnly...)
	return []*networkingv1.NetworkPolicy{webIn, webOut, dbDeny}
}

var semanticsFlows = []kflow{
	// Before any policy everything passes; these are the flows the
	// policies then change, plus the ones they must not.
	// web is isolated for egress too: its answers pass on conntrack state.
	{"client", "web", policy.TCP, 8080, true},  // ingress named port
	{"client", "web", policy.TCP, 9999, false}, // not a listed port
	{"other", "web", policy.TCP, 8080, false},  // not client of ns-a
	{"client", "web", policy.UDP, 5353, true},  // ipBlock; the UDP answer passes too
	{"other", "web", policy.UDP, 5353, false},  // ipBlock except
	{"web", "api", policy.TCP, 9090, true},     // egress named port, per peer pod
	{"web", "api", policy.TCP, 8080, false},    // web's "http", not api's
	{"web", "other", policy.TCP, 7000, true},   // egress ipBlock
	{"web", "client", policy.TCP, 7000, false}, // egress default deny
	{"web", "db", policy.TCP, 80, false},       // same node: web's egress denies
	{"db", "web", policy.TCP, 8080, false},     // same node: web's ingress denies
	{"db", "client", policy.TCP, 80, true},     // db's egress is not isolated
	{"client", "db", policy.TCP, 80, false},    // default deny ingress
	{"client", "db", policy.UDP, 5353, false},  // ... for UDP too
	{"node", "db", policy.TCP, 80, true},       // the node reaches its pods (kubelet probes)
	{"node", "web", policy.TCP, 9999, true},
	{"web", "node", policy.TCP, 80, true}, // pods reach their node whatever their egress
}

func TestKernelEnforcesPolicies(t *testing.T) {
	l := newLab(t, semanticsPods)
	allOpen := []kflow{
		{"client", "web", policy.TCP, 9999, true},
		{"other", "web", policy.UDP, 5353, true},
		{"web", "client", policy.TCP, 7000, true},
		{"client", "db", policy.TCP, 80, true},
	}
	l.check(semanticsPods, allOpen)

	st := l.sync(input(semanticsPods, semanticsPolicies()...))
	t.Logf("first sync: %d operations, %+v, %v", st.Ops, st.Counts, st.Took)
	l.check(semanticsPods, semanticsFlows)

	// Removing every policy opens everything again and leaves an empty
	// skeleton: no pod or policy chain, no set but the four maps.
	st = l.sync(input(semanticsPods))
	l.check(semanticsPods, allOpen)
	if st.Counts.Chains != 2 || st.Counts.Sets != 4 || st.Counts.Elements != 0 {
		t.Errorf("after removing every policy: %+v, want 2 base chains, 4 empty maps", st.Counts)
	}
	kernel, err := l.prog.Read(t.Context())
	must(t, err)
	if len(kernel.Chains) != 2 || len(kernel.Sets) != 4 {
		t.Errorf("kernel still holds chains %v and sets %v", keys(kernel.Chains), keys(kernel.Sets))
	}
}

func keys[V any](m map[string]V) []string { return sortedKeys(m) }

// Rules are keyed by address, so a pod sending with another pod's source
// address would get that pod's rights. The egress chain drops a packet
// from a pod's veth whose source is not routed back through that veth.
// Here db admits only web; client sends UDP datagrams to db, once as
// itself and once claiming web's address (which it has put on its own
// interface): neither may arrive, while web's own get through.
func TestKernelDropsSpoofedSources(t *testing.T) {
	pods := []labPod{
		{ns: "a", name: "web", local: true, n: 1, labels: map[string]string{"app": "web"}},
		{ns: "a", name: "client", local: true, n: 2, labels: map[string]string{"app": "client"}},
		{ns: "a", name: "db", local: true, n: 3, labels: map[string]string{"app": "db"}},
	}
	l := newLab(t, pods)
	only := netpol("a", "db-from-web", map[string]string{"app": "db"}, networkingv1.PolicyTypeIngress)
	only.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "web"})}}}
	l.sync(input(pods, only))

	const port = 6001
	type got struct{ src netip.Addr }
	recv := make(chan got, 64)
	var pc net.PacketConn
	must(t, l.pods["db"].Do(func() (err error) {
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
		return err
	}))
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			recv <- got{from.(*net.UDPAddr).AddrPort().Addr().Unmap()}
		}
	}()
	web, client, db := pods[0], pods[1], pods[2]
	for _, fam := range []int{4, 6} {
		bits := 32
		if fam == 6 {
			bits = 128
		}
		// client takes web's address too, so its kernel lets it send with
		// that source.
		must(t, l.pods["client"].AddAddr("eth0", netip.PrefixFrom(web.addr(fam), bits).String()))
		send := func(ns string, src netip.Addr) {
			must(t, l.pods[ns].Do(func() error {
				conn, err := net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(db.addr(fam), port)))
				if err != nil {
					return err
				}
				defer conn.Close()
				_, err = conn.Write([]byte("x"))
				return err
			}))
		}
		send("client", client.addr(fam))
		send("client", web.addr(fam)) // spoofed
		send("web", web.addr(fam))
		deadline := time.After(2 * time.Second)
		var arrived []netip.Addr
	wait:
		for {
			select {
			case g := <-recv:
				arrived = append(arrived, g.src)
			case <-deadline:
				break wait
			}
		}
		if len(arrived) != 1 || arrived[0] != web.addr(fam) {
			t.Errorf("IPv%d: db received datagrams from %v, want exactly one, web's own", fam, arrived)
		}
	}
}
