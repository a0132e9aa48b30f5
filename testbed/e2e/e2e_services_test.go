package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/images"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/topology"
)

// servicesFromOutside is issue 12's proof on real nodes: a client outside
// the cluster (behind a spine, an address outside the nodes' networks)
// reaches a LoadBalancer Service and an external IP through the FRR fabric
// and kube-proxy; with externalTrafficPolicy: Local only the nodes with an
// endpoint advertise the /32 and the pod sees the client's own address;
// with Cluster every node does (ECMP in FRR's RIB); scaling the endpoints
// on one node to zero withdraws that node's /32 within a second while the
// client's requests keep being answered by the other node.
func servicesFromOutside(t *testing.T, ctx context.Context, running *lab.Lab) {
	st := running.KubeState()
	if st == nil || st.ClientNamespace == "" {
		t.Fatal("the real-node lab has no outside client")
	}
	const ns = "lb-proof"
	nodeA, nodeB := "node-1", "node-3"                                           // rack-1, rack-2
	extIP := netip.MustParsePrefix(lab.KubeExternalIPRange).Addr().Next().Next() // .2 of the range
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
%[2]s
%[3]s
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  externalIPs: [%[4]s]
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, ns, deployment(ns, "web-a", nodeA), deployment(ns, "web-b", nodeB), extIP)
	applyAndRollOut(t, ctx, running, manifest, ns, "web-a", "web-b")
	var lbIP netip.Addr
	testutil.Eventually(t, 30*time.Second, "a LoadBalancer address for "+ns+"/web", func() error {
		out, err := running.Kubectl(ctx, "-n", ns, "get", "service", "web", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
		if err != nil {
			return err
		}
		lbIP, err = netip.ParseAddr(strings.TrimSpace(string(out)))
		return err
	})
	if !netip.MustParsePrefix(lab.KubeLoadBalancerPool).Contains(lbIP) {
		t.Fatalf("LoadBalancer address %s is not from the lab's pool %s", lbIP, lab.KubeLoadBalancerPool)
	}

	addrOf := func(node string) string { return running.Node(node).Addresses()[0].String() }
	torOf := func(node string) string { return torOf(t, running, node) }
	isNode := map[string]bool{}
	for _, np := range running.Plan.Nodes {
		isNode[addrOf(np.Name)] = true
	}
	// nexthops is the ToRs' view of prefix: ToR -> the nodes among the
	// next hops of its valid BGP paths, sorted (the paths through the
	// spines, from the other rack, are left out).
	nexthops := func(prefix string) map[string][]string {
		out := map[string][]string{}
		for _, tor := range []string{torOf(nodeA), torOf(nodeB)} {
			rib, err := running.FRR(tor).RIB("ipv4")
			if err != nil {
				t.Fatal(err)
			}
			var nh []string
			for _, h := range rib[prefix] {
				if isNode[h] {
					nh = append(nh, h)
				}
			}
			slices.Sort(nh)
			out[tor] = nh
		}
		return out
	}
	wantHops := func(what, prefix string, want map[string][]string, timeout time.Duration) time.Duration {
		t.Helper()
		return testutil.EventuallyEvery(t, 20*time.Millisecond, timeout, what, func() error {
			got := nexthops(prefix)
			for tor, w := range want {
				slices.Sort(w)
				if !slices.Equal(got[tor], w) {
					return fmt.Errorf("%s: %s has next hops %v, want %v", prefix, tor, got[tor], w)
				}
			}
			return nil
		})
	}
	// fibHops is the number of next hops router has installed for prefix
	// (zebra's selected route, in the kernel): ECMP shows as several.
	fibHops := func(router, prefix string) int {
		routes, err := running.FRR(router).Routes("ipv4")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range routes[prefix] {
			if r.Selected {
				for _, h := range r.NextHops {
					if h.FIB {
						n++
					}
				}
			}
		}
		return n
	}
	spine := st.ClientRouter
	wantSpineHops := func(what, prefix string, want int) {
		t.Helper()
		testutil.EventuallyEvery(t, 20*time.Millisecond, 10*time.Second, what, func() error {
			if n := fibHops(spine, prefix); n != want {
				return fmt.Errorf("%s: %s has %d next hops in its FIB, want %d", prefix, spine, n, want)
			}
			return nil
		})
	}
	// Local: each rack's ToR has the /32 from the node with the endpoint
	// only (node-2 and node-4 have none).
	local := map[string][]string{torOf(nodeA): {addrOf(nodeA)}, torOf(nodeB): {addrOf(nodeB)}}
	for _, a := range []netip.Addr{lbIP, extIP} {
		wantHops("Local: "+a.String()+"/32 from the nodes with an endpoint only", a.String()+"/32", local, 30*time.Second)
		// The spine spreads it over both racks.
		wantSpineHops("ECMP at "+spine+" over both ToRs", a.String()+"/32", 2)
	}

	clientFrom := func(src, url string) (string, error) {
		c, err := running.Command(ctx, lab.KubeClientElement, "curl", "-sS", "--max-time", "2", "--interface", src, url)
		if err != nil {
			return "", err
		}
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	client := func(url string) (string, error) { return clientFrom(st.ClientAddress, url) }
	// Through the fabric from outside, the pod sees the client's address.
	for _, a := range []netip.Addr{lbIP, extIP} {
		seen, took := clientIPSeen(t, ctx, running, a)
		if seen.String() != st.ClientAddress {
			t.Errorf("client -> http://%s/clientip: the pod saw %s, want %s (source address kept with Local)", a, seen, st.ClientAddress)
		}
		t.Logf("client -> %s: first answer after %v", a, took.Round(time.Millisecond))
	}
	t.Logf("E2E figure: services: client %s (behind a spine) reaches LoadBalancer %s and external IP %s; with Local the pods see %s, and each ToR has the /32s from its node with an endpoint only, the spine both ToRs (ECMP)",
		st.ClientAddress, lbIP, extIP, st.ClientAddress)

	// Scale node-3's endpoints to zero while clients keep asking. The
	// routers hash ECMP on addresses, so one source always takes the same
	// rack: 16 client addresses make both racks carry some of them.
	clientIf := topology.IfName("eth-" + st.ClientRouter)
	var sources []string
	for i := range 16 {
		src := netip.MustParsePrefix(lab.KubeClientSubnet4).Addr()
		for range 20 + i {
			src = src.Next()
		}
		sources = append(sources, src.String())
		c, err := running.Command(ctx, lab.KubeClientElement, "ip", "addr", "add", src.String()+"/24", "dev", clientIf)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("client address %s: %v: %s", src, err, out)
		}
	}
	var sent, failed atomic.Int64
	var scaled atomic.Bool
	answeredBefore := map[string]int{}
	var mu sync.Mutex
	answered := map[string]int{}
	var failStarts []time.Time
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			n := sent.Add(1)
			start := time.Now()
			got, err := clientFrom(sources[int(n)%len(sources)], fmt.Sprintf("http://%s/hostname", lbIP))
			if err != nil {
				failed.Add(1)
				mu.Lock()
				failStarts = append(failStarts, start)
				mu.Unlock()
				continue
			}
			who := got
			for _, d := range []string{"web-a", "web-b"} {
				if strings.HasPrefix(got, d+"-") {
					who = d
				}
			}
			mu.Lock()
			if scaled.Load() {
				answered[who]++
			} else {
				answeredBefore[who]++
			}
			mu.Unlock()
		}
	}()
	time.Sleep(2 * time.Second)
	mu.Lock()
	if answeredBefore["web-b"] == 0 || answeredBefore["web-a"] == 0 {
		t.Errorf("before the scale-down, 16 client addresses were answered by %v: want both racks' endpoints (web-a on %s, web-b on %s)", answeredBefore, nodeA, nodeB)
	}
	mu.Unlock()
	scaled.Store(true)
	begin := time.Now()
	if out, err := running.Kubectl(ctx, "-n", ns, "scale", "deployment/web-b", "--replicas=0"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// The moment the EndpointSlice no longer has a ready endpoint on
	// node-3 is when podroute learns there is none left.
	var notReady time.Duration
	testutil.EventuallyEvery(t, 10*time.Millisecond, 30*time.Second, "no ready endpoint on "+nodeB, func() error {
		out, err := running.Kubectl(ctx, "-n", ns, "get", "endpointslices", "-l", "kubernetes.io/service-name=web",
			"-o", `jsonpath={range .items[*].endpoints[*]}{.nodeName}={.conditions.ready}{" "}{end}`)
		if err != nil {
			return err
		}
		if strings.Contains(string(out), nodeB+"=true") {
			return fmt.Errorf("endpoints %s", out)
		}
		notReady = time.Since(begin)
		return nil
	})
	wantHops(nodeB+"'s /32 withdrawn", lbIP.String()+"/32",
		map[string][]string{torOf(nodeA): {addrOf(nodeA)}, torOf(nodeB): nil}, 10*time.Second)
	total := time.Since(begin)
	wantSpineHops(spine+" left with one ToR", lbIP.String()+"/32", 1)
	settled := time.Now()
	time.Sleep(2 * time.Second) // requests after the withdrawal
	close(stop)
	wg.Wait()
	// A request in flight on node-3's path at the moment a router drops
	// that next hop is rehashed mid-connection to node-1, which knows
	// nothing of it (any ECMP load balancing does this to the flows of a
	// withdrawn path): a request or two may fail then. Every request
	// started once the fabric has moved must be answered.
	var late int
	for _, f := range failStarts {
		if f.After(settled) {
			late++
		}
	}
	t.Logf("E2E figure: services: %s scaled to zero on %s: no ready endpoint there %.0f ms after the scale, its /32 gone from %s's RIB %.0f ms after the scale; requests from 16 client addresses %d sent (answered by %v before the scale), %d failed (%d of them started after the fabric moved), answered by %v after",
		ns+"/web-b", nodeB, notReady.Seconds()*1000, torOf(nodeB), total.Seconds()*1000, sent.Load(), fmt.Sprint(answeredBefore), failed.Load(), late, fmt.Sprint(answered))
	if late > 0 {
		t.Errorf("%d client requests started after the fabric dropped %s's path failed", late, nodeB)
	}
	if transition := len(failStarts) - late; transition > 2 {
		t.Errorf("%d of %d client requests failed while %s's endpoints went away (want at most the 1-2 in flight when the routers dropped its path)", transition, sent.Load(), nodeB)
	}
	if answered["web-a"] == 0 {
		t.Errorf("after the scale-down no request was answered by web-a (answers: %v)", answered)
	}
	if after := total - notReady; after > time.Second {
		t.Errorf("%s's /32 withdrawn %v after its last endpoint stopped being ready, want under 1 s", nodeB, after)
	}

	// Cluster: every node advertises (ECMP at each ToR over both of its
	// nodes), with or without an endpoint of its own.
	if out, err := running.Kubectl(ctx, "-n", ns, "patch", "service", "web", "-p", `{"spec":{"externalTrafficPolicy":"Cluster"}}`); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	all := map[string][]string{}
	for _, np := range running.Plan.Nodes {
		all[torOf(np.Name)] = append(all[torOf(np.Name)], addrOf(np.Name))
	}
	took := wantHops("Cluster: the /32 from every node", lbIP.String()+"/32", all, 30*time.Second)
	for _, tor := range []string{torOf(nodeA), torOf(nodeB)} {
		if n := fibHops(tor, lbIP.String()+"/32"); n != len(all[tor]) {
			t.Errorf("Cluster: %s has %d next hops for %s/32 in its FIB, want %d (ECMP over its nodes)", tor, n, lbIP, len(all[tor]))
		}
	}
	got, err := client(fmt.Sprintf("http://%s/hostname", lbIP))
	if err != nil || !strings.HasPrefix(got, "web-a-") {
		t.Errorf("client -> %s with Cluster: %q, %v; want an answer from web-a", lbIP, got, err)
	}
	t.Logf("E2E figure: services: externalTrafficPolicy Cluster: every node advertises %s/32 after %.0f ms (ToR next hops %v)", lbIP, took.Seconds()*1000, nexthops(lbIP.String()+"/32"))

	if out, err := running.Kubectl(ctx, "delete", "namespace", ns, "--wait=false"); err != nil {
		t.Errorf("%v: %s", err, out)
	}
}

