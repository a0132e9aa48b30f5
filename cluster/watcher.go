package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Watcher follows the Kubernetes objects that shape this node's BGP state.
// Informers keep their caches when the API server goes away and reconnect
// by themselves, so the node keeps routing with what it last knew.
type Watcher struct {
	nodeName, namespace string
	log                 *slog.Logger
	client              kubernetes.Interface
	recorder            record.EventRecorder
	broadcaster         record.EventBroadcaster

	core    informers.SharedInformerFactory
	secrets informers.SharedInformerFactory
	dyn     dynamicinformer.DynamicSharedInformerFactory
	// svc holds the Service and EndpointSlice informers, stripped to what
	// advertisement needs. They start only once BGPConfiguration has a
	// service range or a LoadBalancer pool: a cluster that does not use
	// the feature pays neither the memory nor the watches.
	svc                 informers.SharedInformerFactory
	services, endpoints cache.SharedIndexInformer
	svcStarted          bool
	ctx                 context.Context

	nodes, secretInf, peers, configs cache.SharedIndexInformer

	poke chan struct{}

	mu       sync.Mutex
	reported map[string]string // object -> last problem message, to not repeat events
}

// settle gathers a burst of informer events into one recomputation.
const settle = 100 * time.Millisecond

// NewWatcher connects to the API server. namespace is podrouted's own, where
// BGPPeer password Secrets live.
func NewWatcher(cfg *rest.Config, nodeName, namespace string, log *slog.Logger) (*Watcher, error) {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dynClient, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	w := &Watcher{
		nodeName: nodeName, namespace: namespace, client: client,
		log:      log.With("component", "cluster"),
		poke:     make(chan struct{}, 1),
		reported: map[string]string{},
		core:     informers.NewSharedInformerFactory(client, 0),
		secrets:  informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace)),
		dyn:      dynamicinformer.NewDynamicSharedInformerFactory(dynClient, 0),
		svc:      informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(StripServiceObjects)),
	}
	w.broadcaster = record.NewBroadcaster()
	w.recorder = w.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "podrouted", Host: nodeName})
	w.nodes = w.core.Core().V1().Nodes().Informer()
	w.secretInf = w.secrets.Core().V1().Secrets().Informer()
	w.peers = w.dyn.ForResource(BGPPeerResource).Informer()
	w.configs = w.dyn.ForResource(BGPConfigurationResource).Informer()
	w.services = w.svc.Core().V1().Services().Informer()
	w.endpoints = w.svc.Discovery().V1().EndpointSlices().Informer()
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.changed() },
		UpdateFunc: func(any, any) { w.changed() },
		DeleteFunc: func(any) { w.changed() },
	}
	for _, inf := range []cache.SharedIndexInformer{w.nodes, w.secretInf, w.peers, w.configs, w.services, w.endpoints} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Services is the (stripped) Service informer, for the LoadBalancer
// allocator to share rather than keep a second copy. It runs once
// BGPConfiguration has a service range or a LoadBalancer pool.
func (w *Watcher) Services() cache.SharedIndexInformer { return w.services }

func (w *Watcher) changed() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

