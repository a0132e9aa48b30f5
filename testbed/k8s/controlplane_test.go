package k8sharness_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podroute/podroute/internal/testutil"
	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/netns"
)

const (
	clusterCIDR = "10.244.0.0/16"
	podNS       = "podroute-system"
	podSA       = "podrouted"
)

// startControlPlane starts a control plane for one test and registers its
// teardown; on failure the components' log tails are printed first.
func startControlPlane(t *testing.T, opt k8sharness.Options) *k8sharness.ControlPlane {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver (10-30 s); skipped with -short")
	}
	if err := k8sharness.CheckBinaries(opt.BinDir, opt.EtcdPath, opt.ControllerManager != nil); err != nil {
		t.Skipf("skipping: %v", err)
	}
	opt.Dir = filepath.Join(t.TempDir(), "k8s")
	opt.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cp, err := k8sharness.Start(ctx, opt)
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range []string{k8sharness.Etcd, k8sharness.APIServer, k8sharness.ControllerManager} {
				t.Logf("last lines of %s:\n%s", c, cp.LogTail(c, 40))
			}
		}
	})
	return cp
}

func clientset(t *testing.T, cp *k8sharness.ControlPlane, token string) *kubernetes.Clientset {
	t.Helper()
	cs, err := cp.Clientset(token)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func node(name string, podCIDRs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
		n.Spec.PodCIDRs = podCIDRs
	}
	return n
}

// waitPodCIDR waits until kube-controller-manager's nodeipam controller gives
// the Node a /24 from clusterCIDR, and returns it.
func waitPodCIDR(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) string {
	t.Helper()
	var got string
	testutil.Eventually(t, 30*time.Second, "node "+name+" gets spec.podCIDRs from kube-controller-manager", func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(n.Spec.PodCIDRs) == 0 {
			return errors.New("no podCIDRs yet")
		}
		got = n.Spec.PodCIDRs[0]
		return nil
	})
	p, err := netip.ParsePrefix(got)
	if err != nil || p.Bits() != 24 || !netip.MustParsePrefix(clusterCIDR).Contains(p.Addr()) {
		t.Fatalf("node %s: podCIDR %q is not a /24 inside %s (%v)", name, got, clusterCIDR, err)
	}
	return got
}