// deployment is one netexec replica pinned to node, labelled app=web. It
// drains as a Service backend should: a preStop sleep keeps it serving for
// 2 s after its deletion begins (netexec itself exits on SIGTERM at once),
// while its endpoint is already not ready, so that podroute withdraws the
// node's address and kube-proxy moves new connections before it stops.
func deployment(ns, name, node string) string {
	return fmt.Sprintf(`---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: web, part: %[2]s}}
  template:
    metadata: {labels: {app: web, part: %[2]s}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %[3]s}
      terminationGracePeriodSeconds: 5
      containers:
        - name: netexec
          image: %[4]s
          imagePullPolicy: IfNotPresent
          args: [netexec, --http-port=8080]
          readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
          lifecycle: {preStop: {sleep: {seconds: 2}}}`, ns, name, node, images.AgnhostImage)
}

// TestE2EKubernetesDualStack brings the dual-stack leaf-spine lab up as a
// real cluster (IPv4 and IPv6 pod CIDRs, Service ranges and pools) and
// checks a dual-stack LoadBalancer Service with externalTrafficPolicy
// Local from the outside client: both of its addresses are advertised by
// the node with the endpoint, reached through the fabric, and the pod sees
// the client's own address of each family.
func TestE2EKubernetesDualStack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	running, _, _ := upRealNodeLab(t, ctx, "dualstack")
	t.Logf("E2E figure: dual-stack real-node leafspine up in %s", running.Startup)
	st := running.KubeState()
	if st == nil || st.ClientNamespace == "" {
		t.Fatal("the real-node lab has no outside client")
	}
	const ns = "dual"
	node := "node-3"
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
%[2]s
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  externalTrafficPolicy: Local
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
`, ns, deployment(ns, "web-a", node))
	applyAndRollOut(t, ctx, running, manifest, ns, "web-a")
	var ingress []netip.Addr
	testutil.Eventually(t, 30*time.Second, "an IPv4 and an IPv6 LoadBalancer address", func() error {
		out, err := running.Kubectl(ctx, "-n", ns, "get", "service", "web", "-o", `jsonpath={range .status.loadBalancer.ingress[*]}{.ip}{" "}{end}`)
		if err != nil {
			return err
		}
		ingress = nil
		for _, f := range strings.Fields(string(out)) {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return err
			}
			ingress = append(ingress, a)
		}
		if len(ingress) != 2 || !ingress[0].Is4() || !ingress[1].Is6() {
			return fmt.Errorf("ingress %v", ingress)
		}
		return nil
	})
	pools := []netip.Prefix{netip.MustParsePrefix(lab.KubeLoadBalancerPool), netip.MustParsePrefix(lab.KubeLoadBalancerPool6)}
	np := running.Node(node)
	tor := torOf(t, running, node)
	for i, a := range ingress {
		if !pools[i].Contains(a) {
			t.Errorf("LoadBalancer address %s is not from the lab's pool %s", a, pools[i])
		}
		family, bits, want := "ipv4", 32, np.Addresses()[0].String()
		if a.Is6() {
			family, bits = "ipv6", 128
			for _, na := range np.Addresses() {
				if na.Is6() {
					want = na.String()
				}
			}
		}
		prefix := netip.PrefixFrom(a, bits).String()
		testutil.Eventually(t, 30*time.Second, prefix+" at "+tor+" from "+node, func() error {
			rib, err := running.FRR(tor).RIB(family)
			if err != nil {
				return err
			}
			if !slices.Contains(rib[prefix], want) {
				return fmt.Errorf("%s has %s via %v", tor, prefix, rib[prefix])
			}
			return nil
		})
		seen, took := clientIPSeen(t, ctx, running, a)
		clientAddr := netip.MustParsePrefix(lab.KubeClientSubnet4).Addr().Next().Next()
		if a.Is6() {
			clientAddr = netip.MustParsePrefix(lab.KubeClientSubnet6).Addr().Next().Next()
		}
		if seen != clientAddr {
			t.Errorf("client -> %s/clientip: the pod saw %s, want %s (the client's own address)", a, seen, clientAddr)
		}
		t.Logf("E2E figure: dual-stack: client reaches LoadBalancer %s (%s from %s at %s, first answer after %v), the pod sees %s",
			a, prefix, node, tor, took.Round(time.Millisecond), seen)
	}
}

// clientIPSeen asks http://a/clientip (agnhost netexec) from the outside
// client until it answers (kube-proxy programs a new address a moment
// after it is allocated and advertised; 30 s at most) and returns the
// source address the pod saw, and how long the first answer took.
func clientIPSeen(t *testing.T, ctx context.Context, running *lab.Lab, a netip.Addr) (netip.Addr, time.Duration) {
	t.Helper()
	url := "http://" + netip.AddrPortFrom(a, 80).String() + "/clientip"
	var seen netip.Addr
	var first error
	took := testutil.Eventually(t, 30*time.Second, "an answer from "+url+" to the outside client", func() error {
		c, err := running.Command(ctx, lab.KubeClientElement, "curl", "-sS", "--max-time", "3", url)
		if err != nil {
			return err
		}
		out, err := c.CombinedOutput()
		if err != nil {
			if first == nil {
				first = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
				t.Logf("%s from the outside client, first try: %v", url, first)
			}
			return fmt.Errorf("%v: %s", err, out)
		}
		ap, err := netip.ParseAddrPort(strings.TrimSpace(string(out)))
		if err != nil {
			return fmt.Errorf("answer %q: %v", out, err)
		}
		seen = ap.Addr()
		return nil
	})
	return seen, took
}

// applyAndRollOut applies manifest with kubectl and waits until the
// Deployments named in namespace ns are rolled out.
func applyAndRollOut(t *testing.T, ctx context.Context, running *lab.Lab, manifest, ns string, deployments ...string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "manifest.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := running.Kubectl(ctx, "apply", "-f", path); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	args := []string{"-n", ns, "rollout", "status", "--timeout=2m"}
	for _, d := range deployments {
		args = append(args, "deployment/"+d)
	}
	if out, err := running.Kubectl(ctx, args...); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
}

// torOf is the gateway router (ToR) of node's rack.
func torOf(t *testing.T, running *lab.Lab, node string) string {
	t.Helper()
	for _, lan := range running.Plan.Topology.LANs {
		if lan.Gateway != "" && slices.Contains(lan.Members, node) {
			return lan.Gateway
		}
	}
	t.Fatalf("node %s has no ToR", node)
	return ""
}
