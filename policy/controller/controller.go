package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/podroute/podroute/policy"
	"github.com/podroute/podroute/policy/nft"
)

// Kernel is what the controller needs from the kernel side;
// *nft.Programmer is the real one.
type Kernel interface {
	Sync(ctx context.Context, res *policy.Result) (nft.Stats, error)
	// Current is the table as last written, for Status.
	Current() *nft.State
	// Forget makes the next Sync read the kernel back (drift repair).
	Forget()
}

// Options configures a Controller.
type Options struct {
	NodeName string               // this node: its pods are enforced here
	Client   kubernetes.Interface // reads Pods, Namespaces, NetworkPolicies; creates Events
	Kernel   Kernel               // usually nft.New(nft.Options{})
	Log      *slog.Logger         // nil: slog.Default()
	// Registry gets the metrics; nil registers none.
	Registry prometheus.Registerer
	// Settle gathers a burst of events into one sync; 50ms when zero.
	Settle time.Duration
	// Resync reads the kernel's table back and repairs drift this often;
	// 5 minutes when zero.
	Resync time.Duration
}

// Controller runs NetworkPolicy for one node.
type Controller struct {
	opts     Options
	log      *slog.Logger
	factory  informers.SharedInformerFactory
	pods     cache.SharedIndexInformer
	nss      cache.SharedIndexInformer
	pols     cache.SharedIndexInformer
	recorder record.EventRecorder
	bcast    record.EventBroadcaster
	metrics  *metrics
	poke     chan struct{}
	synced   chan struct{} // closed after the first successful sync

	mu       sync.Mutex
	last     *policy.Result
	reported map[string]string // problem key -> message already reported
}

// New sets up the informers; nothing runs until Run.
func New(opts Options) (*Controller, error) {
	if opts.NodeName == "" || opts.Client == nil || opts.Kernel == nil {
		return nil, errors.New("policy controller: NodeName, Client and Kernel are required")
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Settle == 0 {
		opts.Settle = 50 * time.Millisecond
	}
	if opts.Resync == 0 {
		opts.Resync = 5 * time.Minute
	}
	c := &Controller{
		opts: opts, log: opts.Log.With("component", "policy"),
		factory:  informers.NewSharedInformerFactoryWithOptions(opts.Client, 0, informers.WithTransform(Strip)),
		poke:     make(chan struct{}, 1),
		synced:   make(chan struct{}),
		reported: map[string]string{},
	}
	c.pods = c.factory.Core().V1().Pods().Informer()
	c.nss = c.factory.Core().V1().Namespaces().Informer()
	c.pols = c.factory.Networking().V1().NetworkPolicies().Informer()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.changed() },
		UpdateFunc: func(any, any) { c.changed() },
		DeleteFunc: func(any) { c.changed() },
	}
	for _, inf := range []cache.SharedIndexInformer{c.pods, c.nss, c.pols} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	c.bcast = record.NewBroadcaster()
	c.recorder = c.bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "podrouted", Host: opts.NodeName})
	if opts.Registry != nil {
		m, err := newMetrics(opts.Registry)
		if err != nil {
			return nil, err
		}
		c.metrics = m
	}
	return c, nil
}

func (c *Controller) changed() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Synced is closed once the kernel holds the first complete result.
func (c *Controller) Synced() <-chan struct{} { return c.synced }

// Run starts the informers, waits until all three caches are complete,
// then keeps the kernel in step until ctx ends. The rules stay in the
// kernel when it returns.
func (c *Controller) Run(ctx context.Context) error {
	c.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.opts.Client.CoreV1().Events("")})
	defer c.bcast.Shutdown()
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced, c.nss.HasSynced, c.pols.HasSynced) {
		return ctx.Err()
	}
	resync := time.NewTicker(c.opts.Resync)
	defer resync.Stop()
	retry := time.Duration(0)
	first := true
	for {
		err := c.sync(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// The kernel keeps the last good table; try again soon.
			retry = min(max(2*retry, 500*time.Millisecond), 30*time.Second)
			c.log.Error("programming NetworkPolicy into nftables failed; the previous rules stay", "error", err, "retry", retry)
		case err == nil:
			retry = 0
			if first {
				close(c.synced)
				first = false
			}
		}
		var again <-chan time.Time
		if retry > 0 {
			again = time.After(retry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.poke:
		case <-again:
		case <-resync.C:
			c.opts.Kernel.Forget()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(c.opts.Settle):
		}
	}
}

