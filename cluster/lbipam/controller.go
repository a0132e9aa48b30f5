package lbipam

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"

	"github.com/podroute/podroute/cluster"
)

// DefaultLeaseName is the Lease (in podrouted's namespace) the podrouted
// instances compete for.
const DefaultLeaseName = "podroute-service-controller"

// Lease timings. Every podrouted that is not the leader reads the Lease
// once per RetryPeriod, so it is longer than client-go's usual 2 s: a
// thousand nodes then cost 200 small GETs a second, not 500. Allocation
// waits for a new leader at most about LeaseDuration after one dies
// without releasing the Lease (a clean stop releases it at once).
const (
	DefaultLeaseDuration = 30 * time.Second
	DefaultRenewDeadline = 20 * time.Second
	DefaultRetryPeriod   = 5 * time.Second
)

// Timings of the work loop.
const (
	settle      = 100 * time.Millisecond // gathers a burst of changes into one pass
	retryAfter  = time.Second            // after a failed write (conflict, API error)
	resyncEvery = 30 * time.Second       // a pass without any change, to retry what waits
	// pinLife bounds how long the controller trusts its own view of a
	// Service over its informer's: long after any watch delivers.
	pinLife = 30 * time.Second
)

// Options configure a Controller.
type Options struct {
	Client kubernetes.Interface
	// Services is a running Service informer whose objects were stripped
	// by cluster.StripServiceObjects (cluster.Watcher.Services(): one
	// cache serves advertisement and allocation).
	Services cache.SharedIndexInformer
	// Namespace and LeaseName locate the Lease; Identity is this
	// candidate's name (the node's).
	Namespace, LeaseName, Identity string
	Log                            *slog.Logger
	// Recorder receives the Events; nil records them to the API server
	// as component podrouted.
	Recorder record.EventRecorder
	// Lease timings; zero means the defaults above.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Controller is the leader-elected Service controller.
type Controller struct {
	opts Options
	log  *slog.Logger
	rec  record.EventRecorder
	// bcast is set when the Controller made its own recorder.
	bcast record.EventBroadcaster

	mu      sync.Mutex
	svcCfg  cluster.ServiceConfig
	lbCfg   cluster.LoadBalancerConfig
	leading bool
	// configured is closed and replaced on every SetConfig.
	configured chan struct{}

	poke chan struct{}
	// pins are the controller's own knowledge of Services that its
	// informer may not show yet (see pin); leader's goroutine only.
	pins map[string]pin
	// reported is, per Service and reason, the last Warning message
	// recorded, so that a persisting problem is one Event, not one per
	// pass.
	reported map[problemKey]string
}

type problemKey struct{ service, reason string }

// pin is a Service as this controller knows it to be: after its own
// write, or from the consistent list read when it became leader. It
// stands in for the informer's copy while that copy is the older one
// (its resourceVersion is still stale, or it is missing).
type pin struct {
	svc     cluster.ServiceInfo
	staleRV string // the informer's resourceVersion that the pin supersedes
	until   time.Time
}

// New makes a Controller; Run starts it.
func New(opts Options) (*Controller, error) {
	if opts.Client == nil || opts.Services == nil || opts.Namespace == "" || opts.Identity == "" {
		return nil, fmt.Errorf("lbipam: Client, Services, Namespace and Identity are required")
	}
	if opts.LeaseName == "" {
		opts.LeaseName = DefaultLeaseName
	}
	if opts.LeaseDuration == 0 {
		opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod = DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	c := &Controller{
		opts: opts, log: opts.Log.With("component", "service-controller"), rec: opts.Recorder,
		configured: make(chan struct{}), poke: make(chan struct{}, 1), reported: map[problemKey]string{},
	}
	if c.rec == nil {
		c.bcast = record.NewBroadcaster()
		c.rec = c.bcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "podrouted", Host: opts.Identity})
	}
	return c, nil
}

// SetConfig hands the controller BGPConfiguration's checked service
// ranges and allocator settings (from cluster.Desired). It campaigns for
// the Lease only while one of them is configured.
func (c *Controller) SetConfig(svc cluster.ServiceConfig, lb cluster.LoadBalancerConfig) {
	c.mu.Lock()
	c.svcCfg, c.lbCfg = svc, lb
	close(c.configured)
	c.configured = make(chan struct{})
	c.mu.Unlock()
	c.changed()
}

