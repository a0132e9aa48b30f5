package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/cluster/lbipam"
	"github.com/podroute/podroute/internal/testutil"
)

// The Service ranges of TestServices (documentation and test ranges; they
// exist only inside the lab).
const (
	svcCIDR4 = "10.96.0.0/16"     // kube-apiserver's ClusterIP range, advertised as one prefix
	svcCIDR6 = "fd00:10:96::/112" // its IPv6 range, for dual-stack Services
	extCIDR  = "192.0.2.0/24"     // external IPs, one /32 each
	lbCIDR4  = "198.51.100.0/24"  // LoadBalancer addresses, one /32 each
	lbCIDR6  = "2001:db8:1b::/64"
	lbPool4  = "198.51.100.0/28"   // pool "lab"
	lbPool6  = "2001:db8:1b::/124" // pool "lab"
	smallLB  = "198.51.100.64/31"  // pool "small": two addresses
	svcNS    = "default"
)

// TestServices runs Service advertisement and LoadBalancer allocation
// against a real kube-apiserver and FRR: three nodes running podrouted, all
// peering with the FRR router (one BGPPeer), Services and EndpointSlices
// created by hand (no kubelets, no controller manager). It checks which
// prefixes FRR holds with which next hops (ECMP in zebra's RIB), how fast a
// Local Service's /32 leaves a node whose last endpoint there goes
// not-ready, and the allocator's guarantees through a restart of every
// podrouted.
func TestServices(t *testing.T) {
	skipUnlessPossible(t)
	begin := time.Now()
	l := newLabWith(t, labOptions{serviceCIDRs: []string{svcCIDR4, svcCIDR6}})
	s := &svcLab{lab: l}
	if !t.Run("manifests", l.testManifests) {
		t.FailNow()
	}
	if !t.Run("setup", s.testSetup) {
		t.FailNow()
	}
	t.Run("off_without_ranges", s.testOff)
	if !t.Run("configure", s.testConfigure) {
		t.FailNow()
	}
	t.Run("local_policy", s.testLocal)
	t.Run("opt_out_and_out_of_range", s.testOptOutAndRange)
	t.Run("dual_stack", s.testDualStack)
	t.Run("allocator", s.testAllocator)
	t.Run("restart_in_the_middle", s.testRestart)
	t.Run("bad_input", s.testBadInput)

	// podrouted never hit a permission it lacks.
	forbidden := regexp.MustCompile(`(?im)^.*forbidden.*$`)
	for _, n := range l.nodes {
		b, err := os.ReadFile(n.logPath)
		must(t, err)
		for _, m := range forbidden.FindAll(b, -1) {
			t.Errorf("podrouted on %s was refused something by RBAC: %s", n.name, m)
		}
	}
	t.Logf("all Service scenarios took %v", time.Since(begin).Round(time.Millisecond))
}

type svcLab struct {
	*lab
}

// setup: the RBAC allows what the Service work needs and no more;
// podrouted on three nodes, every node peering with FRR.
func (s *svcLab) testSetup(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	tok, err := s.cp.ServiceAccountToken(ctx, podrouteNS, podrouteSA, 2*time.Hour)
	must(t, err)
	s.saToken = tok
	s.saKubeconfig, err = s.cp.Kubeconfig("podrouted", tok)
	must(t, err)
	sa, err := s.cp.Clientset(tok)
	must(t, err)
	core := func(verb, resource, sub, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	lease := func(verb, ns, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Namespace: ns, Name: name}
	}
	eps := func(verb string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: svcNS}
	}
	for _, c := range []struct {
		allowed bool
		attr    authorizationv1.ResourceAttributes
	}{
		{true, core("list", "services", "", "", "")},
		{true, core("watch", "services", "", "", "")},
		{true, core("patch", "services", "status", svcNS, "web")},
		{true, core("patch", "services", "", svcNS, "web")}, // the cleanup finalizer
		{true, eps("list")},
		{true, eps("watch")},
		{true, lease("create", podrouteNS, "")},
		{true, lease("get", podrouteNS, lbipam.DefaultLeaseName)},
		{true, lease("update", podrouteNS, lbipam.DefaultLeaseName)},
		{false, core("update", "services", "", svcNS, "web")},
		{false, core("delete", "services", "", svcNS, "web")},
		{false, core("create", "services", "", svcNS, "")},
		{false, core("update", "services", "status", svcNS, "web")},
		{false, eps("create")},
		{false, eps("update")},
		{false, lease("update", podrouteNS, "kube-scheduler")},
		{false, lease("create", "kube-system", "")},
		{false, lease("delete", podrouteNS, lbipam.DefaultLeaseName)},
	} {
		attr := c.attr
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr}}, metav1.CreateOptions{})
		must(t, err)
		if r.Status.Allowed != c.allowed {
			t.Errorf("serviceaccount may %s %s.%s/%s %s/%s: %v, want %v", attr.Verb, attr.Resource, attr.Group, attr.Subresource, attr.Namespace, attr.Name, r.Status.Allowed, c.allowed)
		}
	}

	for _, n := range s.nodes {
		s.startPodrouted(n)
		must(t, s.createNode(ctx, n, nil))
	}
	if _, err := s.dyn.Resource(cluster.BGPPeerResource).Create(ctx, bgpPeer("tor", "", "9s"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating BGPPeer tor: %v", err)
	}
	took := testutil.Eventually(t, 90*time.Second, "every node in the mesh and Established with FRR", func() error {
		var errs []error
		for _, n := range s.nodes {
			var addrs []string
			for _, o := range s.others(n) {
				addrs = append(addrs, o.addr)
			}
			errs = append(errs, s.wantPeers(n, append(addrs, frrAddr)...), s.frrHas(n.cidr, n.addr))
		}
		return errors.Join(errs...)
	})
	t.Logf("3 nodes meshed and peering with FRR, their pod CIDRs in FRR, %v after the Nodes were created", took.Round(time.Millisecond))
}

