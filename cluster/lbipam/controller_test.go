package lbipam

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/internal/testutil"
)

const testNS = "podroute-system"

// instance is one allocator, as one podrouted would run it: its own
// informer over the shared (fake) API server.
type instance struct {
	c      *Controller
	cancel context.CancelFunc
	done   chan struct{}
}

func startInstance(t *testing.T, client *fake.Clientset, identity string, svc cluster.ServiceConfig, lb cluster.LoadBalancerConfig) *instance {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(cluster.StripServiceObjects))
	inf := factory.Core().V1().Services().Informer()
	factory.Start(ctx.Done())
	c, err := New(Options{
		Client: client, Services: inf, Namespace: testNS, Identity: identity,
		Log:           slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.SetConfig(svc, lb)
	in := &instance{c: c, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(in.done)
		_ = c.Run(ctx)
	}()
	t.Cleanup(in.stop)
	return in
}

func (in *instance) stop() {
	in.cancel()
	<-in.done
	// Run returns once the term's work has; the informer stops with ctx.
}

func newLB(name string, annotations map[string]string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: annotations, CreationTimestamp: metav1.Now()},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIPs: []string{"10.96.0.1"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}},
	}
}

func create(t *testing.T, client *fake.Clientset, svc *corev1.Service) {
	t.Helper()
	// Distinct creation times, so "oldest first" is defined.
	time.Sleep(1100 * time.Millisecond / 100)
	svc.CreationTimestamp = metav1.NewTime(time.Now())
	if _, err := client.CoreV1().Services(svc.Namespace).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// ingress returns every Service's status addresses.
func ingress(t *testing.T, client *fake.Clientset) map[string][]string {
	t.Helper()
	list, err := client.CoreV1().Services("").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, s := range list.Items {
		for _, i := range s.Status.LoadBalancer.Ingress {
			out[s.Name] = append(out[s.Name], i.IP)
		}
	}
	return out
}

// unique fails if an address is in two Services' statuses.
func unique(t *testing.T, client *fake.Clientset) map[string][]string {
	t.Helper()
	got := ingress(t, client)
	owner := map[string]string{}
	for svc, as := range got {
		for _, a := range as {
			if o, dup := owner[a]; dup {
				t.Errorf("%s handed out twice: %s and %s", a, o, svc)
			}
			owner[a] = svc
		}
	}
	return got
}

func waitIngress(t *testing.T, client *fake.Clientset, svc string, want ...string) {
	t.Helper()
	testutil.EventuallyEvery(t, 20*time.Millisecond, 10*time.Second, svc+" gets "+strings.Join(want, ","), func() error {
		got := ingress(t, client)[svc]
		if strings.Join(got, ",") != strings.Join(want, ",") {
			return fmt.Errorf("%s has %v", svc, got)
		}
		return nil
	})
}

// waitEvent waits for an Event on Service svc with reason, and returns its
// message.
func waitEvent(t *testing.T, client *fake.Clientset, svc, reason string) string {
	t.Helper()
	var msg string
	testutil.EventuallyEvery(t, 20*time.Millisecond, 10*time.Second, "Event "+reason+" on "+svc, func() error {
		list, err := client.CoreV1().Events("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range list.Items {
			if e.InvolvedObject.Kind == "Service" && e.InvolvedObject.Name == svc && e.Reason == reason {
				msg = e.Type + " " + e.Message
				return nil
			}
			seen = append(seen, e.InvolvedObject.Name+":"+e.Reason)
		}
		return fmt.Errorf("events %v", seen)
	})
	return msg
}

func testConfig(pools ...cluster.Pool) (cluster.ServiceConfig, cluster.LoadBalancerConfig) {
	return cluster.ServiceConfig{}, cluster.LoadBalancerConfig{Class: cluster.DefaultLoadBalancerClass, AllocateClassless: true, Pools: pools}
}

// Allocation, exhaustion (with an Event naming the pool), release, a type
// change, and two Services asking for one address, through one allocator
// against a fake API server.
func TestControllerLifecycle(t *testing.T) {
	client := fake.NewClientset()
	svcCfg, lbc := testConfig(pool("small", "198.51.100.0/31"), pool("named", "198.51.100.16/29"))
	in := startInstance(t, client, "node-1", svcCfg, lbc)
	testutil.Eventually(t, 10*time.Second, "node-1 leads", func() error {
		if !in.c.Leading() {
			return fmt.Errorf("not leading")
		}
		return nil
	})

	create(t, client, newLB("a", nil))
	waitIngress(t, client, "a", "198.51.100.0")
	if m := waitEvent(t, client, "a", "AddressAllocated"); !strings.Contains(m, "Normal LoadBalancer address 198.51.100.0 allocated from pool small") {
		t.Errorf("allocation event: %q", m)
	}
	create(t, client, newLB("b", nil))
	waitIngress(t, client, "b", "198.51.100.1")
	// Pools are tried in order: "named" is not used while "small" has room,
	// and exhaustion means every pool is full. Make it so with a pool name.
	create(t, client, newLB("c", map[string]string{cluster.AnnotationAddressPool: "small"}))
	m := waitEvent(t, client, "c", "PoolExhausted")
	if !strings.Contains(m, "Warning no free IPv4 address: pool small 198.51.100.0/31 (2 of 2 in use)") {
		t.Errorf("exhaustion event: %q", m)
	}
	t.Logf("exhaustion: %s", m)

	// Release: a deleted, then b becomes a ClusterIP Service. c gets a's
	// address; the next one gets b's.
	if err := client.CoreV1().Services("default").Delete(context.Background(), "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, client, "c", "198.51.100.0")
	b, err := client.CoreV1().Services("default").Get(context.Background(), "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Spec.Type = corev1.ServiceTypeClusterIP
	// kube-apiserver clears status.loadBalancer when a Service stops being
	// a LoadBalancer (pkg/registry/core/service/strategy.go); the fake
	// does not. (Plan ignores a stale status anyway: TestPlan.)
	b.Status = corev1.ServiceStatus{}
	if _, err := client.CoreV1().Services("default").Update(context.Background(), b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	create(t, client, newLB("d", nil))
	waitIngress(t, client, "d", "198.51.100.1")

	// Two Services asking for the same address: the first gets it, the
	// second an Event naming the first; when the first goes, the second
	// gets it.
	ask := map[string]string{cluster.AnnotationLoadBalancerIPs: "198.51.100.20"}
	create(t, client, newLB("e", ask))
	waitIngress(t, client, "e", "198.51.100.20")
	create(t, client, newLB("f", ask))
	if m := waitEvent(t, client, "f", "AddressInUse"); !strings.Contains(m, "198.51.100.20 is already allocated to Service default/e") {
		t.Errorf("AddressInUse event: %q", m)
	}
	if got := ingress(t, client)["f"]; len(got) != 0 {
		t.Errorf("f got %v while e holds the address it asks for", got)
	}
	if err := client.CoreV1().Services("default").Delete(context.Background(), "e", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIngress(t, client, "f", "198.51.100.20")

	// A bad annotation: a Warning Event from the leader, and allocation
	// goes on as if it were absent.
	create(t, client, newLB("g", map[string]string{cluster.AnnotationLoadBalancerIPs: "not-an-ip", cluster.AnnotationAddressPool: "named"}))
	if m := waitEvent(t, client, "g", "InvalidService"); !strings.Contains(m, `"not-an-ip" is not an IP address`) {
		t.Errorf("InvalidService event: %q", m)
	}
	waitIngress(t, client, "g", "198.51.100.16")
	unique(t, client)
}

// A restart in the middle: one allocator stops after handing out part of
// a burst, a new instance (new informer, nothing in memory) takes over
// from the API state alone and hands out nothing twice.
func TestControllerRestartInTheMiddle(t *testing.T) {
	client := fake.NewClientset()
	svcCfg, lbc := testConfig(pool("p", "198.51.100.0/27"))
	first := startInstance(t, client, "node-1", svcCfg, lbc)
	testutil.Eventually(t, 10*time.Second, "node-1 leads", func() error {
		if !first.c.Leading() {
			return fmt.Errorf("not leading")
		}
		return nil
	})
	for i := range 20 {
		create(t, client, newLB(fmt.Sprintf("s%02d", i), nil))
	}
	testutil.EventuallyEvery(t, 5*time.Millisecond, 10*time.Second, "a few allocated", func() error {
		if n := len(ingress(t, client)); n < 3 {
			return fmt.Errorf("%d allocated", n)
		}
		return nil
	})
	first.stop()
	before := unique(t, client)
	t.Logf("first allocator stopped after %d of 20 Services had an address", len(before))
	for i := 20; i < 25; i++ {
		create(t, client, newLB(fmt.Sprintf("s%02d", i), nil))
	}
	second := startInstance(t, client, "node-2", svcCfg, lbc)
	testutil.Eventually(t, 15*time.Second, "all 25 allocated by the second instance", func() error {
		if n := len(ingress(t, client)); n != 25 {
			return fmt.Errorf("%d allocated", n)
		}
		return nil
	})
	after := unique(t, client)
	for svc, as := range before {
		if strings.Join(after[svc], ",") != strings.Join(as, ",") {
			t.Errorf("%s had %v before the restart, %v after", svc, as, after[svc])
		}
	}
	if !second.c.Leading() {
		t.Error("the second instance does not lead")
	}
	var all []string
	for _, as := range after {
		all = append(all, as...)
	}
	sort.Strings(all)
	t.Logf("after the restart: %d Services, %d distinct addresses", len(after), len(all))
}

// Two instances at once: one leads, only the leader writes; when it stops
// (releasing the Lease) the other takes over.
func TestControllerOneLeader(t *testing.T) {
	client := fake.NewClientset()
	var patches atomic.Int64
	var finalizerPatches atomic.Int64
	client.PrependReactor("patch", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() == "status" {
			patches.Add(1)
		} else {
			finalizerPatches.Add(1)
		}
		return false, nil, nil
	})
	svcCfg, lbc := testConfig(pool("p", "198.51.100.0/28"))
	a := startInstance(t, client, "node-a", svcCfg, lbc)
	b := startInstance(t, client, "node-b", svcCfg, lbc)
	var leader, other *instance
	testutil.Eventually(t, 10*time.Second, "one leader", func() error {
		switch {
		case a.c.Leading() && b.c.Leading():
			return fmt.Errorf("both lead")
		case a.c.Leading():
			leader, other = a, b
		case b.c.Leading():
			leader, other = b, a
		default:
			return fmt.Errorf("none leads")
		}
		return nil
	})
	create(t, client, newLB("x", nil))
	waitIngress(t, client, "x", "198.51.100.0")
	time.Sleep(300 * time.Millisecond)
	if n := patches.Load(); n != 1 {
		t.Errorf("%d status writes for one Service, want 1 (only the leader writes)", n)
	}
	if n := finalizerPatches.Load(); n != 1 {
		t.Errorf("%d finalizer writes for one Service, want 1", n)
	}
	begin := time.Now()
	leader.stop()
	testutil.Eventually(t, 10*time.Second, "the other takes over", func() error {
		if !other.c.Leading() {
			return fmt.Errorf("not leading")
		}
		return nil
	})
	t.Logf("leader stopped (Lease released): the other leads %v later", time.Since(begin).Round(time.Millisecond))
	create(t, client, newLB("y", nil))
	waitIngress(t, client, "y", "198.51.100.1")
	unique(t, client)
}

// A write refused with a Conflict (the Service changed since it was read)
// is decided again and retried.
func TestControllerConflict(t *testing.T) {
	client := fake.NewClientset()
	var conflicts atomic.Int64
	client.PrependReactor("patch", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "status" {
			return false, nil, nil
		}
		if conflicts.Add(1) <= 2 {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "services"}, "x", fmt.Errorf("the object has been modified"))
		}
		return false, nil, nil
	})
	svcCfg, lbc := testConfig(pool("p", "198.51.100.0/28"))
	startInstance(t, client, "node-1", svcCfg, lbc)
	create(t, client, newLB("x", nil))
	waitIngress(t, client, "x", "198.51.100.0")
	if n := conflicts.Load(); n != 3 {
		t.Errorf("%d patches, want 2 refused and 1 accepted", n)
	}
}

// Nothing configured: no campaign, no Lease, no writes.
func TestControllerIdleWithoutConfig(t *testing.T) {
	client := fake.NewClientset()
	startInstance(t, client, "node-1", cluster.ServiceConfig{}, cluster.LoadBalancerConfig{Class: cluster.DefaultLoadBalancerClass, AllocateClassless: true})
	create(t, client, newLB("x", nil))
	time.Sleep(time.Second)
	if got := ingress(t, client); len(got) != 0 {
		t.Errorf("allocated without pools: %v", got)
	}
	leases, err := client.CoordinationV1().Leases(testNS).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(leases.Items) != 0 {
		t.Errorf("a Lease exists without service configuration: %v %v", leases, err)
	}
}

// Pinning: the informer does not show a write yet (it trails the API
// server), and a second pass must not hand the written address out again.
func TestPassTrustsItsOwnWrites(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(cluster.StripServiceObjects))
	inf := factory.Core().V1().Services().Informer()
	// Not started: the store is filled by hand and never updated, the
	// worst case of a lagging cache.
	c, err := New(Options{Client: client, Services: inf, Namespace: testNS, Identity: "n"})
	if err != nil {
		t.Fatal(err)
	}
	_, lbc := testConfig(pool("p", "198.51.100.0/30"))
	c.SetConfig(cluster.ServiceConfig{}, lbc)
	c.pins = map[string]pin{}
	for _, name := range []string{"a", "b"} {
		s := newLB(name, nil)
		s.ResourceVersion = "1"
		created, err := client.CoreV1().Services("default").Create(context.Background(), s, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		stripped, _ := cluster.StripServiceObjects(created)
		if err := inf.GetStore().Add(stripped); err != nil {
			t.Fatal(err)
		}
		if failed := c.pass(context.Background()); failed {
			t.Fatal("pass failed")
		}
	}
	got := ingress(t, client)
	if strings.Join(got["a"], ",") != "198.51.100.0" || strings.Join(got["b"], ",") != "198.51.100.1" {
		t.Errorf("with a cache that never shows the writes: %v, want a and b on different addresses", got)
	}
	// A pin outlives nothing: once the cache shows a newer version, the
	// cache wins.
	a, _ := client.CoreV1().Services("default").Get(context.Background(), "a", metav1.GetOptions{})
	a.ResourceVersion = "2"
	a.Spec.Type = corev1.ServiceTypeClusterIP
	stripped, _ := cluster.StripServiceObjects(a)
	_ = inf.GetStore().Update(stripped)
	c.pass(context.Background())
	// (The pass then takes the cleanup finalizer off the ClusterIP
	// Service, which pins that write, made from version 2.)
	if p, ok := c.pins["default/a"]; ok && p.staleRV != "2" {
		t.Errorf("pin over version %q kept after the informer showed version 2", p.staleRV)
	}
}

// The cleanup finalizer: added to a served LoadBalancer Service together
// with its address, taken off when the Service stops being a LoadBalancer
// or is being deleted, and never touched on a Service of another class.
// While a deleted Service waits for its finalizer, its address is not
// handed out again.
func TestControllerCleanupFinalizer(t *testing.T) {
	client := fake.NewClientset()
	svcCfg, lbc := testConfig(pool("p", "198.51.100.0/30"))
	startInstance(t, client, "node-1", svcCfg, lbc)
	finalizers := func(name string) []string {
		s, err := client.CoreV1().Services("default").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Finalizers
	}
	waitFinalizers := func(name string, want ...string) {
		t.Helper()
		testutil.EventuallyEvery(t, 20*time.Millisecond, 10*time.Second, fmt.Sprintf("%s has finalizers %v", name, want), func() error {
			got := finalizers(name)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("finalizers %v", got)
			}
			return nil
		})
	}
	// Another controller's finalizer stays where it is.
	x := newLB("x", nil)
	x.Finalizers = []string{"example.com/keep"}
	create(t, client, x)
	waitIngress(t, client, "x", "198.51.100.0")
	waitFinalizers("x", "example.com/keep", cluster.LoadBalancerCleanupFinalizer) // sorted

	// Type LoadBalancer -> ClusterIP (the API server clears the class and
	// the status): the finalizer goes.
	s, err := client.CoreV1().Services("default").Get(context.Background(), "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Status = corev1.ServiceStatus{}
	if _, err := client.CoreV1().Services("default").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFinalizers("x", "example.com/keep")

	// A Service of another class: neither an address nor the finalizer.
	other := newLB("other", nil)
	other.Spec.LoadBalancerClass = ptr.To("example.com/cloud")
	create(t, client, other)

	// A deleted Service (as the API server shows one with a finalizer)
	// keeps its address taken until the finalizer is removed.
	y := newLB("y", nil)
	create(t, client, y)
	waitIngress(t, client, "y", "198.51.100.0")
	waitFinalizers("y", cluster.LoadBalancerCleanupFinalizer)
	s, err = client.CoreV1().Services("default").Get(context.Background(), "y", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	s.DeletionTimestamp = &now
	if _, err := client.CoreV1().Services("default").Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFinalizers("y")
	if got := finalizers("other"); len(got) != 0 {
		t.Errorf("Service of another class got finalizers %v", got)
	}
	if got := ingress(t, client)["other"]; len(got) != 0 {
		t.Errorf("Service of another class got addresses %v", got)
	}
}