func (c *Controller) config() (cluster.ServiceConfig, cluster.LoadBalancerConfig, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.svcCfg, c.lbCfg, c.configured
}

func (c *Controller) enabled() bool {
	svc, lb, _ := c.config()
	return svc.Enabled() || lb.Enabled()
}

// Leading reports whether this instance holds the Lease now.
func (c *Controller) Leading() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leading
}

func (c *Controller) changed() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// Run campaigns for the Lease while Services are configured and, while
// it holds it, allocates. It returns when ctx ends, releasing the Lease
// (after the last write) so that another node takes over at once.
func (c *Controller) Run(ctx context.Context) error {
	if c.bcast != nil {
		c.bcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.opts.Client.CoreV1().Events("")})
		defer c.bcast.Shutdown()
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: c.opts.Namespace, Name: c.opts.LeaseName},
		Client:     c.opts.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: c.opts.Identity, EventRecorder: c.rec},
	}
	for ctx.Err() == nil {
		// Wait until there is something to do.
		for !c.enabled() {
			_, _, configured := c.config()
			select {
			case <-ctx.Done():
				return nil
			case <-configured:
			}
		}
		campaign, stop := context.WithCancel(ctx)
		go func() {
			// Stop campaigning (and leading) when Services are no longer
			// configured.
			for {
				_, _, configured := c.config()
				select {
				case <-campaign.Done():
					return
				case <-configured:
					if !c.enabled() {
						stop()
						return
					}
				}
			}
		}()
		// client-go starts OnStartedLeading in a goroutine and does not
		// wait for it. A term registers under termMu unless its context
		// is already over; after RunOrDie (whose return cancels that
		// context) taking termMu once and waiting for term means no
		// write of this term can follow the next campaign.
		var termMu sync.Mutex
		var term sync.WaitGroup
		leaderelection.RunOrDie(campaign, leaderelection.LeaderElectionConfig{
			// Released below, once the term's work has stopped, not by
			// client-go as soon as renewing stops.
			Lock: lock, Name: c.opts.LeaseName, ReleaseOnCancel: false,
			LeaseDuration: c.opts.LeaseDuration, RenewDeadline: c.opts.RenewDeadline, RetryPeriod: c.opts.RetryPeriod,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					termMu.Lock()
					if ctx.Err() != nil {
						termMu.Unlock()
						return
					}
					term.Add(1)
					termMu.Unlock()
					defer term.Done()
					c.lead(ctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		stop()
		termMu.Lock()
		termMu.Unlock() //nolint:staticcheck // an empty critical section: see above
		term.Wait()
		c.release(lock)
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(c.opts.RetryPeriod):
			}
		}
	}
	return nil
}

// release gives the Lease up if this instance still holds it, so that
// another node takes over at its next retry instead of after the Lease
// expires (as client-go's ReleaseOnCancel does, but only after this
// term's last write).
func (c *Controller) release(lock *resourcelock.LeaseLock) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, _, err := lock.Get(ctx)
	if err != nil || rec.HolderIdentity != c.opts.Identity {
		return
	}
	now := metav1.NewTime(time.Now())
	if err := lock.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions: rec.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now,
	}); err != nil {
		c.log.Warn("releasing the Lease failed; another node takes over when it expires", "err", err)
		return
	}
	c.log.Info("Lease released", "lease", c.opts.Namespace+"/"+c.opts.LeaseName)
}

// lead is one term as leader: passes until ctx ends.
func (c *Controller) lead(ctx context.Context) {
	c.mu.Lock()
	c.leading = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.leading = false
		c.mu.Unlock()
	}()
	c.log.Info("leading: allocating LoadBalancer addresses and reporting Service problems", "lease", c.opts.Namespace+"/"+c.opts.LeaseName, "identity", c.opts.Identity)
	defer c.log.Info("no longer leading", "lease", c.opts.Namespace+"/"+c.opts.LeaseName)
	reg, err := c.opts.Services.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.changed() },
		UpdateFunc: func(any, any) { c.changed() },
		DeleteFunc: func(any) { c.changed() },
	})
	if err != nil {
		c.log.Error("cannot follow Services", "err", err)
		return
	}
	defer func() { _ = c.opts.Services.RemoveEventHandler(reg) }()
	if !cache.WaitForCacheSync(ctx.Done(), c.opts.Services.HasSynced) {
		return
	}
	c.pins = map[string]pin{}
	// The informer may trail the API server. The last leader's writes
	// are older than the Lease's expiry, but not necessarily in this
	// node's cache yet: one consistent list brings them in as pins.
	if err := c.pinFromAPI(ctx); err != nil {
		c.log.Warn("listing Services to start from the API server's state failed; not allocating this term", "err", err)
		return
	}
	retry := time.NewTimer(0)
	defer retry.Stop()
	<-retry.C
	for {
		if failed := c.pass(ctx); failed {
			retry.Reset(retryAfter)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.poke:
		case <-retry.C:
		case <-time.After(resyncEvery):
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(settle):
		}
	}
}