// Nothing configured: a LoadBalancer Service and an external IP stay
// unadvertised and unallocated, and no Lease is taken.
func (s *svcLab) testOff(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	s.createService(ctx, t, lbService("early", nil))
	ext := clusterIPService("ext")
	ext.Spec.ExternalIPs = []string{"192.0.2.10"}
	s.createService(ctx, t, ext)
	time.Sleep(3 * time.Second)
	rib, err := s.frr.RIB("ipv4")
	must(t, err)
	for p := range rib {
		if !strings.HasPrefix(p, "10.244.") {
			t.Errorf("FRR has %s before any service range is configured", p)
		}
	}
	if got := s.ingress(ctx, t, "early"); len(got) != 0 {
		t.Errorf("Service early got %v without pools", got)
	}
	if _, err := s.admin.CoordinationV1().Leases(podrouteNS).Get(ctx, lbipam.DefaultLeaseName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Lease %s without service configuration: %v, want NotFound", lbipam.DefaultLeaseName, err)
	}
	lines, err := s.serviceLines(s.node(1))
	must(t, err)
	if len(lines) != 0 {
		t.Errorf("podroute routes lists services without configuration: %v", lines)
	}
	t.Logf("no service range: FRR holds only the 3 pod CIDRs, no address allocated, no Lease, no service lines")
}