// Run starts the informers and calls apply with the desired state each
// time it changes (and once at the start, when the caches are in). It
// returns when ctx ends.
func (w *Watcher) Run(ctx context.Context, apply func(Desired)) error {
	w.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: w.client.CoreV1().Events("")})
	defer w.broadcaster.Shutdown()
	w.core.Start(ctx.Done())
	w.secrets.Start(ctx.Done())
	w.dyn.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), w.nodes.HasSynced, w.secretInf.HasSynced) {
		return ctx.Err()
	}
	// Missing CRDs must not stop the node: wait a bounded time, then go on
	// with what there is; the informers fill in when the CRDs appear.
	crdCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	if !cache.WaitForCacheSync(crdCtx.Done(), w.peers.HasSynced, w.configs.HasSynced) && ctx.Err() == nil {
		w.log.Warn("podroute's custom resources are not readable yet; are the CRDs installed (manifests/crds.yaml)? going on without BGPPeers and BGPConfiguration")
	}
	cancel()
	w.ctx = ctx
	// The first desired state must hold the Service prefixes already: it
	// is what graceful restart's End-of-RIB tells peers to keep.
	if w.servicesWanted() {
		w.startServices()
		svcCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if !cache.WaitForCacheSync(svcCtx.Done(), w.services.HasSynced, w.endpoints.HasSynced) && ctx.Err() == nil {
			w.log.Warn("Services and EndpointSlices are not readable yet (RBAC in manifests/02-rbac.yaml?); Service prefixes follow once they are")
		}
		cancel()
	}

	var last *Desired
	for {
		d := w.compute()
		if last == nil || !reflect.DeepEqual(*last, d) {
			last = &d
			apply(d)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.poke:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(settle):
		}
	}
}

// compute snapshots the caches and derives the desired state, reporting
// problems once per object and message.
func (w *Watcher) compute() Desired {
	var in Inputs
	in.LocalNode = w.nodeName
	nodeObjs := map[string]*corev1.Node{}
	var problems []Problem
	for _, o := range w.nodes.GetStore().List() {
		n, ok := o.(*corev1.Node)
		if !ok {
			continue
		}
		nodeObjs[n.Name] = n
		info, errs := ParseNode(n)
		// Each node reports its own Node's problems; nobody else does.
		if n.Name == w.nodeName {
			for _, e := range errs {
				problems = append(problems, Problem{Kind: "Node", Name: n.Name, Reason: "InvalidAnnotation", Message: e.Error()})
			}
		}
		in.Nodes = append(in.Nodes, info)
	}
	peerObjs := map[string]*unstructured.Unstructured{}
	for _, o := range w.peers.GetStore().List() {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var bp BGPPeer
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &bp); err != nil {
			problems = append(problems, Problem{Kind: "BGPPeer", Name: u.GetName(), Reason: "InvalidSpec", Message: err.Error()})
			continue
		}
		peerObjs[bp.Name] = u
		in.Peers = append(in.Peers, &bp)
	}
	var cfgObj *unstructured.Unstructured
	if o, ok, _ := w.configs.GetStore().GetByKey(BGPConfigurationName); ok {
		if u, ok := o.(*unstructured.Unstructured); ok {
			cfgObj = u
			var c BGPConfiguration
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &c); err != nil {
				problems = append(problems, Problem{Kind: "BGPConfiguration", Name: u.GetName(), Reason: "InvalidSpec", Message: err.Error()})
			} else {
				in.Config = c.Spec
			}
		}
	}
	if w.servicesWanted() {
		w.startServices()
		// Until both caches are complete, a Local Service would look
		// endpoint-less: compute nothing from a partial view.
		if w.services.HasSynced() && w.endpoints.HasSynced() {
			for _, o := range w.services.GetStore().List() {
				svc, ok := o.(*corev1.Service)
				if !ok {
					continue
				}
				info, errs := ParseService(svc)
				if len(errs) > 0 {
					// One problem per Service, so that it is logged once.
					problems = append(problems, ServiceProblem(info, errs))
				}
				in.Services = append(in.Services, info)
			}
			for _, o := range w.endpoints.GetStore().List() {
				if s, ok := o.(*discoveryv1.EndpointSlice); ok {
					in.Slices = append(in.Slices, s)
				}
			}
		}
	}
	in.Secret = func(name, key string) (string, error) {
		o, ok, err := w.secretInf.GetStore().GetByKey(w.namespace + "/" + name)
		if err != nil || !ok {
			return "", fmt.Errorf("secret %s/%s not found", w.namespace, name)
		}
		s := o.(*corev1.Secret)
		v, ok := s.Data[key]
		if !ok {
			return "", fmt.Errorf("secret %s/%s has no key %q", w.namespace, name, key)
		}
		return string(v), nil
	}
	d, more := Compute(in)
	problems = append(problems, more...)
	w.report(problems, nodeObjs, peerObjs, cfgObj)
	return d
}

