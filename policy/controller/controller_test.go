package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"

	ptestutil "github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/policy"
	"github.com/podroute/podroute/policy/nft"
)

// fakeKernel records what it was asked to program; it stands in for the
// nftables side, which has its own tests in namespaces. These tests prove
// the event plumbing only.
type fakeKernel struct {
	mu      sync.Mutex
	results []*policy.Result
	state   *nft.State
	forgot  int
	fail    bool
}

func (k *fakeKernel) Sync(_ context.Context, res *policy.Result) (nft.Stats, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fail {
		return nft.Stats{}, fmt.Errorf("nft said no")
	}
	k.results = append(k.results, res)
	k.state = nft.Render(res)
	return nft.Stats{Ops: 1, Counts: k.state.Counts()}, nil
}

func (k *fakeKernel) Current() *nft.State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.state
}

func (k *fakeKernel) Forget() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forgot++
}

func (k *fakeKernel) last() *policy.Result {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.results) == 0 {
		return nil
	}
	return k.results[len(k.results)-1]
}

func (k *fakeKernel) syncs() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.results)
}

func testPod(ns, name, node, ip string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels,
			Annotations: map[string]string{"big": strings.Repeat("x", 4096)}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{
			{Name: "app", Image: "agnhost", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
			{Name: "sidecar", Image: "envoy", Env: []corev1.EnvVar{{Name: "X", Value: "y"}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
}

func start(t *testing.T, objs ...any) (*Controller, *fakeKernel, *fake.Clientset, *prometheus.Registry) {
	t.Helper()
	var rt []any
	rt = append(rt, objs...)
	client := fake.NewClientset()
	for _, o := range rt {
		var err error
		switch x := o.(type) {
		case *corev1.Pod:
			_, err = client.CoreV1().Pods(x.Namespace).Create(t.Context(), x, metav1.CreateOptions{})
		case *corev1.Namespace:
			_, err = client.CoreV1().Namespaces().Create(t.Context(), x, metav1.CreateOptions{})
		case *networkingv1.NetworkPolicy:
			_, err = client.NetworkingV1().NetworkPolicies(x.Namespace).Create(t.Context(), x, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	k := &fakeKernel{}
	reg := prometheus.NewRegistry()
	c, err := New(Options{NodeName: "n1", Client: client, Kernel: k, Registry: reg, Settle: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("no first sync within 10s")
	}
	return c, k, client, reg
}

func denyAll(ns string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
}

func TestControllerFollowsEvents(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{"team": "a"}}}
	web := testPod("a", "web", "n1", "10.0.0.10", map[string]string{"app": "web"})
	remote := testPod("a", "client", "n2", "10.0.1.20", map[string]string{"app": "client"})
	c, k, client, reg := start(t, ns, web, remote)

	// The first sync happens with complete caches: both pods known.
	first := k.last()
	if len(first.Pods) != 1 || first.Pods[policy.Key{Namespace: "a", Name: "web"}] == nil {
		t.Fatalf("first sync's local pods %v, want a/web only", first.Pods)
	}

	// A policy appears: web is isolated.
	ctx := t.Context()
	if _, err := client.NetworkingV1().NetworkPolicies("a").Create(ctx, denyAll("a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ptestutil.Eventually(t, 5*time.Second, "web isolated", func() error {
		if lp := k.last().Pods[policy.Key{Namespace: "a", Name: "web"}]; len(lp.Ingress) != 1 {
			return fmt.Errorf("web isolated by %v", lp.Ingress)
		}
		return nil
	})

	// An allow rule from app=client; then the remote pod's labels change
	// and it drops out of the peers.
	allow := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "allow"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}}}}}}}}
	if _, err := client.NetworkingV1().NetworkPolicies("a").Create(ctx, allow, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	peers := func() int {
		c := k.last().Policies[policy.Key{Namespace: "a", Name: "allow"}]
		if c == nil {
			return -1
		}
		return len(c.Ingress[0].Peers)
	}
	ptestutil.Eventually(t, 5*time.Second, "client is a peer", func() error {
		if n := peers(); n != 1 {
			return fmt.Errorf("%d peers", n)
		}
		return nil
	})
	remote.Labels = map[string]string{"app": "other"}
	if _, err := client.CoreV1().Pods("a").Update(ctx, remote, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ptestutil.Eventually(t, 5*time.Second, "client no longer a peer", func() error {
		if n := peers(); n != 0 {
			return fmt.Errorf("%d peers", n)
		}
		return nil
	})

	// Status: per local pod, the policies and the rule counts.
	st := c.Status()
	if len(st) != 1 || st[0].Pod != "a/web" || strings.Join(st[0].Ingress, ",") != "a/allow,a/deny" || st[0].IngressRules == 0 || st[0].EgressRules != 0 {
		t.Errorf("status %+v, want a/web isolated by a/allow and a/deny with rules for ingress only", st)
	}

	// Metrics are on the registry passed in.
	if got := testutil.ToFloat64(c.metrics.policies); got != 2 {
		t.Errorf("podroute_policy_policies = %v, want 2", got)
	}
	n, err := testutil.GatherAndCount(reg, "podroute_policy_sync_duration_seconds")
	if err != nil || n == 0 {
		t.Errorf("sync duration not gathered: %d, %v", n, err)
	}

	// A burst of events becomes a few syncs, not one per event.
	before := k.syncs()
	for i := 0; i < 50; i++ {
		p := testPod("a", fmt.Sprintf("burst-%d", i), "n2", fmt.Sprintf("10.0.2.%d", i+1), map[string]string{"app": "client"})
		if _, err := client.CoreV1().Pods("a").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ptestutil.Eventually(t, 5*time.Second, "burst synced", func() error {
		if n := peers(); n == 0 {
			return fmt.Errorf("%d peers", n)
		}
		if got := len(k.last().Policies[policy.Key{Namespace: "a", Name: "allow"}].Ingress[0].Peers); got == 0 {
			return fmt.Errorf("no peers")
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if syncs := k.syncs() - before; syncs > 25 {
		t.Errorf("50 pod events caused %d syncs; the settle time should gather them", syncs)
	}
}

func TestControllerReportsProblems(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
	web := testPod("a", "web", "n1", "10.0.0.10", map[string]string{"app": "web"})
	icmp := corev1.Protocol("ICMP")
	port := intstr.FromInt32(0)
	bad := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "bad", UID: "uid-1"},
		Spec: networkingv1.NetworkPolicySpec{Ingress: []networkingv1.NetworkPolicyIngressRule{{
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &icmp, Port: &port}}}}}}
	c, k, client, _ := start(t, ns, web, bad)
	if len(k.last().Problems) != 1 || len(c.Problems()) != 1 {
		t.Fatalf("problems %v, want one", k.last().Problems)
	}
	if got := testutil.ToFloat64(c.metrics.problems); got != 1 {
		t.Errorf("podroute_policy_problems = %v, want 1", got)
	}
	ptestutil.Eventually(t, 5*time.Second, "an Event on the policy", func() error {
		evs, err := client.CoreV1().Events("a").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Kind == "NetworkPolicy" && e.InvolvedObject.Name == "bad" && e.Reason == "UnsupportedProtocol" && e.Type == corev1.EventTypeWarning {
				return nil
			}
		}
		return fmt.Errorf("events: %v", evs.Items)
	})
}