// BGPConfiguration gets ranges and pools: the ClusterIP range from every
// node with its community, the waiting LoadBalancer Service gets the
// pool's first address, advertised by every node (policy Cluster), as is
// the external IP.
func (s *svcLab) testConfigure(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	begin := time.Now()
	if _, err := s.dyn.Resource(cluster.BGPConfigurationResource).Create(ctx, bgpConfiguration(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating BGPConfiguration default: %v", err)
	}
	all := s.nodeAddrs(s.nodes...)
	took := testutil.Eventually(t, 60*time.Second, "FRR has the ClusterIP range via every node (ECMP)", func() error {
		return s.frrRoute(svcCIDR4, all...)
	})
	t.Logf("BGPConfiguration created: %s in FRR's RIB via %v (ECMP) after %v", svcCIDR4, all, took.Round(time.Millisecond))
	comm, large, err := s.frrCommunities("10.96.0.0/16")
	must(t, err)
	if comm != "64512:100" || large != "" {
		t.Errorf("%s communities in FRR %q, large %q; want 64512:100", svcCIDR4, comm, large)
	}
	testutil.Eventually(t, 60*time.Second, "Service early allocated 198.51.100.0", func() error {
		return wantIngress(s.ingress(ctx, t, "early"), "198.51.100.0")
	})
	took = testutil.Eventually(t, 30*time.Second, "198.51.100.0/32 and 192.0.2.10/32 via every node", func() error {
		return errors.Join(s.frrRoute("198.51.100.0/32", all...), s.frrRoute("192.0.2.10/32", all...))
	})
	comm, large, err = s.frrCommunities("198.51.100.0/32")
	must(t, err)
	if large != "64512:2:1" || comm != "" {
		t.Errorf("198.51.100.0/32 large communities in FRR %q (standard %q), want 64512:2:1", large, comm)
	}
	lease, err := s.admin.CoordinationV1().Leases(podrouteNS).Get(ctx, lbipam.DefaultLeaseName, metav1.GetOptions{})
	must(t, err)
	ev := s.waitEvent(ctx, t, "Service", "early", "AddressAllocated")
	t.Logf("LoadBalancer Service early: %s (by %s, leader %s); 198.51.100.0/32 and external IP 192.0.2.10/32 in FRR via all 3 nodes %v after the configuration",
		ev.Message, ev.Source.Host, deref(lease.Spec.HolderIdentity), time.Since(begin).Round(time.Millisecond))
	for _, n := range s.nodes {
		lines, err := s.serviceLines(n)
		must(t, err)
		if l := lines["198.51.100.0/32 default/early"]; l == nil || !l.GetAdvertised() || l.GetReason() != string(cluster.ReasonPolicyCluster) {
			t.Errorf("%s: podroute routes says %v for default/early", n.name, l)
		}
	}
}

// externalTrafficPolicy Local: only nodes with a ready endpoint advertise;
// a node whose last endpoint goes not-ready withdraws within a second,
// and advertises again when one is ready.
func (s *svcLab) testLocal(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	n1, n2, n3 := s.node(1), s.node(2), s.node(3)
	svc := lbService("web-local", nil)
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	s.createService(ctx, t, svc)
	es := endpointSlice("web-local", map[string]bool{n1.name: true, n2.name: false})
	if _, err := s.admin.DiscoveryV1().EndpointSlices(svcNS).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var addr string
	testutil.Eventually(t, 30*time.Second, "web-local allocated", func() error {
		got := s.ingress(ctx, t, "web-local")
		if len(got) != 1 {
			return fmt.Errorf("ingress %v", got)
		}
		addr = got[0]
		return nil
	})
	host := addr + "/32"
	took := testutil.Eventually(t, 30*time.Second, host+" via node-1 only", func() error { return s.frrRoute(host, n1.addr) })
	t.Logf("Local Service web-local %s, ready endpoint on node-1, not-ready one on node-2: FRR has it via node-1 only (%v)", addr, took.Round(time.Millisecond))
	lines, err := s.serviceLines(n3)
	must(t, err)
	if l := lines[host+" default/web-local"]; l == nil || l.GetAdvertised() || l.GetReason() != string(cluster.ReasonNoLocalEndpoint) {
		t.Errorf("node-3 says %v for web-local, want not advertised: %s", l, cluster.ReasonNoLocalEndpoint)
	}

	set := func(ready map[string]bool) time.Time {
		t.Helper()
		cur, err := s.admin.DiscoveryV1().EndpointSlices(svcNS).Get(ctx, es.Name, metav1.GetOptions{})
		must(t, err)
		cur.Endpoints = endpointSlice("web-local", ready).Endpoints
		if _, err := s.admin.DiscoveryV1().EndpointSlices(svcNS).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return time.Now()
	}
	set(map[string]bool{n1.name: true, n2.name: true})
	took = testutil.Eventually(t, 10*time.Second, host+" via node-1 and node-2", func() error { return s.frrRoute(host, n1.addr, n2.addr) })
	t.Logf("node-2's endpoint ready: FRR has %s via node-1 and node-2 (ECMP) %v later", host, took.Round(time.Millisecond))

	// node-1's last endpoint goes not-ready and back, five times: how
	// long until FRR's RIB (zebra, show ip route json) drops node-1 as a
	// next hop, and takes it back.
	var withdraw, back []time.Duration
	for range 5 {
		at := set(map[string]bool{n1.name: false, n2.name: true})
		_, ok := testutil.Poll(20*time.Millisecond, 5*time.Second, func() bool { return s.frrRoute(host, n2.addr) == nil })
		if !ok {
			t.Fatalf("%s still via node-1 5s after its endpoint went not-ready: %v", host, s.frrRoute(host, n2.addr))
		}
		withdraw = append(withdraw, time.Since(at))
		at = set(map[string]bool{n1.name: true, n2.name: true})
		_, ok = testutil.Poll(20*time.Millisecond, 5*time.Second, func() bool { return s.frrRoute(host, n1.addr, n2.addr) == nil })
		if !ok {
			t.Fatalf("%s not back via node-1 5s after its endpoint was ready again: %v", host, s.frrRoute(host, n1.addr, n2.addr))
		}
		back = append(back, time.Since(at))
	}
	slices.Sort(withdraw)
	slices.Sort(back)
	t.Logf("node-1's last endpoint not-ready -> node-1 gone from %s's next hops in FRR's RIB: median %v, max %v (5 times); ready again -> back: median %v, max %v",
		host, withdraw[2].Round(time.Millisecond), withdraw[4].Round(time.Millisecond), back[2].Round(time.Millisecond), back[4].Round(time.Millisecond))
	if withdraw[4] > time.Second {
		t.Errorf("withdrawal took up to %v, want within a second", withdraw[4])
	}

	// The last endpoint anywhere goes: nobody advertises it.
	set(map[string]bool{n1.name: false, n2.name: false})
	took = testutil.Eventually(t, 10*time.Second, host+" gone from FRR", func() error { return s.frrRoute(host) })
	t.Logf("no ready endpoint anywhere: %s gone from FRR %v later", host, took.Round(time.Millisecond))
	set(map[string]bool{n3.name: true})
	took = testutil.Eventually(t, 10*time.Second, host+" via node-3 only", func() error { return s.frrRoute(host, n3.addr) })
	t.Logf("a ready endpoint on node-3 only: %s via node-3 %v later", host, took.Round(time.Millisecond))
}

// podroute.io/advertise: "false" keeps an allocated address out of BGP;
// an external IP outside every range is never advertised; podroute
// routes says why.
func (s *svcLab) testOptOutAndRange(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	s.createService(ctx, t, lbService("quiet", map[string]string{cluster.AnnotationAdvertise: "false"}))
	out := clusterIPService("outside")
	out.Spec.ExternalIPs = []string{"203.0.113.5"}
	s.createService(ctx, t, out)
	var addr string
	testutil.Eventually(t, 30*time.Second, "quiet allocated", func() error {
		got := s.ingress(ctx, t, "quiet")
		if len(got) != 1 {
			return fmt.Errorf("ingress %v", got)
		}
		addr = got[0]
		return nil
	})
	testutil.Eventually(t, 30*time.Second, "every node explains both", func() error {
		for _, n := range s.nodes {
			lines, err := s.serviceLines(n)
			if err != nil {
				return err
			}
			if l := lines[addr+"/32 default/quiet"]; l == nil || l.GetAdvertised() || l.GetReason() != string(cluster.ReasonOptedOut) {
				return fmt.Errorf("%s: %v for quiet", n.name, l)
			}
			if l := lines["203.0.113.5/32 default/outside"]; l == nil || l.GetAdvertised() || l.GetReason() != string(cluster.ReasonOutOfRange) {
				return fmt.Errorf("%s: %v for outside", n.name, l)
			}
		}
		return nil
	})
	time.Sleep(time.Second)
	must(t, errors.Join(s.frrRoute(addr+"/32"), s.frrRoute("203.0.113.5/32")))
	out2, err := s.podrouteRoutes(s.node(1))
	must(t, err)
	t.Logf("opted-out %s and out-of-range 203.0.113.5 not in FRR; podroute routes on node-1:\n%s", addr, out2)
}

// A dual-stack LoadBalancer Service gets one address per family; every
// node advertises all four of its addresses (two ClusterIPs in aggregate
// ranges, the IPv4 and IPv6 ingress addresses as /32 and /128). The lab's
// sessions are IPv4 only, so FRR sees the IPv4 ones.
func (s *svcLab) testDualStack(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	svc := lbService("dual", nil)
	require := corev1.IPFamilyPolicyRequireDualStack
	svc.Spec.IPFamilyPolicy = &require
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	s.createService(ctx, t, svc)
	var ing []string
	testutil.Eventually(t, 30*time.Second, "dual gets an IPv4 and an IPv6 address", func() error {
		ing = s.ingress(ctx, t, "dual")
		if len(ing) != 2 || strings.Contains(ing[0], ":") || !strings.Contains(ing[1], ":") {
			return fmt.Errorf("ingress %v", ing)
		}
		return nil
	})
	got, err := s.admin.CoreV1().Services(svcNS).Get(ctx, "dual", metav1.GetOptions{})
	must(t, err)
	testutil.Eventually(t, 30*time.Second, "every node advertises all four addresses", func() error {
		for _, n := range s.nodes {
			lines, err := s.serviceLines(n)
			if err != nil {
				return err
			}
			for _, a := range append(slices.Clone(got.Spec.ClusterIPs), ing...) {
				bits := "/32"
				if strings.Contains(a, ":") {
					bits = "/128"
				}
				if l := lines[a+bits+" default/dual"]; l == nil || !l.GetAdvertised() {
					return fmt.Errorf("%s: %s%s: %v", n.name, a, bits, l)
				}
			}
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, ing[0]+"/32 in FRR via every node", func() error {
		return s.frrRoute(ing[0]+"/32", s.nodeAddrs(s.nodes...)...)
	})
	t.Logf("dual-stack Service: clusterIPs %v and ingress %v advertised by all 3 nodes (IPv4 in FRR via all of them)", got.Spec.ClusterIPs, ing)
}

// Allocation against the real API server: exhaustion with an Event naming
// the pool, release on delete and on a type change, two Services asking
// for one address.
func (s *svcLab) testAllocator(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	inSmall := map[string]string{cluster.AnnotationAddressPool: "small"}
	for _, name := range []string{"small-a", "small-b", "small-c"} {
		s.createService(ctx, t, lbService(name, inSmall))
		time.Sleep(1100 * time.Millisecond) // creationTimestamp has whole seconds
	}
	testutil.Eventually(t, 30*time.Second, "small-a and small-b allocated", func() error {
		return errors.Join(wantIngress(s.ingress(ctx, t, "small-a"), "198.51.100.64"), wantIngress(s.ingress(ctx, t, "small-b"), "198.51.100.65"))
	})
	ev := s.waitEvent(ctx, t, "Service", "small-c", "PoolExhausted")
	t.Logf("pool small exhausted: %s %s on small-c: %s", ev.Type, ev.Reason, ev.Message)
	if ev.Type != corev1.EventTypeWarning || !strings.Contains(ev.Message, "pool small 198.51.100.64/31 (2 of 2 in use)") {
		t.Errorf("exhaustion event %s %q does not name the pool and its use", ev.Type, ev.Message)
	}
	all := s.nodeAddrs(s.nodes...)
	must(t, s.frrRoute("198.51.100.64/32", all...))

	// Release on delete: small-c gets small-a's address; FRR keeps it
	// (now for small-c).
	begin := time.Now()
	must(t, s.admin.CoreV1().Services(svcNS).Delete(ctx, "small-a", metav1.DeleteOptions{}))
	testutil.Eventually(t, 30*time.Second, "small-c gets 198.51.100.64", func() error {
		return wantIngress(s.ingress(ctx, t, "small-c"), "198.51.100.64")
	})
	testutil.Eventually(t, 30*time.Second, "198.51.100.64/32 via every node", func() error { return s.frrRoute("198.51.100.64/32", all...) })
	t.Logf("small-a deleted: small-c got 198.51.100.64 %v later, in FRR via every node", time.Since(begin).Round(time.Millisecond))

	// Release on a type change: kube-apiserver clears the status, the
	// address leaves FRR, and a new Service can have it.
	cur, err := s.admin.CoreV1().Services(svcNS).Get(ctx, "small-b", metav1.GetOptions{})
	must(t, err)
	cur.Spec.Type = corev1.ServiceTypeClusterIP
	cur.Spec.LoadBalancerClass = nil
	cur.Spec.AllocateLoadBalancerNodePorts = nil
	cur.Spec.ExternalTrafficPolicy = ""
	for i := range cur.Spec.Ports {
		cur.Spec.Ports[i].NodePort = 0
	}
	_, err = s.admin.CoreV1().Services(svcNS).Update(ctx, cur, metav1.UpdateOptions{})
	must(t, err)
	testutil.Eventually(t, 30*time.Second, "198.51.100.65/32 withdrawn", func() error { return s.frrRoute("198.51.100.65/32") })
	s.createService(ctx, t, lbService("small-d", inSmall))
	testutil.Eventually(t, 30*time.Second, "small-d gets 198.51.100.65", func() error {
		return wantIngress(s.ingress(ctx, t, "small-d"), "198.51.100.65")
	})
	t.Logf("small-b became a ClusterIP Service: 198.51.100.65 withdrawn from FRR and handed to small-d")

	// Two Services ask for one address.
	want := map[string]string{cluster.AnnotationLoadBalancerIPs: "198.51.100.10"}
	s.createService(ctx, t, lbService("want-a", want))
	testutil.Eventually(t, 30*time.Second, "want-a gets 198.51.100.10", func() error {
		return wantIngress(s.ingress(ctx, t, "want-a"), "198.51.100.10")
	})
	s.createService(ctx, t, lbService("want-b", want))
	ev = s.waitEvent(ctx, t, "Service", "want-b", "AddressInUse")
	if !strings.Contains(ev.Message, "already allocated to Service default/want-a") {
		t.Errorf("AddressInUse event %q does not name the holder", ev.Message)
	}
	if got := s.ingress(ctx, t, "want-b"); len(got) != 0 {
		t.Errorf("want-b has %v while want-a holds what it asks for", got)
	}
	t.Logf("two Services ask for 198.51.100.10: want-a has it; want-b: %s %s", ev.Reason, ev.Message)
	must(t, s.admin.CoreV1().Services(svcNS).Delete(ctx, "want-a", metav1.DeleteOptions{}))
	testutil.Eventually(t, 30*time.Second, "want-b gets 198.51.100.10", func() error {
		return wantIngress(s.ingress(ctx, t, "want-b"), "198.51.100.10")
	})
	testutil.Eventually(t, 30*time.Second, "198.51.100.10/32 via every node", func() error { return s.frrRoute("198.51.100.10/32", all...) })
	s.unique(ctx, t)
}

// Every podrouted stopped (SIGTERM: graceful restart keeps routes), new
// LoadBalancer Services created while none runs, every podrouted started
// again: the new leader derives the allocations from the API server alone,
// keeps every existing one and hands out nothing twice; routes to the
// Cluster Services stay in FRR throughout.
func (s *svcLab) testRestart(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	before := s.unique(ctx, t)
	ribBefore, err := s.frr.RIB("ipv4")
	must(t, err)
	lease, err := s.admin.CoordinationV1().Leases(podrouteNS).Get(ctx, lbipam.DefaultLeaseName, metav1.GetOptions{})
	must(t, err)
	oldLeader := deref(lease.Spec.HolderIdentity)
	for _, n := range s.nodes {
		must(t, n.proc.Stop(syscall.SIGTERM, 15*time.Second))
	}
	for i := range 3 {
		s.createService(ctx, t, lbService(fmt.Sprintf("during-%d", i), nil))
	}
	time.Sleep(2 * time.Second)
	if err := s.frrRoute("198.51.100.0/32", s.nodeAddrs(s.nodes...)...); err != nil {
		t.Errorf("while every podrouted is down (graceful restart): %v", err)
	}
	begin := time.Now()
	for _, n := range s.nodes {
		s.startPodrouted(n)
	}
	testutil.Eventually(t, 90*time.Second, "the Services created meanwhile are allocated", func() error {
		got := s.allIngress(ctx, t)
		for i := range 3 {
			if len(got[fmt.Sprintf("during-%d", i)]) != 1 {
				return fmt.Errorf("during-%d: %v", i, got[fmt.Sprintf("during-%d", i)])
			}
		}
		return nil
	})
	lease, err = s.admin.CoordinationV1().Leases(podrouteNS).Get(ctx, lbipam.DefaultLeaseName, metav1.GetOptions{})
	must(t, err)
	after := s.unique(ctx, t)
	for svc, as := range before {
		if !slices.Equal(after[svc], as) {
			t.Errorf("%s had %v before the restart, %v after", svc, as, after[svc])
		}
	}
	t.Logf("every podrouted restarted (leader %s before, %s after): the 3 Services created meanwhile allocated %v later (%v, %v, %v); %d existing allocations unchanged, no address twice",
		oldLeader, deref(lease.Spec.HolderIdentity), time.Since(begin).Round(time.Millisecond),
		after["during-0"], after["during-1"], after["during-2"], len(before))
	// Every route FRR had before the restart comes back via the same
	// nodes, and the new Services via every node.
	all := s.nodeAddrs(s.nodes...)
	testutil.Eventually(t, 60*time.Second, "FRR has every route of before the restart, and the new Services, via the same nodes", func() error {
		ribAfter, err := s.frr.RIB("ipv4")
		if err != nil {
			return err
		}
		errs := []error{ribChanges(ribBefore, ribAfter)}
		for i := range 3 {
			for _, a := range after[fmt.Sprintf("during-%d", i)] {
				errs = append(errs, s.frrRoute(a+"/32", all...))
			}
		}
		return errors.Join(errs...)
	})
}

// ribChanges names every prefix of before whose next hops differ in
// after (in any order); prefixes only in after are not changes.
func ribChanges(before, after map[string][]string) error {
	var errs []error
	for p, hops := range before {
		if !sameSet(hops, after[p]) {
			errs = append(errs, fmt.Errorf("FRR's %s changed from %v to %v", p, hops, after[p]))
		}
	}
	return errors.Join(errs...)
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Bad input: a service range overlapping a pod CIDR and a Service with a
// bad annotation each get a Warning Event; nothing else changes.
func (s *svcLab) testBadInput(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	before, err := s.frr.RIB("ipv4")
	must(t, err)
	patch := `{"spec":{"serviceExternalIPs":[{"cidr":"192.0.2.0/24"},{"cidr":"10.244.2.0/24"}]}}`
	if _, err := s.dyn.Resource(cluster.BGPConfigurationResource).Patch(ctx, "default", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := s.waitEvent(ctx, t, "BGPConfiguration", "default", "ServiceRangeOverlapsPodPool")
	t.Logf("BGPConfiguration with a range over a pod CIDR: %s %s: %s", ev.Type, ev.Reason, ev.Message)
	s.createService(ctx, t, lbService("odd", map[string]string{cluster.AnnotationAdvertise: "maybe"}))
	ev = s.waitEvent(ctx, t, "Service", "odd", "InvalidService")
	t.Logf("Service with a bad annotation: %s %s from %s: %s", ev.Type, ev.Reason, ev.Source.Host, ev.Message)
	testutil.Eventually(t, 30*time.Second, "odd allocated and advertised anyway (the bad annotation is ignored)", func() error {
		got := s.ingress(ctx, t, "odd")
		if len(got) != 1 {
			return fmt.Errorf("ingress %v", got)
		}
		return s.frrRoute(got[0]+"/32", s.nodeAddrs(s.nodes...)...)
	})
	after, err := s.frr.RIB("ipv4")
	must(t, err)
	if err := ribChanges(before, after); err != nil {
		t.Errorf("after bad input: %v", err)
	}
	for p := range after {
		if strings.HasPrefix(p, "10.244.2.") && p != s.node(2).cidr {
			t.Errorf("FRR learned %s from the range over a pod CIDR", p)
		}
	}
	if _, err := s.pids(); err != nil {
		t.Error(err)
	}
}

// Helpers.

func bgpConfiguration() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cluster.Group + "/" + cluster.Version,
		"kind":       "BGPConfiguration",
		"metadata":   map[string]any{"name": "default"},
		"spec": map[string]any{
			"serviceClusterIPs": []any{
				map[string]any{"cidr": svcCIDR4, "communities": []any{"64512:100"}},
				map[string]any{"cidr": svcCIDR6},
			},
			"serviceExternalIPs": []any{map[string]any{"cidr": extCIDR}},
			"serviceLoadBalancerIPs": []any{
				map[string]any{"cidr": lbCIDR4, "advertise": "PerAddress", "largeCommunities": []any{"64512:2:1"}},
				map[string]any{"cidr": lbCIDR6},
			},
			"loadBalancer": map[string]any{
				"pools": []any{
					map[string]any{"name": "lab", "cidrs": []any{lbPool4, lbPool6}},
					map[string]any{"name": "small", "cidrs": []any{smallLB}},
				},
			},
		},
	}}
}

func lbService(name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: svcNS, Name: name, Annotations: annotations},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

func clusterIPService(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: svcNS, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

// endpointSlice is svc's IPv4 slice with one endpoint per node, ready or
// not, as the EndpointSlice controller would write it.
func endpointSlice(svc string, ready map[string]bool) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: svcNS, Name: svc + "-manual",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "kubetest"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(80)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	nodes := make([]string, 0, len(ready))
	for n := range ready {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for i, n := range nodes {
		r := ready[n]
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{fmt.Sprintf("10.244.%s.%d", n[len(n)-1:], 20+i)}, NodeName: ptr(n),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(r), Serving: ptr(r), Terminating: ptr(false)},
		})
	}
	return es
}

