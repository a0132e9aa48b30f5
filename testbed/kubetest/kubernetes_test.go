package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/internal/testutil"
)

// TestKubernetesMode runs podrouted --kubernetes on three node namespaces
// against a real kube-apiserver and walks through what issue 4 asks to
// show, one subtest per scenario, on one shared lab. Later scenarios build
// on the state earlier ones leave (three nodes in a mesh, then node-1 a
// route reflector), so setup scenarios stop the test when they fail.
func TestKubernetesMode(t *testing.T) {
	skipUnlessPossible(t)
	testBegin := time.Now()
	l := newLab(t)
	n1, n2, n3 := l.node(1), l.node(2), l.node(3)

	if !t.Run("manifests", l.testManifests) {
		t.FailNow()
	}
	if !t.Run("rbac", l.testRBAC) {
		t.FailNow()
	}
	if !t.Run("node_added", l.testNodeAdded) {
		t.FailNow()
	}
	t.Run("network_available", l.testNetworkAvailable)
	t.Run("node_deleted", l.testNodeDeleted)
	t.Run("bgppeer", l.testBGPPeer)
	t.Run("route_reflector", l.testRouteReflector)
	t.Run("bad_annotation", l.testBadAnnotation)
	t.Run("apiserver_down", l.testAPIServerDown)

	// Across everything above, podrouted never hit a permission it lacks.
	// While kube-apiserver starts, it answers before its RBAC caches are
	// filled and refuses everyone for a moment; refusals in that window
	// (from the stop until podrouted applied a change afterwards) are only
	// reported.
	for _, n := range []*labNode{n1, n2, n3} {
		b, err := os.ReadFile(n.logPath)
		must(t, err)
		from, to := int64(len(b)), int64(len(b))
		if w, ok := l.outage[n.name]; ok {
			from, to = w[0], min(w[1], int64(len(b)))
		}
		forbidden := regexp.MustCompile(`(?im)^.*forbidden.*$`)
		for _, m := range forbidden.FindAllIndex(b, -1) {
			line := string(b[m[0]:m[1]])
			if int64(m[0]) >= from && int64(m[0]) < to {
				t.Logf("podrouted on %s, while kube-apiserver (re)started: %s", n.name, line)
				continue
			}
			t.Errorf("podrouted on %s was refused something by RBAC: %s", n.name, line)
		}
	}
	t.Logf("all scenarios took %v", time.Since(testBegin).Round(time.Millisecond))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// kubectlCached runs kubectl as admin with its discovery cache inside the
// lab, so nothing is left in $HOME/.kube.
func (l *lab) kubectlCached(ctx context.Context, args ...string) (string, error) {
	return l.kubectl(ctx, append([]string{"--cache-dir=" + filepath.Join(l.dir, "kubectl-cache")}, args...)...)
}

// 1. Every file in manifests/ (and manifests/examples/) passes the API
// server's validation with --dry-run=server; the Namespace and CRDs are
// applied for real first (the examples need them), then the RBAC (podrouted
// runs under it).
func (l *lab) testManifests(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	dir := manifestsDir(t)
	begin := time.Now()
	out, err := l.kubectlCached(ctx, "apply", "-f", filepath.Join(dir, "00-namespace.yaml"), "-f", filepath.Join(dir, "01-crds.yaml"))
	if err != nil {
		t.Fatalf("applying the namespace and CRDs: %v\n%s", err, out)
	}
	out, err = l.kubectlCached(ctx, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/bgppeers.podroute.io", "crd/bgpconfigurations.podroute.io")
	if err != nil {
		t.Fatalf("CRDs not Established: %v\n%s", err, out)
	}
	t.Logf("namespace and CRDs applied, CRDs Established after %v", time.Since(begin).Round(time.Millisecond))

	// Every object of every file, in one server-side dry run.
	var files []string
	wantObjects := 0
	for _, d := range []string{dir, filepath.Join(dir, "examples")} {
		matches, err := filepath.Glob(filepath.Join(d, "*.yaml"))
		must(t, err)
		for _, f := range matches {
			files = append(files, "-f", f)
			b, err := os.ReadFile(f)
			must(t, err)
			wantObjects += len(regexp.MustCompile(`(?m)^kind: `).FindAll(b, -1))
		}
	}
	begin = time.Now()
	out, err = l.kubectlCached(ctx, append([]string{"apply", "--dry-run=server"}, files...)...)
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server refused a manifest: %v\n%s", err, out)
	}
	accepted := strings.Count(out, "(server dry run)")
	t.Logf("kubectl apply --dry-run=server accepted %d objects from %d files in %v:\n%s",
		accepted, len(files)/2, time.Since(begin).Round(time.Millisecond), strings.TrimSpace(out))
	if accepted != wantObjects {
		t.Errorf("dry run reported %d objects, the files hold %d", accepted, wantObjects)
	}
	// A dry run stores nothing: the example BGPConfiguration (mesh off)
	// must not exist, or the rest of this test would run without a mesh.
	if _, err := l.dyn.Resource(cluster.BGPConfigurationResource).Get(ctx, "default", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("BGPConfiguration default after a dry run: %v, want NotFound", err)
	}

	out, err = l.kubectlCached(ctx, "apply", "-f", filepath.Join(dir, "02-rbac.yaml"))
	if err != nil {
		t.Fatalf("applying the RBAC: %v\n%s", err, out)
	}
}

// 2. podrouted runs under its ServiceAccount's token (TokenRequest) with
// only the manifests' RBAC and works; and that token may do no more than
// podrouted needs.
func (l *lab) testRBAC(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	tok, err := l.cp.ServiceAccountToken(ctx, podrouteNS, podrouteSA, 2*time.Hour)
	must(t, err)
	l.saToken = tok
	l.saKubeconfig, err = l.cp.Kubeconfig("podrouted", tok)
	must(t, err)
	sa, err := l.cp.Clientset(tok)
	must(t, err)

	type check struct {
		allowed bool
		attr    authorizationv1.ResourceAttributes
	}
	core := func(verb, resource, sub, ns string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Subresource: sub, Namespace: ns}
	}
	pr := func(verb, resource string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Verb: verb, Group: cluster.Group, Resource: resource}
	}
	checks := []check{
		{true, core("watch", "nodes", "", "")},
		{true, core("list", "nodes", "", "")},
		{true, core("patch", "nodes", "status", "")},
		{true, pr("list", "bgppeers")},
		{true, pr("watch", "bgpconfigurations")},
		{true, core("get", "secrets", "", podrouteNS)},
		{true, core("watch", "secrets", "", podrouteNS)},
		{true, core("create", "events", "", "default")},
		{true, core("list", "pods", "", "")},
		{true, core("watch", "namespaces", "", "")},
		{true, authorizationv1.ResourceAttributes{Verb: "watch", Group: "networking.k8s.io", Resource: "networkpolicies"}},
		{false, core("update", "pods", "", "default")},
		{false, core("delete", "pods", "", "default")},
		{false, authorizationv1.ResourceAttributes{Verb: "update", Group: "networking.k8s.io", Resource: "networkpolicies", Namespace: "default"}},
		{false, core("update", "nodes", "", "")},
		{false, core("patch", "nodes", "", "")},
		{false, core("delete", "nodes", "", "")},
		{false, core("create", "nodes", "", "")},
		{false, core("update", "nodes", "status", "")},
		{false, core("get", "secrets", "", "kube-system")},
		{false, core("list", "secrets", "", "")},
		{false, pr("create", "bgppeers")},
		{false, pr("update", "bgpconfigurations")},
		{false, core("create", "serviceaccounts", "token", podrouteNS)},
	}
	for _, c := range checks {
		attr := c.attr
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx,
			&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr}}, metav1.CreateOptions{})
		must(t, err)
		what := fmt.Sprintf("%s %s", attr.Verb, attr.Resource)
		if attr.Subresource != "" {
			what += "/" + attr.Subresource
		}
		if attr.Group != "" {
			what += "." + attr.Group
		}
		if attr.Namespace != "" {
			what += " in " + attr.Namespace
		}
		if r.Status.Allowed != c.allowed {
			t.Errorf("serviceaccount %s/%s may %s: %v, want %v (%s)", podrouteNS, podrouteSA, what, r.Status.Allowed, c.allowed, r.Status.Reason)
		}
	}
	// The same through kubectl, as an operator would check it, and one real
	// refused call.
	for verb, want := range map[string]string{"watch nodes": "yes", "delete nodes": "no", "list pods -A": "yes", "delete pods -A": "no"} {
		out, _ := l.cp.KubectlWith(ctx, l.saKubeconfig, append([]string{"--cache-dir=" + filepath.Join(l.dir, "kubectl-cache"), "auth", "can-i"}, strings.Fields(verb)...)...)
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("kubectl auth can-i %s as the serviceaccount: %q, want %q", verb, got, want)
		}
	}
	if _, err := sa.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("serviceaccount listing Secrets in kube-system: %v, want Forbidden", err)
	}
	t.Logf("%d access reviews as system:serviceaccount:%s:%s match the intended rules", len(checks), podrouteNS, podrouteSA)

	// podrouted on all three nodes with that token. node-1 and node-2 get
	// their Node objects now; node-3's waits for the next scenario.
	for _, n := range l.nodes {
		l.startPodrouted(n)
	}
	n1, n2 := l.node(1), l.node(2)
	begin := time.Now()
	must(t, l.createNode(ctx, n1, nil))
	must(t, l.createNode(ctx, n2, nil))
	testutil.Eventually(t, 60*time.Second, "node-1 and node-2 peer and route", func() error {
		return errors.Join(l.wantPeers(n1, n2.addr), l.wantPeers(n2, n1.addr),
			wantRoutes(n1, n2), wantRoutes(n2, n1))
	})
	t.Logf("podrouted under the serviceaccount token: node-1 <-> node-2 Established and routes in both kernels %v after the Nodes were created",
		time.Since(begin).Round(time.Millisecond))
	must(t, l.pingAll(n1, n2))
}