func TestControllerKeepsGoingWhenTheKernelFails(t *testing.T) {
	web := testPod("a", "web", "n1", "10.0.0.10", map[string]string{"app": "web"})
	c, k, client, _ := start(t, web)
	k.mu.Lock()
	k.fail = true
	k.mu.Unlock()
	if _, err := client.NetworkingV1().NetworkPolicies("a").Create(t.Context(), denyAll("a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ptestutil.Eventually(t, 5*time.Second, "a failed sync counted", func() error {
		if testutil.ToFloat64(c.metrics.syncErrors) == 0 {
			return fmt.Errorf("no sync error yet")
		}
		return nil
	})
	k.mu.Lock()
	k.fail = false
	k.mu.Unlock()
	ptestutil.Eventually(t, 10*time.Second, "the retry programs the policy", func() error {
		if lp := k.last().Pods[policy.Key{Namespace: "a", Name: "web"}]; len(lp.Ingress) != 1 {
			return fmt.Errorf("web isolated by %v", lp.Ingress)
		}
		return nil
	})
}

func TestStripKeepsWhatComputeReads(t *testing.T) {
	p := testPod("a", "web", "n1", "10.0.0.10", map[string]string{"app": "web"})
	o, err := Strip(p)
	if err != nil {
		t.Fatal(err)
	}
	s := o.(*corev1.Pod)
	if s.Annotations != nil || len(s.Spec.Containers) != 1 || s.Spec.Containers[0].Image != "" ||
		s.Spec.Containers[0].Ports[0].Name != "http" || s.Labels["app"] != "web" || s.Status.PodIPs[0].IP != "10.0.0.10" || s.Spec.NodeName != "n1" {
		t.Errorf("stripped pod %+v", s)
	}
	// The stripped pod computes the same as the full one.
	pol := denyAll("a")
	a := policy.Compute(policy.Input{NodeName: "n1", Pods: []*corev1.Pod{p}, Policies: []*networkingv1.NetworkPolicy{pol}})
	b := policy.Compute(policy.Input{NodeName: "n1", Pods: []*corev1.Pod{s}, Policies: []*networkingv1.NetworkPolicy{pol}})
	if len(a.Pods) != len(b.Pods) || len(a.Policies) != len(b.Policies) {
		t.Errorf("stripping changed the result: %v vs %v", a, b)
	}
}