func ptr[T any](v T) *T { return &v }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (s *svcLab) createService(ctx context.Context, t *testing.T, svc *corev1.Service) {
	t.Helper()
	if _, err := s.admin.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service %s: %v", svc.Name, err)
	}
}

func (s *svcLab) ingress(ctx context.Context, t *testing.T, name string) []string {
	t.Helper()
	svc, err := s.admin.CoreV1().Services(svcNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading Service %s: %v", name, err)
	}
	var out []string
	for _, i := range svc.Status.LoadBalancer.Ingress {
		out = append(out, i.IP)
	}
	return out
}

func wantIngress(got []string, want ...string) error {
	if !slices.Equal(got, want) {
		return fmt.Errorf("ingress %v, want %v", got, want)
	}
	return nil
}

func (s *svcLab) allIngress(ctx context.Context, t *testing.T) map[string][]string {
	t.Helper()
	list, err := s.admin.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	must(t, err)
	out := map[string][]string{}
	for _, svc := range list.Items {
		for _, i := range svc.Status.LoadBalancer.Ingress {
			out[svc.Name] = append(out[svc.Name], i.IP)
		}
	}
	return out
}

// unique fails the test if an address is in two Services' statuses, and
// returns every Service's addresses.
func (s *svcLab) unique(ctx context.Context, t *testing.T) map[string][]string {
	t.Helper()
	got := s.allIngress(ctx, t)
	owner := map[string]string{}
	for svc, as := range got {
		for _, a := range as {
			if o, dup := owner[a]; dup {
				t.Errorf("%s is in the status of both %s and %s", a, o, svc)
			}
			owner[a] = svc
		}
	}
	return got
}