// TestControlPlane runs the real etcd + kube-apiserver + kube-controller-manager
// and checks what podroute's Kubernetes mode relies on: Nodes with pod CIDRs
// are stored and listed back, RBAC allows the admin and denies others until
// bound, ServiceAccount tokens from the TokenRequest API work, nodeipam
// allocates pod CIDRs, and an API server restart loses nothing.
func TestControlPlane(t *testing.T) {
	cp := startControlPlane(t, k8sharness.Options{
		NodeNames:         []string{"node-a"},
		Tokens:            []k8sharness.Token{{User: "nobody"}},
		ControllerManager: &k8sharness.ControllerManagerOptions{ClusterCIDRs: []string{clusterCIDR}},
	})
	tm := cp.Timings()
	t.Logf("start-up: etcd %v, kube-apiserver %v (process start to /readyz ok), kube-controller-manager %v",
		tm.Etcd.Round(time.Millisecond), tm.APIServer.Round(time.Millisecond), tm.ControllerManager.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := clientset(t, cp, cp.AdminToken)

	// Each component is recorded with a marker its command line contains,
	// which is what the lab checks before signalling a recorded PID.
	procs := cp.Processes()
	if len(procs) != 3 {
		t.Fatalf("Processes: %+v, want etcd, kube-apiserver, kube-controller-manager", procs)
	}
	for _, p := range procs {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), p.Marker) {
			t.Fatalf("%s (pid %d): command line %q does not contain marker %q (%v)", p.Name, p.PID, cmdline, p.Marker, err)
		}
	}

	// A Node with pod CIDRs, as the lab registers them, listed back.
	const manualCIDR = "10.244.200.0/24"
	if _, err := admin.CoreV1().Nodes().Create(ctx, node("node-a", manualCIDR), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating node-a: %v", err)
	}
	nodes, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("listing nodes: %v", err)
	}
	if len(nodes.Items) != 1 || nodes.Items[0].Name != "node-a" || strings.Join(nodes.Items[0].Spec.PodCIDRs, ",") != manualCIDR {
		t.Fatalf("nodes listed back: %+v, want node-a with podCIDRs [%s]", nodes.Items, manualCIDR)
	}

	// RBAC: an authenticated user with no bindings is denied.
	nobodyTok, _ := cp.TokenFor("nobody")
	_, err = clientset(t, cp, nobodyTok).CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("user nobody listing nodes: got %v, want Forbidden", err)
	}
	// A node identity reads Nodes (Node authorizer) but not Secrets.
	nodeTok, _ := cp.NodeToken("node-a")
	nodeCS := clientset(t, cp, nodeTok)
	if _, err := nodeCS.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{}); err != nil {
		t.Fatalf("system:node:node-a getting its Node: %v", err)
	}
	if _, err := nodeCS.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("system:node:node-a listing secrets: got %v, want Forbidden", err)
	}

	// A real ServiceAccount token (TokenRequest), as podrouted's pod gets:
	// denied until a ClusterRole is bound to the ServiceAccount, then allowed.
	if err := cp.EnsureServiceAccount(ctx, podNS, podSA); err != nil {
		t.Fatal(err)
	}
	saTok, err := cp.ServiceAccountToken(ctx, podNS, podSA, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	saCS := clientset(t, cp, saTok)
	if _, err := saCS.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("serviceaccount %s/%s listing nodes before any binding: got %v, want Forbidden", podNS, podSA, err)
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "podroute-test-node-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "podroute-test-node-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: podNS, Name: podSA}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "serviceaccount lists nodes once bound", func() error {
		_, err := saCS.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		return err
	})
	if _, err := saCS.CoreV1().Secrets(podNS).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("serviceaccount listing secrets: got %v, want Forbidden", err)
	}

	// kubectl from the same build, with the admin and the ServiceAccount.
	out, err := cp.Kubectl(ctx, "get", "nodes", "-o", "name")
	if err != nil || strings.TrimSpace(string(out)) != "node/node-a" {
		t.Fatalf("kubectl get nodes: %q, %v", out, err)
	}
	saKubeconfig, err := cp.Kubeconfig("podrouted", saTok)
	if err != nil {
		t.Fatal(err)
	}
	out, err = cp.KubectlWith(ctx, saKubeconfig, "auth", "can-i", "delete", "nodes")
	if strings.TrimSpace(string(out)) != "no" { // can-i exits 1 for "no"
		t.Fatalf("kubectl auth can-i delete nodes as the serviceaccount: %q, %v; want no", out, err)
	}
	out, err = cp.Kubectl(ctx, "version", "-o", "yaml")
	if err != nil || !strings.Contains(string(out), "gitVersion: "+k8sharness.Version) {
		t.Fatalf("kubectl version: %s, %v; want client and server %s", out, err, k8sharness.Version)
	}

	// kube-controller-manager's nodeipam gives a Node without pod CIDRs one
	// that does not collide with the one set by hand.
	if _, err := admin.CoreV1().Nodes().Create(ctx, node("node-b"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cidrB := waitPodCIDR(t, ctx, admin, "node-b")
	if cidrB == manualCIDR {
		t.Fatalf("node-b got %s, already node-a's", cidrB)
	}
	t.Logf("nodeipam gave node-b %s", cidrB)

	// Restart the API server only: etcd keeps every object, the same tokens
	// (static and ServiceAccount) keep working, the controller manager
	// reconnects by itself.
	before := time.Now()
	if err := cp.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{}); err == nil {
		t.Fatal("API server still answers after StopAPIServer")
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("API server restart took %v (ready again after %v)", time.Since(before).Round(time.Millisecond), cp.Timings().APIServer.Round(time.Millisecond))
	n, err := admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil || strings.Join(n.Spec.PodCIDRs, ",") != manualCIDR {
		t.Fatalf("node-a after the restart: %v, %v", n, err)
	}
	if _, err := saCS.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("serviceaccount token after the restart: %v", err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, node("node-c"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if c := waitPodCIDR(t, ctx, admin, "node-c"); c == manualCIDR || c == cidrB {
		t.Fatalf("node-c got %s, already taken", c)
	}

	// Stop tears everything down: the port is closed and only logs/ is left.
	dir := cp.Dir()
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(cp.URL, "https://")
	if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", host)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "logs" {
			t.Errorf("%s left in %s after Stop", e.Name(), dir)
		}
	}
}

// TestControlPlaneDualStack checks that nodeipam hands out one IPv4 and one
// IPv6 pod CIDR per Node, as the lab's dual-stack topology needs.
func TestControlPlaneDualStack(t *testing.T) {
	cp := startControlPlane(t, k8sharness.Options{
		ServiceClusterIPRanges: []string{"10.96.0.0/16", "fd00:10:96::/112"},
		ControllerManager: &k8sharness.ControllerManagerOptions{
			ClusterCIDRs: []string{clusterCIDR, "fd00:10:244::/56"},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := clientset(t, cp, cp.AdminToken)
	if _, err := admin.CoreV1().Nodes().Create(ctx, node("node-a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	testutil.Eventually(t, 30*time.Second, "node-a gets an IPv4 and an IPv6 pod CIDR", func() error {
		n, err := admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got = n.Spec.PodCIDRs; len(got) != 2 {
			return errors.New("podCIDRs: " + strings.Join(got, ","))
		}
		return nil
	})
	v4, err4 := netip.ParsePrefix(got[0])
	v6, err6 := netip.ParsePrefix(got[1])
	if err4 != nil || err6 != nil || !v4.Addr().Is4() || v4.Bits() != 24 || !v6.Addr().Is6() || v6.Bits() != 64 ||
		!netip.MustParsePrefix("fd00:10:244::/56").Contains(v6.Addr()) {
		t.Fatalf("podCIDRs %v: want an IPv4 /24 then an IPv6 /64 inside the cluster CIDRs", got)
	}
	t.Logf("nodeipam gave node-a %v", got)
	if err := cp.Running(); err != nil {
		t.Fatal(err)
	}
}

// TestControlPlaneStartFailureCleansUp gives kube-controller-manager a node
// mask it refuses: Start must fail naming the cause and leave nothing
// running and nothing but logs behind.
func TestControlPlaneStartFailureCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	if err := k8sharness.CheckBinaries("", "", true); err != nil {
		t.Skipf("skipping: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "k8s")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := k8sharness.Start(ctx, k8sharness.Options{
		Dir:  dir,
		Logf: t.Logf,
		ControllerManager: &k8sharness.ControllerManagerOptions{
			ClusterCIDRs:         []string{"fd00:10:244::/48"},
			NodeCIDRMaskSizeIPv6: 80, // 32 bits of nodes: more than it allows
		},
	})
	if err == nil {
		cp.Stop()
		t.Fatal("Start succeeded with a node CIDR mask kube-controller-manager refuses")
	}
	if !strings.Contains(err.Error(), "kube-controller-manager exited") || !strings.Contains(err.Error(), "too big") {
		t.Fatalf("Start's error does not say what failed: %v", err)
	}
	entries, rerr := os.ReadDir(dir)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, e := range entries {
		if e.Name() != "logs" {
			t.Errorf("%s left in %s after a failed Start", e.Name(), dir)
		}
	}
	// etcd and the API server were stopped: their ports (in the log) are closed.
	logs, _ := os.ReadFile(filepath.Join(dir, "logs", k8sharness.APIServer+".log"))
	found := false
	for _, l := range strings.Split(string(logs), "\n") {
		if i := strings.Index(l, "Serving securely on "); i >= 0 {
			found = true
			host := strings.Fields(l[i+len("Serving securely on "):])[0]
			if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
				c.Close()
				t.Errorf("kube-apiserver still listening on %s after a failed Start", host)
			}
		}
	}
	if !found {
		t.Errorf("no \"Serving securely on\" line in the kube-apiserver log: did it start?")
	}
}

// TestControlPlaneInNetns runs the control plane inside a network namespace,
// as the lab does, on an address that exists only there: clients from this
// package reach it by dialling from inside, the root namespace cannot.
func TestControlPlaneInNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if err := k8sharness.CheckBinaries("", "", false); err != nil {
		t.Skipf("skipping: %v", err)
	}
	ns, err := netns.Create(netns.NewRunID() + "-k8s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Delete(); err != nil {
			t.Errorf("deleting namespace: %v", err)
		}
	})
	const addr = "10.255.0.1"
	if err := ns.AddAddr("lo", addr+"/32"); err != nil {
		t.Fatal(err)
	}
	cp := startControlPlane(t, k8sharness.Options{Netns: ns, BindAddress: addr})
	t.Logf("kube-apiserver in namespace %s ready after %v", ns.Name, cp.Timings().APIServer.Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	admin := clientset(t, cp, cp.AdminToken)
	if _, err := admin.CoreV1().Nodes().Create(ctx, node("node-a", "10.244.1.0/24"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a node through the namespace: %v", err)
	}
	out, err := cp.Kubectl(ctx, "get", "node", "node-a", "-o", "jsonpath={.spec.podCIDRs}")
	if err != nil || !strings.Contains(string(out), "10.244.1.0/24") {
		t.Fatalf("kubectl in the namespace: %q, %v", out, err)
	}
	host := strings.TrimPrefix(cp.URL, "https://")
	if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s reachable from the root namespace; it should exist only in %s", host, ns.Name)
	}
	if err := cp.RestartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Get(ctx, "node-a", metav1.GetOptions{}); err != nil {
		t.Fatalf("node-a after restarting the API server in the namespace: %v", err)
	}
}