// Input snapshots the caches.
func (c *Controller) Input() policy.Input {
	in := policy.Input{NodeName: c.opts.NodeName}
	for _, o := range c.pods.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			in.Pods = append(in.Pods, p)
		}
	}
	for _, o := range c.nss.GetStore().List() {
		if n, ok := o.(*corev1.Namespace); ok {
			in.Namespaces = append(in.Namespaces, n)
		}
	}
	for _, o := range c.pols.GetStore().List() {
		if n, ok := o.(*networkingv1.NetworkPolicy); ok {
			in.Policies = append(in.Policies, n)
		}
	}
	return in
}

func (c *Controller) sync(ctx context.Context) error {
	start := time.Now()
	res := policy.Compute(c.Input())
	c.report(res.Problems)
	st, err := c.opts.Kernel.Sync(ctx, res)
	took := time.Since(start)
	if c.metrics != nil {
		c.metrics.observe(res, st, took, err)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.last = res
	c.mu.Unlock()
	if st.Ops > 0 || st.ReadBack {
		c.log.Debug("NetworkPolicy synced", "operations", st.Ops, "readBack", st.ReadBack, "took", took,
			"chains", st.Counts.Chains, "rules", st.Counts.Rules, "elements", st.Counts.Elements)
	}
	return nil
}

// report logs and records an Event for each problem not reported yet; a
// problem that goes away and comes back is reported again.
func (c *Controller) report(problems []policy.Problem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	current := map[string]string{}
	for _, p := range problems {
		key := p.Kind + "/" + p.Object.String() + "/" + p.Reason + "/" + p.Message
		current[key] = p.Message
		if _, done := c.reported[key]; done {
			continue
		}
		c.log.Warn("NetworkPolicy podroute cannot express; it matches less, never more", "policy", p.Object.String(), "reason", p.Reason, "problem", p.Message)
		ref := &corev1.ObjectReference{Kind: "NetworkPolicy", APIVersion: "networking.k8s.io/v1",
			Namespace: p.Object.Namespace, Name: p.Object.Name}
		if o, ok, _ := c.pols.GetStore().GetByKey(p.Object.String()); ok {
			if np, ok := o.(*networkingv1.NetworkPolicy); ok {
				ref.UID = np.UID
			}
		}
		c.recorder.Event(ref, corev1.EventTypeWarning, p.Reason, p.Message)
	}
	c.reported = current
}

// PodStatus is one local pod as `podroute policy` shows it.
type PodStatus struct {
	Pod   string   // namespace/name
	Addrs []string // its addresses
	// Ingress and Egress are the policies isolating it (namespace/name);
	// empty means everything is allowed that way.
	Ingress, Egress []string
	// IngressRules and EgressRules count the nftables rules a new
	// connection to / from the pod may walk: its own chain and its
	// policies' chains.
	IngressRules, EgressRules int
}

// Status returns every local pod, sorted, with the policies that select it
// and its rule counts, as of the last successful sync. It costs one pass
// over the local pods and their policies, never a walk of the cluster.
func (c *Controller) Status() []PodStatus {
	c.mu.Lock()
	res := c.last
	c.mu.Unlock()
	if res == nil {
		return nil
	}
	state := c.opts.Kernel.Current()
	rules := func(k policy.Key, d policy.Direction, pols []policy.Key) int {
		if state == nil || len(pols) == 0 {
			return 0
		}
		n := 0
		if ch := state.Chains[nft.PodChain(k, d)]; ch != nil {
			n += len(ch.Rules)
		}
		for _, pk := range pols {
			if ch := state.Chains[nft.PolicyChain(pk, d)]; ch != nil {
				n += len(ch.Rules)
			}
		}
		return n
	}
	var out []PodStatus
	for k, lp := range res.Pods {
		ps := PodStatus{Pod: k.String(), Ingress: keyStrings(lp.Ingress), Egress: keyStrings(lp.Egress),
			IngressRules: rules(k, policy.Ingress, lp.Ingress), EgressRules: rules(k, policy.Egress, lp.Egress)}
		for _, a := range lp.Addrs {
			ps.Addrs = append(ps.Addrs, a.String())
		}
		out = append(out, ps)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}

// Problems returns what the last sync could not express.
func (c *Controller) Problems() []policy.Problem {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		return nil
	}
	return c.last.Problems
}

func keyStrings(ks []policy.Key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.String()
	}
	return out
}