// meshConverged is every node peering with every other, each with the
// others' pod CIDRs in its kernel.
func (l *lab) meshConverged(nodes ...*labNode) error {
	var errs []error
	for _, n := range nodes {
		var addrs []string
		var others []*labNode
		for _, o := range nodes {
			if o != n {
				addrs = append(addrs, o.addr)
				others = append(others, o)
			}
		}
		errs = append(errs, l.wantPeers(n, addrs...), wantRoutes(n, others...))
	}
	return errors.Join(errs...)
}

// 3. A Node created with a pod CIDR becomes a BGP peer of the others and
// its CIDR reaches their kernels; pods ping across nodes.
func (l *lab) testNodeAdded(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	n1, n2, n3 := l.node(1), l.node(2), l.node(3)
	begin := time.Now()
	must(t, l.createNode(ctx, n3, nil))
	peered := testutil.Eventually(t, 60*time.Second, "node-3 Established with every node", func() error {
		return errors.Join(l.wantPeers(n1, n2.addr, n3.addr), l.wantPeers(n2, n1.addr, n3.addr), l.wantPeers(n3, n1.addr, n2.addr))
	})
	testutil.Eventually(t, 30*time.Second, "node-3's CIDR in every kernel", func() error { return l.meshConverged(n1, n2, n3) })
	routed := time.Since(begin)
	t.Logf("Node node-3 created: Established on all three nodes after %v, %s in node-1's and node-2's kernels (proto %d) after %v",
		peered.Round(time.Millisecond), n3.cidr, routeProto, routed.Round(time.Millisecond))
	begin = time.Now()
	must(t, l.pingAll(n1, n2, n3))
	t.Logf("pods ping across all 6 node pairs (%v)", time.Since(begin).Round(time.Millisecond))
}