func (s *svcLab) waitEvent(ctx context.Context, t *testing.T, kind, name, reason string) corev1.Event {
	t.Helper()
	var ev corev1.Event
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("Event %s on %s %s", reason, kind, name), func() error {
		list, err := s.admin.CoreV1().Events("").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name + ",reason=" + reason,
		})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("none yet")
		}
		ev = list.Items[0]
		return nil
	})
	return ev
}

func (s *svcLab) nodeAddrs(nodes ...*labNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.addr)
	}
	return out
}

// frrRoute checks zebra's RIB (show ip route json): prefix is a selected
// BGP route whose next hops, all in the FIB, are exactly hops (ECMP when
// several); no hops means FRR must not have it at all.
func (s *svcLab) frrRoute(prefix string, hops ...string) error {
	fam := "ipv4"
	if strings.Contains(prefix, ":") {
		fam = "ipv6"
	}
	rib, err := s.frr.Routes(fam)
	if err != nil {
		return err
	}
	routes := rib[prefix]
	if len(hops) == 0 {
		if len(routes) > 0 {
			return fmt.Errorf("FRR still has %s: %+v", prefix, routes)
		}
		return nil
	}
	for _, r := range routes {
		if r.Protocol != "bgp" || !r.Selected {
			continue
		}
		var got []string
		for _, nh := range r.NextHops {
			if !nh.FIB {
				return fmt.Errorf("FRR's %s: next hop %s not in the FIB", prefix, nh.IP)
			}
			got = append(got, nh.IP)
		}
		sort.Strings(got)
		want := slices.Clone(hops)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("FRR has %s via %v, want via %v", prefix, got, want)
		}
		return nil
	}
	return fmt.Errorf("FRR has no selected BGP route for %s (%+v)", prefix, routes)
}