// pinFromAPI pins every Service whose informer copy differs from a fresh,
// consistent list.
func (c *Controller) pinFromAPI(ctx context.Context) error {
	list, err := c.opts.Client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	cached := c.cached()
	until := time.Now().Add(pinLife)
	for i := range list.Items {
		fresh, _ := cluster.ParseService(&list.Items[i])
		old, ok := cached[fresh.Key()]
		if ok && old.ResourceVersion == fresh.ResourceVersion {
			continue
		}
		c.pins[fresh.Key()] = pin{svc: fresh, staleRV: old.ResourceVersion, until: until}
	}
	return nil
}

func (c *Controller) cached() map[string]cluster.ServiceInfo {
	out := map[string]cluster.ServiceInfo{}
	for _, o := range c.opts.Services.GetStore().List() {
		if s, ok := o.(*corev1.Service); ok {
			info, _ := cluster.ParseService(s)
			out[info.Key()] = info
		}
	}
	return out
}

// pass runs Plan over the current state and writes what it says. It
// reports whether a write failed (to retry soon).
func (c *Controller) pass(ctx context.Context) (failed bool) {
	_, lbCfg, _ := c.config()
	now := time.Now()
	problems := map[problemKey]Problem{}
	var svcs []cluster.ServiceInfo
	seen := map[string]bool{}
	for _, o := range c.opts.Services.GetStore().List() {
		s, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		info, errs := cluster.ParseService(s)
		if len(errs) > 0 {
			p := cluster.ServiceProblem(info, errs)
			problems[problemKey{info.Key(), p.Reason}] = Problem{p.Reason, p.Message}
		}
		if p, ok := c.pins[info.Key()]; ok {
			// Without resourceVersions (a fake clientset) the informer
			// copy is stale only while it lacks what was written and
			// shows no later change of type.
			lacksWrite := !slices.Equal(info.IngressIPs, p.svc.IngressIPs) || info.HasCleanupFinalizer != p.svc.HasCleanupFinalizer
			if p.svc.UID == info.UID && info.ResourceVersion == p.staleRV && now.Before(p.until) &&
				lacksWrite && info.Type == p.svc.Type {
				info = p.svc
			} else {
				delete(c.pins, info.Key())
			}
		}
		seen[info.Key()] = true
		svcs = append(svcs, info)
	}
	// Pinned Services the informer does not have yet.
	for k, p := range c.pins {
		switch {
		case seen[k]:
		case p.staleRV == "" && now.Before(p.until):
			svcs = append(svcs, p.svc)
		default:
			delete(c.pins, k)
		}
	}
	for _, d := range Plan(lbCfg, svcs) {
		key := d.Service.Key()
		for _, p := range d.Problems {
			problems[problemKey{key, p.Reason}] = p
		}
		if (!d.Change && d.Finalizer == FinalizerKeep) || ctx.Err() != nil {
			continue
		}
		if err := c.write(ctx, d); err != nil {
			failed = true
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				c.log.Info("Service changed while its addresses were written; trying again", "service", key, "err", err)
			} else {
				c.log.Warn("writing a Service's LoadBalancer addresses failed; trying again", "service", key, "err", err)
			}
		}
	}
	c.report(svcs, problems)
	return failed
}