// servicesWanted reports whether BGPConfiguration asks for anything about
// Services: a range to advertise or a pool to allocate from.
func (w *Watcher) servicesWanted() bool {
	o, ok, _ := w.configs.GetStore().GetByKey(BGPConfigurationName)
	if !ok {
		return false
	}
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return false
	}
	spec, _, _ := unstructured.NestedMap(u.Object, "spec")
	for _, k := range []string{"serviceClusterIPs", "serviceExternalIPs", "serviceLoadBalancerIPs"} {
		if l, ok := spec[k].([]any); ok && len(l) > 0 {
			return true
		}
	}
	pools, _, _ := unstructured.NestedSlice(u.Object, "spec", "loadBalancer", "pools")
	return len(pools) > 0
}

// startServices starts the Service and EndpointSlice informers once (Run's
// goroutine only), and recomputes when both have synced: the events of
// the initial list may all come before HasSynced turns true.
func (w *Watcher) startServices() {
	if w.svcStarted {
		return
	}
	w.svcStarted = true
	w.log.Info("watching Services and EndpointSlices (BGPConfiguration has service ranges or pools)")
	w.svc.Start(w.ctx.Done())
	go func() {
		if cache.WaitForCacheSync(w.ctx.Done(), w.services.HasSynced, w.endpoints.HasSynced) {
			w.changed()
		}
	}()
}

// report turns new problems into Events (and log lines); a problem that
// persists is reported once, and one that went away may be reported again
// if it comes back.
func (w *Watcher) report(problems []Problem, nodes map[string]*corev1.Node, peers map[string]*unstructured.Unstructured, cfg *unstructured.Unstructured) {
	w.mu.Lock()
	defer w.mu.Unlock()
	current := map[string]string{}
	for _, p := range problems {
		key := p.Kind + "/" + p.Name + "/" + p.Reason
		current[key] = p.Message
		if w.reported[key] == p.Message {
			continue
		}
		w.log.Warn("ignoring bad Kubernetes input", "kind", p.Kind, "name", p.Name, "reason", p.Reason, "problem", p.Message)
		var obj runtime.Object
		switch p.Kind {
		case "Node":
			if n := nodes[p.Name]; n != nil {
				obj = &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: n.Name, UID: n.UID}
			}
		case "BGPPeer":
			if u := peers[p.Name]; u != nil {
				obj = &corev1.ObjectReference{Kind: "BGPPeer", APIVersion: Group + "/" + Version, Name: u.GetName(), UID: u.GetUID()}
			}
		case "BGPConfiguration":
			if cfg != nil {
				obj = &corev1.ObjectReference{Kind: "BGPConfiguration", APIVersion: Group + "/" + Version, Name: cfg.GetName(), UID: cfg.GetUID()}
			}
		case "Service":
			// Every node would report the same Service problem; the
			// leader-elected Service controller (package lbipam) is the
			// one that puts it on the Service as an Event. Here: the log.
		}
		if obj != nil {
			w.recorder.Event(obj, corev1.EventTypeWarning, p.Reason, p.Message)
		}
	}
	w.reported = current
}

// MarkNetworkAvailable sets the local Node's NetworkUnavailable condition
// to False, as other CNIs do once the node's networking is ready.
func (w *Watcher) MarkNetworkAvailable(ctx context.Context) error {
	now := metav1.Now()
	cond := corev1.NodeCondition{
		Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse,
		Reason: "PodrouteIsUp", Message: "podroute routes and BGP sessions are up on this node",
		LastTransitionTime: now, LastHeartbeatTime: now,
	}
	raw, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	_, err = w.client.CoreV1().Nodes().PatchStatus(ctx, w.nodeName, raw)
	if err != nil {
		return fmt.Errorf("set NetworkUnavailable=False on node %s: %w", w.nodeName, err)
	}
	return nil
}