// 8. Each Node gets NetworkUnavailable=False, reason PodrouteIsUp.
func (l *lab) testNetworkAvailable(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	took := testutil.Eventually(t, 30*time.Second, "NetworkUnavailable=False (PodrouteIsUp) on every Node", func() error {
		for _, n := range l.nodes {
			if err := networkAvailable(ctx, l.admin, n.name); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("all 3 Nodes have NetworkUnavailable=False reason PodrouteIsUp (waited %v more after mesh convergence)", took.Round(time.Millisecond))
}

func networkAvailable(ctx context.Context, cs kubernetes.Interface, name string) error {
	node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable {
			if c.Status != corev1.ConditionFalse || c.Reason != "PodrouteIsUp" {
				return fmt.Errorf("%s: NetworkUnavailable=%s reason %q", name, c.Status, c.Reason)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: no NetworkUnavailable condition", name)
}

// 4. A Node deleted disappears from every peer set and kernel; the
// sessions between the remaining nodes are untouched. The Node is then
// registered again and rejoins.
func (l *lab) testNodeDeleted(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	n1, n2, n3 := l.node(1), l.node(2), l.node(3)
	before, err := l.sessions()
	must(t, err)
	begin := time.Now()
	must(t, l.admin.CoreV1().Nodes().Delete(ctx, n3.name, metav1.DeleteOptions{}))
	took := testutil.Eventually(t, 30*time.Second, "node-3 gone from node-1's and node-2's peers and kernels", func() error {
		return errors.Join(l.wantPeers(n1, n2.addr), l.wantPeers(n2, n1.addr), wantRoutes(n1, n2), wantRoutes(n2, n1))
	})
	t.Logf("Node node-3 deleted: gone from both other nodes' peer sets and kernels after %v (%v of polling)",
		time.Since(begin).Round(time.Millisecond), took.Round(time.Millisecond))
	after, err := l.sessions(n1, n2)
	must(t, err)
	delete(before, n3.name)
	if err := sameSessions(before, after, n3.addr); err != nil {
		t.Errorf("deleting node-3 touched other sessions: %v", err)
	}
	if n3.proc.Exited() {
		t.Errorf("podrouted on node-3 exited when its Node was deleted: %v", n3.proc.Wait())
	}
	must(t, l.pingAll(n1, n2))

	// Registered again (as kubelet would), it rejoins without a restart.
	begin = time.Now()
	must(t, l.createNode(ctx, n3, nil))
	testutil.Eventually(t, 60*time.Second, "node-3 rejoins the mesh", func() error { return l.meshConverged(n1, n2, n3) })
	t.Logf("Node node-3 registered again: full mesh and routes back after %v", time.Since(begin).Round(time.Millisecond))
	// A new Node object has none of the old one's conditions: podrouted
	// marks it again.
	took = testutil.Eventually(t, 30*time.Second, "NetworkUnavailable=False on the re-registered Node", func() error {
		return networkAvailable(ctx, l.admin, n3.name)
	})
	t.Logf("re-registered Node node-3 has NetworkUnavailable=False (PodrouteIsUp) again %v after the mesh converged", took.Round(time.Millisecond))
	must(t, l.pingAll(n1, n2, n3))
}

func bgpPeer(name, selector, hold string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": cluster.Group + "/" + cluster.Version,
		"kind":       "BGPPeer",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"nodeSelector": selector,
			"peerAddress":  frrAddr,
			"peerASN":      int64(frrASN),
			"holdTime":     hold,
		},
	}}
}

// frrHas checks FRR's BGP table for cidr via nextHop ("" means absent).
func (l *lab) frrHas(cidr, nextHop string) error {
	rib, err := l.frr.RIB("ipv4")
	if err != nil {
		return err
	}
	hops, ok := rib[cidr]
	switch {
	case nextHop == "" && ok:
		return fmt.Errorf("FRR still has %s via %v", cidr, hops)
	case nextHop == "":
		return nil
	case !ok || !slices.Equal(hops, []string{nextHop}):
		return fmt.Errorf("FRR has %s via %v, want via %s", cidr, hops, nextHop)
	}
	return nil
}

func (l *lab) frrSession(addr string) (string, int, error) {
	nbrs, err := l.frr.BGPNeighbors()
	if err != nil {
		return "", 0, err
	}
	st, ok := nbrs[addr]
	if !ok {
		return "", 0, nil
	}
	return st.State, st.TimesEstablished, nil
}

// 5. A BGPPeer selecting one node by label: created, that node peers with
// the FRR router, which learns its pod CIDR; edited (hold time), only that
// session changes; deleted, that session goes and the others stay.
func (l *lab) testBGPPeer(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	n1, n2, n3 := l.node(1), l.node(2), l.node(3)
	peers := l.dyn.Resource(cluster.BGPPeerResource)
	before, err := l.sessions()
	must(t, err)

	if _, err := peers.Create(ctx, bgpPeer("tor-a", "rack=a", "9s"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating BGPPeer tor-a: %v", err)
	}
	t.Cleanup(func() {
		_ = peers.Delete(context.Background(), "tor-a", metav1.DeleteOptions{})
	})
	peered := testutil.Eventually(t, 60*time.Second, "node-1 Established with FRR", func() error {
		return l.wantPeers(n1, n2.addr, n3.addr, frrAddr)
	})
	learned := testutil.Eventually(t, 30*time.Second, "FRR learns node-1's CIDR", func() error { return l.frrHas(n1.cidr, n1.addr) })
	t.Logf("BGPPeer tor-a (rack=a) created: node-1 -> FRR Established after %v, FRR has %s via %s %v later",
		peered.Round(time.Millisecond), n1.cidr, n1.addr, learned.Round(time.Millisecond))
	for _, n := range []*labNode{n2, n3} {
		if ps, err := l.peers(n); err != nil || ps[frrAddr] != nil {
			t.Errorf("%s peers with FRR though tor-a selects rack=a only (%v)", n.name, err)
		}
	}
	for _, c := range []string{n2.cidr, n3.cidr} {
		if err := l.frrHas(c, ""); err != nil {
			t.Errorf("node-1 exported another node's CIDR to FRR (it is not a route reflector): %v", err)
		}
	}
	mid, err := l.sessions()
	must(t, err)
	if err := sameSessions(before, mid, frrAddr); err != nil {
		t.Errorf("creating BGPPeer tor-a touched other sessions: %v", err)
	}

	// Edit the hold time.
	g0, err := gobgpPeer(n1, frrAddr)
	must(t, err)
	_, frrEst0, err := l.frrSession(n1.addr)
	must(t, err)
	offsets := map[string]int64{}
	for _, n := range l.nodes {
		offsets[n.name] = logOffset(n)
	}
	if _, err := peers.Patch(ctx, "tor-a", types.MergePatchType, []byte(`{"spec":{"holdTime":"15s"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("editing BGPPeer tor-a: %v", err)
	}
	var g1 gobgpNeighbor
	took := testutil.Eventually(t, 30*time.Second, "node-1's GoBGP has hold time 15s for FRR", func() error {
		g1, err = gobgpPeer(n1, frrAddr)
		if err != nil {
			return err
		}
		if g1.ConfiguredHold != 15 {
			return fmt.Errorf("configured hold time %d", g1.ConfiguredHold)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // a reset, if any, would show by now
	after, err := l.sessions()
	must(t, err)
	if err := sameSessions(mid, after, frrAddr); err != nil {
		t.Errorf("editing BGPPeer tor-a touched other sessions: %v", err)
	}
	for _, n := range l.nodes {
		changes, err := peerChanges(n, offsets[n.name])
		must(t, err)
		want := []string(nil)
		if n == n1 {
			want = []string{"peer updated in place " + frrAddr}
		}
		if !slices.Equal(changes, want) {
			t.Errorf("%s: peer changes logged after the edit: %q, want %q", n.name, changes, want)
		}
	}
	g2, err := gobgpPeer(n1, frrAddr)
	must(t, err)
	frrState, frrEst1, err := l.frrSession(n1.addr)
	must(t, err)
	reset := after[n1.name][frrAddr] != mid[n1.name][frrAddr] || frrEst1 != frrEst0 || g2.UptimeSeconds != g0.UptimeSeconds
	if frrState != "Established" || after[n1.name][frrAddr] == 0 {
		t.Errorf("node-1's FRR session after the edit: FRR says %q", frrState)
	}
	t.Logf("BGPPeer tor-a holdTime 9s -> 15s: node-1's GoBGP configured hold %ds -> %ds after %v (updated in place, no other peer touched); "+
		"session reset: %v (GoBGP uptime since %d -> %d, FRR connections established %d -> %d); negotiated hold time %ds -> %ds "+
		"(GoBGP applies new timers from the next session on)",
		g0.ConfiguredHold, g1.ConfiguredHold, took.Round(time.Millisecond), reset,
		g0.UptimeSeconds, g2.UptimeSeconds, frrEst0, frrEst1, g0.NegotiatedHold, g2.NegotiatedHold)
	if reset {
		t.Errorf("editing the hold time reset node-1's session to FRR; GoBGP applies timers in place")
	}

	// Delete.
	must(t, peers.Delete(ctx, "tor-a", metav1.DeleteOptions{}))
	took = testutil.Eventually(t, 30*time.Second, "node-1's FRR session gone", func() error {
		if err := l.wantPeers(n1, n2.addr, n3.addr); err != nil {
			return err
		}
		if st, _, err := l.frrSession(n1.addr); err != nil || st == "Established" {
			return fmt.Errorf("FRR session to node-1: %q %v", st, err)
		}
		return l.frrHas(n1.cidr, "")
	})
	t.Logf("BGPPeer tor-a deleted: session gone on node-1 and FRR, %s withdrawn from FRR after %v", n1.cidr, took.Round(time.Millisecond))
	final, err := l.sessions()
	must(t, err)
	if err := sameSessions(before, final, frrAddr); err != nil {
		t.Errorf("BGPPeer tor-a's life touched other sessions: %v", err)
	}
	if err := l.meshConverged(n1, n2, n3); err != nil {
		t.Error(err)
	}
}

// 6. A node switched to route reflector: the others re-peer (clients keep
// only the reflector) without any daemon restart; routes and pings stay.
func (l *lab) testRouteReflector(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	n1, n2, n3 := l.node(1), l.node(2), l.node(3)
	pidsBefore, err := l.pids()
	must(t, err)
	started := map[string]int64{}
	for _, n := range l.nodes {
		st, err := l.status(n)
		must(t, err)
		started[n.name] = st.GetNode().GetStartedUnix()
	}
	// Measured, not asserted: switching roles re-creates sessions, so
	// traffic between the clients may pause while they re-peer.
	during := l.startPing(n2, n3)
	begin := time.Now()
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"244.0.0.1"}}}`, rrAnnot)
	if _, err := l.admin.CoreV1().Nodes().Patch(ctx, n1.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("annotating node-1 as route reflector: %v", err)
	}
	repeered := testutil.Eventually(t, 60*time.Second, "clients peer only with the reflector", func() error {
		return errors.Join(l.wantPeers(n1, n2.addr, n3.addr), l.wantPeers(n2, n1.addr), l.wantPeers(n3, n1.addr))
	})
	testutil.Eventually(t, 60*time.Second, "every CIDR in every kernel through the reflector", func() error {
		errs := []error{wantRoutes(n1, n2, n3), wantRoutes(n2, n1, n3), wantRoutes(n3, n1, n2)}
		// node-2 learns node-3's CIDR from node-1 (reflected, next hop
		// kept), so node-1's session carries two prefixes to each client.
		for _, n := range []*labNode{n2, n3} {
			ps, err := l.peers(n)
			if err != nil {
				return err
			}
			if got := ps[n1.addr].GetAccepted(); got != 2 {
				errs = append(errs, fmt.Errorf("%s accepts %d prefixes from the reflector, want 2", n.name, got))
			}
		}
		return errors.Join(errs...)
	})
	t.Logf("node-1 annotated route reflector: clients re-peered with it only after %v, every route back in every kernel after %v",
		repeered.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	if sent, got, err := during.stop(); err == nil {
		t.Logf("pod ping node-2 -> node-3 (every 200 ms) during the switch: %d sent, %d lost (about %v without a route)",
			sent, sent-got, time.Duration(sent-got)*200*time.Millisecond)
	}
	pidsAfter, err := l.pids()
	must(t, err)
	if !reflect.DeepEqual(pidsBefore, pidsAfter) {
		t.Errorf("podrouted PIDs changed: %v -> %v", pidsBefore, pidsAfter)
	}
	for _, n := range l.nodes {
		st, err := l.status(n)
		must(t, err)
		if st.GetNode().GetStartedUnix() != started[n.name] {
			t.Errorf("podrouted on %s restarted (started %d, was %d)", n.name, st.GetNode().GetStartedUnix(), started[n.name])
		}
	}
	must(t, l.pingAll(n1, n2, n3))
	t.Logf("same PIDs %v, pods ping across all node pairs", pidsAfter)
}

// 7. A bad annotation on a Node: a Warning Event (InvalidAnnotation) on
// that Node, and nothing else changes.
func (l *lab) testBadAnnotation(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	n2 := l.node(2)
	routesBefore, err := l.allRoutes()
	must(t, err)
	sessBefore, err := l.sessions()
	must(t, err)
	pidsBefore, err := l.pids()
	must(t, err)

	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"banana"}}}`, asnAnnot)
	if _, err := l.admin.CoreV1().Nodes().Patch(ctx, n2.name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p := fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, asnAnnot)
		_, _ = l.admin.CoreV1().Nodes().Patch(context.Background(), n2.name, types.MergePatchType, []byte(p), metav1.PatchOptions{})
	})
	var ev corev1.Event
	took := testutil.Eventually(t, 30*time.Second, "a Warning Event InvalidAnnotation on node-2", func() error {
		list, err := l.admin.CoreV1().Events("").List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Node,involvedObject.name=" + n2.name + ",reason=InvalidAnnotation",
		})
		if err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "banana") {
				ev = e
				return nil
			}
		}
		return fmt.Errorf("%d matching events, none a Warning naming the value", len(list.Items))
	})
	t.Logf("Event after %v: %s %s on %s/%s from %s: %s", took.Round(time.Millisecond), ev.Type, ev.Reason,
		ev.InvolvedObject.Kind, ev.InvolvedObject.Name, ev.Source.Component, ev.Message)
	time.Sleep(2 * time.Second) // any damage would show by now
	routesAfter, err := l.allRoutes()
	must(t, err)
	if !reflect.DeepEqual(routesBefore, routesAfter) {
		t.Errorf("kernel routes changed after the bad annotation: %v -> %v", routesBefore, routesAfter)
	}
	sessAfter, err := l.sessions()
	if err != nil {
		t.Errorf("sessions after the bad annotation: %v", err)
	} else if err := sameSessions(sessBefore, sessAfter); err != nil {
		t.Errorf("the bad annotation touched sessions: %v", err)
	}
	pidsAfter, err := l.pids()
	if err != nil || !reflect.DeepEqual(pidsBefore, pidsAfter) {
		t.Errorf("podrouted PIDs %v -> %v (%v)", pidsBefore, pidsAfter, err)
	}
	must(t, l.pingAll(l.nodes...))
	t.Logf("routes, sessions and PIDs unchanged, pods ping")
}

// 9. The API server stopped for 30 s: no route changes on any node, pods
// keep pinging, and podrouted reconnects by itself (a BGPPeer created
// after the restart is applied).
func (l *lab) testAPIServerDown(t *testing.T) {
	ctx := ctxFor(t, 5*time.Minute)
	n1, n2, n3 := l.node(1), l.node(2), l.node(3)
	routesBefore, err := l.allRoutes()
	must(t, err)
	sessBefore, err := l.sessions()
	must(t, err)
	streams := []*pingStream{l.startPing(n1, n2), l.startPing(n2, n3), l.startPing(n3, n1)}

	time.Sleep(time.Second)
	for _, n := range l.nodes {
		l.outage[n.name] = [2]int64{logOffset(n), 1 << 62}
	}
	stopBegin := time.Now()
	must(t, l.cp.StopAPIServer())
	t.Logf("kube-apiserver stopped in %v", time.Since(stopBegin).Round(time.Millisecond))
	if _, err := l.admin.CoreV1().Nodes().Get(ctx, n1.name, metav1.GetOptions{}); err == nil {
		t.Fatal("the API server still answers after StopAPIServer")
	}
	samples := 0
	var changes []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Second) {
		r, err := l.allRoutes()
		must(t, err)
		samples++
		if !reflect.DeepEqual(r, routesBefore) {
			changes = append(changes, fmt.Sprintf("%v: %v", time.Since(stopBegin).Round(time.Second), r))
		}
		if s, err := l.sessions(); err != nil {
			changes = append(changes, fmt.Sprintf("%v: sessions: %v", time.Since(stopBegin).Round(time.Second), err))
		} else if err := sameSessions(sessBefore, s); err != nil {
			changes = append(changes, fmt.Sprintf("%v: sessions: %v", time.Since(stopBegin).Round(time.Second), err))
		}
	}
	down := time.Since(stopBegin)
	startBegin := time.Now()
	if err := l.cp.StartAPIServer(ctx); err != nil {
		t.Fatalf("starting the API server again: %v", err)
	}
	restarted := time.Now()
	t.Logf("kube-apiserver down for %v, ready again %v after its start", down.Round(time.Millisecond), restarted.Sub(startBegin).Round(time.Millisecond))
	r, err := l.allRoutes()
	must(t, err)
	if !reflect.DeepEqual(r, routesBefore) {
		changes = append(changes, fmt.Sprintf("after restart: %v", r))
	}
	time.Sleep(time.Second)
	for _, s := range streams {
		sent, got, err := s.stop()
		if err != nil {
			t.Errorf("pod ping %s: %v", s.what, err)
			continue
		}
		t.Logf("pod ping %s across the outage: %d sent, %d answered", s.what, sent, got)
		// One echo may be in flight when ping is interrupted.
		if sent-got > 1 || sent < 150 {
			t.Errorf("pod ping %s: %d of %d lost", s.what, sent-got, sent)
		}
	}
	if len(changes) > 0 {
		t.Errorf("routes or sessions changed while the API server was away (before: %v):\n%s", routesBefore, strings.Join(changes, "\n"))
	} else {
		t.Logf("kernel routes (proto %d) and sessions identical on all 3 nodes in %d samples during the outage and after", routeProto, samples)
	}

	// podrouted reconnects by itself: a BGPPeer created now is applied.
	peers := l.dyn.Resource(cluster.BGPPeerResource)
	if _, err := peers.Create(ctx, bgpPeer("tor-b", "rack=b", "9s"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating BGPPeer tor-b after the restart: %v", err)
	}
	t.Cleanup(func() { _ = peers.Delete(context.Background(), "tor-b", metav1.DeleteOptions{}) })
	// client-go's reflectors retry with a jittered exponential backoff
	// (0.8 s doubling to 30 s, up to twice that with jitter), so after a
	// 30 s outage the first successful re-list may be a minute away.
	testutil.Eventually(t, 150*time.Second, "node-2 peers with FRR after the restart", func() error {
		return errors.Join(l.wantPeers(n2, n1.addr, frrAddr), l.frrHas(n2.cidr, n2.addr))
	})
	t.Logf("BGPPeer tor-b created after the restart: node-2 Established with FRR and FRR has %s %v after the API server was ready again",
		n2.cidr, time.Since(restarted).Round(time.Millisecond))
	for _, n := range l.nodes {
		l.outage[n.name] = [2]int64{l.outage[n.name][0], logOffset(n)}
	}
	must(t, peers.Delete(ctx, "tor-b", metav1.DeleteOptions{}))
	testutil.Eventually(t, 30*time.Second, "node-2's FRR session gone", func() error { return l.wantPeers(n2, n1.addr) })
	if err := errors.Join(wantRoutes(n1, n2, n3), wantRoutes(n2, n1, n3), wantRoutes(n3, n1, n2)); err != nil {
		t.Error(err)
	}
}