// write sets status.loadBalancer.ingress with the resourceVersion Plan
// saw as a precondition: if the Service changed meanwhile (another
// writer, a spec change), the API server refuses with a Conflict and the
// next pass decides again from the new state.
func (c *Controller) write(ctx context.Context, d Decision) error {
	s := d.Service
	if d.Finalizer != FinalizerKeep {
		// On adding: first the finalizer, then the addresses, so a
		// Service never holds an address without it.
		out, err := c.patchFinalizer(ctx, s, d.Finalizer == FinalizerAdd)
		if err != nil {
			return err
		}
		written, _ := cluster.ParseService(out)
		c.pins[s.Key()] = pin{svc: written, staleRV: s.ResourceVersion, until: time.Now().Add(pinLife)}
		if d.Finalizer == FinalizerRemove {
			c.log.Info("cleanup finalizer removed", "service", s.Key(), "deleting", s.Deleting, "type", s.Type)
			return nil
		}
		s.ResourceVersion, s.HasCleanupFinalizer = out.ResourceVersion, true
	}
	if !d.Change {
		return nil
	}
	ingress := make([]map[string]string, 0, len(d.Addrs))
	for _, a := range d.Addrs {
		ingress = append(ingress, map[string]string{"ip": a.String()})
	}
	patch := map[string]any{"status": map[string]any{"loadBalancer": map[string]any{"ingress": ingress}}}
	if s.ResourceVersion != "" {
		patch["metadata"] = map[string]any{"resourceVersion": s.ResourceVersion}
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return err
	}
	out, err := c.opts.Client.CoreV1().Services(s.Namespace).Patch(ctx, s.Name, types.MergePatchType, raw,
		metav1.PatchOptions{FieldManager: "podrouted"}, "status")
	if err != nil {
		return err
	}
	written, _ := cluster.ParseService(out)
	c.pins[s.Key()] = pin{svc: written, staleRV: s.ResourceVersion, until: time.Now().Add(pinLife)}
	ref := serviceRef(s)
	for _, a := range d.Addrs {
		if pool, ok := d.Allocated[a]; ok {
			c.rec.Eventf(ref, corev1.EventTypeNormal, "AddressAllocated", "LoadBalancer address %s allocated from pool %s", a, pool)
			c.log.Info("LoadBalancer address allocated", "service", s.Key(), "address", a, "pool", pool)
		}
	}
	if released := removed(s.IngressIPs, d.Addrs); len(released) > 0 {
		c.rec.Eventf(ref, corev1.EventTypeNormal, "AddressReleased", "LoadBalancer address(es) %v released (not in a pool the Service may use, of a family it lacks, not the one it asks for, or held by an older Service)", released)
		c.log.Info("LoadBalancer address released", "service", s.Key(), "addresses", released)
	}
	return nil
}

// patchFinalizer adds or removes cluster.LoadBalancerCleanupFinalizer
// with a strategic merge patch, which leaves every other finalizer as it
// is, on the resourceVersion Plan saw; it returns the Service written.
func (c *Controller) patchFinalizer(ctx context.Context, s cluster.ServiceInfo, add bool) (*corev1.Service, error) {
	meta := map[string]any{}
	if add {
		meta["finalizers"] = []string{cluster.LoadBalancerCleanupFinalizer}
	} else {
		meta["$deleteFromPrimitiveList/finalizers"] = []string{cluster.LoadBalancerCleanupFinalizer}
	}
	if s.ResourceVersion != "" {
		meta["resourceVersion"] = s.ResourceVersion
	}
	raw, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return nil, err
	}
	return c.opts.Client.CoreV1().Services(s.Namespace).Patch(ctx, s.Name, types.StrategicMergePatchType, raw,
		metav1.PatchOptions{FieldManager: "podrouted"})
}

func removed(before, after []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range before {
		if !slices.Contains(after, a) {
			out = append(out, a)
		}
	}
	return out
}

func serviceRef(s cluster.ServiceInfo) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Service", APIVersion: "v1", Namespace: s.Namespace, Name: s.Name, UID: s.UID}
}

// report records each new or changed problem as a Warning Event on its
// Service, once; a problem that went away may be recorded again if it
// comes back.
func (c *Controller) report(svcs []cluster.ServiceInfo, problems map[problemKey]Problem) {
	byKey := map[string]cluster.ServiceInfo{}
	for _, s := range svcs {
		byKey[s.Key()] = s
	}
	next := map[problemKey]string{}
	for k, p := range problems {
		next[k] = p.Message
		if c.reported[k] == p.Message {
			continue
		}
		s, ok := byKey[k.service]
		if !ok {
			continue
		}
		c.log.Warn("Service problem", "service", k.service, "reason", p.Reason, "problem", p.Message)
		c.rec.Event(serviceRef(s), corev1.EventTypeWarning, p.Reason, p.Message)
	}
	c.reported = next
}
