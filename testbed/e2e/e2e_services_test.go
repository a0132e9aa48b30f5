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
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := running.Kubectl(ctx, "apply", "-f", path); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if out, err := running.Kubectl(ctx, "-n", ns, "rollout", "status", "deployment/web-a", "deployment/web-b", "--timeout=2m"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
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
	torOf := func(node string) string {
		for _, lan := range running.Plan.Topology.LANs {
			if lan.Gateway != "" && slices.Contains(lan.Members, node) {
				return lan.Gateway
			}
		}
		t.Fatalf("node %s has no ToR", node)
		return ""
	}
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
	// Local: each rack's ToR has the /32 from the node with the endpoint
	// only (node-2 and node-4 have none).
	local := map[string][]string{torOf(nodeA): {addrOf(nodeA)}, torOf(nodeB): {addrOf(nodeB)}}
	for _, a := range []netip.Addr{lbIP, extIP} {
		wantHops("Local: "+a.String()+"/32 from the nodes with an endpoint only", a.String()+"/32", local, 30*time.Second)
	}

	client := func(url string) (string, error) {
		c, err := running.Command(ctx, lab.KubeClientElement, "curl", "-sS", "--max-time", "2", url)
		if err != nil {
			return "", err
		}
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	// Through the fabric from outside, the pod sees the client's address.
	for _, a := range []netip.Addr{lbIP, extIP} {
		got, err := client(fmt.Sprintf("http://%s/clientip", a))
		if err != nil || !strings.HasPrefix(got, st.ClientAddress+":") {
			t.Errorf("client -> http://%s/clientip: %q, %v; want %s:PORT (source address kept with Local)", a, got, err, st.ClientAddress)
		}
	}
	t.Logf("E2E figure: services: client %s (behind a spine) reaches LoadBalancer %s and external IP %s; with Local the pods see %s, and each ToR has the /32s from its node with an endpoint only",
		st.ClientAddress, lbIP, extIP, st.ClientAddress)

	// Scale node-3's endpoints to zero while the client keeps asking.
	var sent, failed atomic.Int64
	var mu sync.Mutex
	answered := map[string]int{}
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
			sent.Add(1)
			got, err := client(fmt.Sprintf("http://%s/hostname", lbIP))
			if err != nil {
				failed.Add(1)
				continue
			}
			who := got
			for _, d := range []string{"web-a", "web-b"} {
				if strings.HasPrefix(got, d+"-") {
					who = d
				}
			}
			mu.Lock()
			answered[who]++
			mu.Unlock()
		}
	}()
	time.Sleep(time.Second)
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
	time.Sleep(2 * time.Second) // requests after the withdrawal
	close(stop)
	wg.Wait()
	t.Logf("E2E figure: services: %s scaled to zero on %s: no ready endpoint there %.0f ms after the scale, its /32 gone from %s's RIB %.0f ms after the scale; client requests meanwhile %d sent, %d failed, answered by %v",
		ns+"/web-b", nodeB, notReady.Seconds()*1000, torOf(nodeB), total.Seconds()*1000, sent.Load(), failed.Load(), fmt.Sprint(answered))
	if after := total - notReady; after > time.Second {
		t.Errorf("%s's /32 withdrawn %v after its last endpoint stopped being ready, want under 1 s", nodeB, after)
	}
	if failed.Load() > 0 {
		t.Errorf("%d of %d client requests failed while %s's endpoints went away", failed.Load(), sent.Load(), nodeB)
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
	got, err := client(fmt.Sprintf("http://%s/hostname", lbIP))
	if err != nil || !strings.HasPrefix(got, "web-a-") {
		t.Errorf("client -> %s with Cluster: %q, %v; want an answer from web-a", lbIP, got, err)
	}
	t.Logf("E2E figure: services: externalTrafficPolicy Cluster: every node advertises %s/32 after %.0f ms (ToR next hops %v)", lbIP, took.Seconds()*1000, nexthops(lbIP.String()+"/32"))

	if out, err := running.Kubectl(ctx, "delete", "namespace", ns, "--wait=false"); err != nil {
		t.Errorf("%v: %s", err, out)
	}
}

// deployment is one netexec replica pinned to node, labelled app=web.
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
          readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}`, ns, name, node, images.AgnhostImage)
}