// frrCommunities reads the communities of prefix's best path in FRR.
func (s *svcLab) frrCommunities(prefix string) (standard, large string, err error) {
	var out struct {
		Paths []struct {
			Community struct {
				String string `json:"string"`
			} `json:"community"`
			LargeCommunity struct {
				String string `json:"string"`
			} `json:"largeCommunity"`
		} `json:"paths"`
	}
	if err := s.frr.VtyshJSON("show bgp ipv4 unicast "+prefix+" json", &out); err != nil {
		return "", "", err
	}
	if len(out.Paths) == 0 {
		return "", "", fmt.Errorf("FRR has no path for %s", prefix)
	}
	return out.Paths[0].Community.String, out.Paths[0].LargeCommunity.String, nil
}

// podrouteRoutes is `podroute routes` on n, as an operator reads it.
func (s *svcLab) podrouteRoutes(n *labNode) (string, error) {
	out, err := n.ns.Command(s.cli, "--socket", n.socket, "routes").CombinedOutput()
	return string(out), err
}

// serviceLines is `podroute -o json routes` on n: the service lines by
// "prefix namespace/name".
func (s *svcLab) serviceLines(n *labNode) (map[string]*api.ServicePrefix, error) {
	cmd := n.ns.Command(s.cli, "--socket", n.socket, "-o", "json", "routes")
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("podroute routes on %s: %w", n.name, err)
	}
	var resp api.ListRoutesResponse
	if err := protojson.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("podroute routes on %s: %w", n.name, err)
	}
	lines := map[string]*api.ServicePrefix{}
	for _, l := range resp.GetServices() {
		lines[l.GetPrefix()+" "+l.GetService()] = l
	}
	return lines, nil
}