// Strip is the informers' transform: it keeps of each object only what
// policy.Compute reads, so that watching every Pod of the cluster costs a
// few hundred bytes per pod rather than its whole spec and status.
func Strip(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID,
				ResourceVersion: o.ResourceVersion, Labels: o.Labels, DeletionTimestamp: o.DeletionTimestamp},
			Spec:   corev1.PodSpec{NodeName: o.Spec.NodeName, HostNetwork: o.Spec.HostNetwork},
			Status: corev1.PodStatus{Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}
		p.Spec.Containers = portsOnly(o.Spec.Containers)
		p.Spec.InitContainers = portsOnly(o.Spec.InitContainers)
		return p, nil
	case *corev1.Namespace:
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID,
			ResourceVersion: o.ResourceVersion, Labels: o.Labels}}, nil
	case *networkingv1.NetworkPolicy:
		np := o.DeepCopy()
		np.ManagedFields, np.Annotations = nil, nil
		return np, nil
	}
	return obj, nil
}

// portsOnly keeps the containers that have ports (named ports live there).
func portsOnly(cs []corev1.Container) []corev1.Container {
	var out []corev1.Container
	for _, c := range cs {
		if len(c.Ports) > 0 {
			out = append(out, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return out
}

// metrics are the Prometheus metrics of NetworkPolicy on this node.
type metrics struct {
	syncSeconds *prometheus.HistogramVec
	syncErrors  prometheus.Counter
	ops         prometheus.Histogram
	table       *prometheus.GaugeVec
	pods        *prometheus.GaugeVec
	policies    prometheus.Gauge
	problems    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		syncSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "podroute_policy_sync_duration_seconds",
			Help:    "Time from reading the caches to the rules in the kernel, per sync (compute, render, diff, nft transaction).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}, []string{"result"}),
		syncErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podroute_policy_sync_errors_total", Help: "Syncs whose nftables transaction failed (the previous rules stayed)."}),
		ops: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "podroute_policy_sync_operations", Help: "Operations in each sync's nftables transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		table: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podroute_policy_nftables_objects", Help: "Size of podroute's nftables table by kind (chains, rules, sets, elements)."},
			[]string{"kind"}),
		pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podroute_policy_local_pods", Help: "Pods of this node under policy, by direction they are isolated in (ingress, egress) and all of them (any)."},
			[]string{"isolated"}),
		policies: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podroute_policy_policies", Help: "NetworkPolicies that select at least one pod of this node."}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podroute_policy_problems", Help: "Parts of NetworkPolicies podroute cannot express (narrowed to match nothing)."}),
	}
	for _, col := range []prometheus.Collector{m.syncSeconds, m.syncErrors, m.ops, m.table, m.pods, m.policies, m.problems} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("registering policy metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) observe(res *policy.Result, st nft.Stats, took time.Duration, err error) {
	if err != nil {
		m.syncSeconds.WithLabelValues("error").Observe(took.Seconds())
		m.syncErrors.Inc()
		return
	}
	m.syncSeconds.WithLabelValues("ok").Observe(took.Seconds())
	m.ops.Observe(float64(st.Ops))
	m.table.WithLabelValues("chains").Set(float64(st.Counts.Chains))
	m.table.WithLabelValues("rules").Set(float64(st.Counts.Rules))
	m.table.WithLabelValues("sets").Set(float64(st.Counts.Sets))
	m.table.WithLabelValues("elements").Set(float64(st.Counts.Elements))
	var in, out int
	for _, lp := range res.Pods {
		if len(lp.Ingress) > 0 {
			in++
		}
		if len(lp.Egress) > 0 {
			out++
		}
	}
	m.pods.WithLabelValues("ingress").Set(float64(in))
	m.pods.WithLabelValues("egress").Set(float64(out))
	m.pods.WithLabelValues("any").Set(float64(len(res.Pods)))
	m.policies.Set(float64(len(res.Policies)))
	m.problems.Set(float64(len(res.Problems)))
}
