package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config says which routes the reconciler owns and how often it checks.
type Config struct {
	// Protocol is the route protocol number carried by every route the
	// reconciler writes, and the only one it ever changes or deletes.
	Protocol uint8
	// Table is the routing table (254, main, when 0).
	Table uint32
	// ResyncInterval is the period of the full kernel resync (30s when 0).
	ResyncInterval time.Duration
	// StaleTimeout bounds how long routes adopted at start are kept
	// waiting for MarkSynced (no bound when 0).
	StaleTimeout time.Duration
	// NetnsPath, when set, is the network namespace (a /run/netns or
	// /proc/PID/ns/net path) to work in; empty means the current one.
	NetnsPath string
	Logger    *slog.Logger
}

// Kind says why a route is in the table.
type Kind string

const (
	KindLearned   Kind = "learned"
	KindBlackhole Kind = "blackhole"
	// KindStale is a route adopted from a previous run that has not been
	// re-learned yet.
	KindStale Kind = "stale"
)

// RouteState is one route as the status API shows it.
type RouteState struct {
	Route    Route
	Kind     Kind
	InKernel bool
	Error    string
}

// Reconciler makes the kernel hold exactly the desired routes of its
// protocol. All methods are safe for concurrent use.
type Reconciler struct {
	cfg Config
	log *slog.Logger
	ns  netns.NsHandle

	handle *netlink.Handle
	sock   *batchSocket

	mu      sync.Mutex
	desired map[netip.Prefix]Route
	own     map[netip.Prefix]bool  // prefixes SetBlackholes owns
	kernel  map[netip.Prefix]Route // our routes as last read or written
	stale   map[netip.Prefix]struct{}
	errs    map[netip.Prefix]string
	synced  bool
	// local are the addresses configured in the namespace; refused holds
	// learned routes left with no acceptable next hop, and nhNotes why
	// next hops were dropped (nexthop.go).
	local   map[netip.Addr]struct{}
	refused map[netip.Prefix]Route
	nhNotes map[netip.Prefix]string

	// repair collects prefixes whose routes someone deleted; the loop
	// re-installs them. fullResync asks the loop for a dump-and-diff.
	repairMu   sync.Mutex
	repair     map[netip.Prefix]struct{}
	kick       chan struct{}
	fullResync chan struct{}

	stats Stats
	// gen counts kernel writes, so Resync can tell that its dump (taken
	// without the lock) was overtaken by a write and must be read again.
	gen uint64

	cancel context.CancelFunc
	done   chan struct{}
}

// Stats are counters for metrics and tests.
type Stats struct {
	Writes, Deletes, Failures, Repairs, Resyncs uint64
}

// New checks cfg and opens the netlink sockets; Start begins the work.
func New(cfg Config) (*Reconciler, error) {
	if err := CheckProtocol(cfg.Protocol); err != nil {
		return nil, err
	}
	if cfg.Table == 0 {
		cfg.Table = unix.RT_TABLE_MAIN
	}
	if cfg.ResyncInterval <= 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &Reconciler{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "routes"),
		ns:         netns.None(),
		desired:    map[netip.Prefix]Route{},
		own:        map[netip.Prefix]bool{},
		kernel:     map[netip.Prefix]Route{},
		stale:      map[netip.Prefix]struct{}{},
		errs:       map[netip.Prefix]string{},
		local:      map[netip.Addr]struct{}{},
		refused:    map[netip.Prefix]Route{},
		nhNotes:    map[netip.Prefix]string{},
		repair:     map[netip.Prefix]struct{}{},
		kick:       make(chan struct{}, 1),
		fullResync: make(chan struct{}, 1),
		done:       make(chan struct{}),
	}
	var err error
	if cfg.NetnsPath != "" {
		if r.ns, err = netns.GetFromPath(cfg.NetnsPath); err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", cfg.NetnsPath, err)
		}
	}
	if r.handle, err = netlink.NewHandleAt(r.ns); err != nil {
		r.closeNS()
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	if r.sock, err = openBatchSocket(r.ns); err != nil {
		r.handle.Close()
		r.closeNS()
		return nil, err
	}
	return r, nil
}

func (r *Reconciler) closeNS() {
	if r.ns.IsOpen() {
		r.ns.Close()
	}
}

// Start adopts the routes of our protocol already in the kernel (they stay
// until MarkSynced or StaleTimeout) and starts the event and resync loop.
// It returns the number of adopted routes.
func (r *Reconciler) Start(ctx context.Context) (int, error) {
	kernel, err := dumpOwn(r.handle, r.cfg.Table, r.cfg.Protocol)
	if err != nil {
		return 0, err
	}
	local, err := loadLocalAddrs(r.handle)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.local = local
	r.kernel = kernel
	for p := range kernel {
		if _, wanted := r.desired[p]; !wanted {
			r.stale[p] = struct{}{}
		}
	}
	adopted := len(r.stale)
	r.mu.Unlock()
	if adopted > 0 {
		r.log.Info("adopted routes from a previous run; keeping them until the table is re-learned",
			"routes", adopted, "protocol", r.cfg.Protocol, "table", r.cfg.Table, "bound", r.cfg.StaleTimeout)
	} else {
		r.mu.Lock()
		r.synced = true
		r.mu.Unlock()
	}
	ctx, r.cancel = context.WithCancel(ctx)
	go r.loop(ctx)
	if adopted > 0 && r.cfg.StaleTimeout > 0 {
		go func() {
			select {
			case <-time.After(r.cfg.StaleTimeout):
				if !r.Synced() {
					r.log.Warn("table not re-learned in time; removing routes adopted from the previous run that were not re-learned",
						"timeout", r.cfg.StaleTimeout)
					r.MarkSynced()
				}
			case <-ctx.Done():
			}
		}()
	}
	return adopted, nil
}

// Close stops the loop and closes sockets. Kernel routes stay: a
// restarting daemon adopts them.
func (r *Reconciler) Close() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
	}
	r.sock.close()
	r.handle.Close()
	r.closeNS()
}

// Synced reports whether stale routes have been swept.
func (r *Reconciler) Synced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// MarkSynced says the table has been re-learned: adopted routes that were
// not re-learned are removed now.
func (r *Reconciler) MarkSynced() {
	r.mu.Lock()
	if r.synced {
		r.mu.Unlock()
		return
	}
	r.synced = true
	var ops []op
	for p := range r.stale {
		if have, ok := r.kernel[p]; ok {
			ops = append(ops, op{route: have, delete: true})
		}
	}
	n := len(r.stale)
	r.stale = map[netip.Prefix]struct{}{}
	r.applyLocked(ops)
	r.mu.Unlock()
	r.log.Info("table re-learned; removed stale routes", "removed", n)
}

// Update changes the desired routes: set adds or replaces, del removes.
// The kernel is changed before Update returns. Invalid routes are skipped
// and reported in the returned error; everything else is applied.
func (r *Reconciler) Update(set []Route, del []netip.Prefix) error {
	return r.update(set, del, false)
}

// update applies set and del. The blackholes of SetBlackholes (this
// node's own pod CIDRs) are its alone: an ordinary update never replaces
// or removes one, so a learned route or a withdrawal for our own prefix
// can never open a hole to the default route.
func (r *Reconciler) update(set []Route, del []netip.Prefix, blackholes bool) error {
	var bad []error
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := make([]op, 0, len(set)+len(del))
	for _, rt := range set {
		// Validate before normalizing: normalize drops a blackhole's next
		// hops, which would hide the caller's mistake.
		if err := rt.validate(); err != nil {
			bad = append(bad, err)
			continue
		}
		rt = rt.normalize()
		if r.own[rt.Prefix] && !blackholes {
			bad = append(bad, fmt.Errorf("route %s: the prefix is this node's own (blackholed); not replaced", rt))
			continue
		}
		delete(r.refused, rt.Prefix)
		delete(r.nhNotes, rt.Prefix)
		if !rt.Blackhole {
			sane, why := r.saneNextHopsLocked(rt)
			if why != "" {
				r.nhNotes[rt.Prefix] = why
				bad = append(bad, fmt.Errorf("route %s: %s", rt, why))
			}
			if len(sane.NextHops) == 0 {
				// Refused: whatever we had for the prefix goes, as if
				// the peer had withdrawn it.
				r.refused[rt.Prefix] = rt
				if _, had := r.desired[rt.Prefix]; had {
					delete(r.desired, rt.Prefix)
					delete(r.errs, rt.Prefix)
					if have, ok := r.kernel[rt.Prefix]; ok {
						ops = append(ops, op{route: have, delete: true})
					}
				}
				continue
			}
			rt = sane
		}
		r.desired[rt.Prefix] = rt
		delete(r.stale, rt.Prefix)
		have, ok := r.kernel[rt.Prefix]
		if ok && have.Equal(rt) {
			continue
		}
		ops = append(ops, op{route: rt, replace: ok})
	}
	for _, p := range del {
		p = p.Masked()
		if !blackholes {
			delete(r.refused, p)
			delete(r.nhNotes, p)
		}
		if _, ok := r.desired[p]; !ok || r.own[p] != blackholes {
			continue
		}
		delete(r.desired, p)
		delete(r.errs, p)
		if have, ok := r.kernel[p]; ok {
			ops = append(ops, op{route: have, delete: true})
		}
	}
	r.applyLocked(ops)
	return errors.Join(bad...)
}

// SetBlackholes makes prefixes the complete set of blackhole routes for
// this node's own pod CIDRs.
func (r *Reconciler) SetBlackholes(prefixes []netip.Prefix) error {
	want := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		want[p.Masked()] = true
	}
	var set []Route
	var del []netip.Prefix
	r.mu.Lock()
	for p := range r.own {
		if !want[p] {
			del = append(del, p)
		}
	}
	r.mu.Unlock()
	for p := range want {
		set = append(set, Route{Prefix: p, Blackhole: true})
	}
	err := r.update(set, del, true)
	r.mu.Lock()
	r.own = want
	r.mu.Unlock()
	return err
}

// Resync reads our routes from the kernel and applies the full diff.
func (r *Reconciler) Resync() error {
	// Address events can be missed while the subscription is re-made.
	if local, err := loadLocalAddrs(r.handle); err == nil {
		r.mu.Lock()
		r.local = local
		r.mu.Unlock()
	}
	// The dump runs without the lock so that a large table does not stall
	// updates; if a write happened meanwhile the dump may be out of date,
	// so it is taken again (a few times, then under the lock).
	var kernel map[netip.Prefix]Route
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		before := r.gen
		r.mu.Unlock()
		var err error
		if kernel, err = dumpOwn(r.handle, r.cfg.Table, r.cfg.Protocol); err != nil {
			return err
		}
		r.mu.Lock()
		if r.gen == before {
			break
		}
		if attempt >= 3 {
			if kernel, err = dumpOwn(r.handle, r.cfg.Table, r.cfg.Protocol); err != nil {
				r.mu.Unlock()
				return err
			}
			break
		}
		r.mu.Unlock()
	}
	defer r.mu.Unlock()
	r.stats.Resyncs++
	r.kernel = kernel
	writes, deletes := plan(r.desired, kernel, func(p netip.Prefix) bool {
		_, keep := r.stale[p]
		return keep
	})
	ops := make([]op, 0, len(writes)+len(deletes))
	for _, w := range writes {
		ops = append(ops, op{route: w.route, replace: w.replace})
	}
	for _, d := range deletes {
		ops = append(ops, op{route: d, delete: true})
	}
	if len(ops) > 0 {
		r.log.Info("resync found drift", "write", len(writes), "delete", len(deletes))
	}
	r.applyLocked(ops)
	return nil
}

// applyLocked writes ops and records the outcome in r.kernel and r.errs.
// r.mu must be held.
func (r *Reconciler) applyLocked(ops []op) {
	if len(ops) == 0 {
		return
	}
	r.gen++
	results, known, err := r.sock.apply(ops, r.cfg.Table, r.cfg.Protocol)
	if err != nil {
		// The socket failed mid-way; what the kernel holds is unknown, so
		// the next resync re-reads it.
		r.log.Error("netlink write failed; will resync", "err", err)
		r.requestResync()
	}
	var exists []op
	for i, o := range ops {
		if i >= known {
			break
		}
		res := results[i]
		p := o.route.Prefix
		switch {
		case res == nil && o.delete:
			delete(r.kernel, p)
			r.stats.Deletes++
		case res == nil:
			r.kernel[p] = o.route
			delete(r.errs, p)
			r.stats.Writes++
		case !o.delete && !o.replace && errors.Is(res, unix.EEXIST):
			exists = append(exists, o)
		default:
			r.stats.Failures++
			r.errs[p] = res.Error()
			r.log.Warn("kernel rejected route", "route", o.route.String(), "delete", o.delete, "err", res)
		}
	}
	if len(exists) > 0 {
		r.resolveExisting(exists)
	}
}

// resolveExisting handles exclusive creates that met an existing route.
// If the route at that key is ours (our view of the kernel was out of
// date), it is replaced; if it belongs to another protocol it is never
// touched. One table dump answers for all of them.
func (r *Reconciler) resolveExisting(ops []op) {
	owners, err := tableOwners(r.handle, r.cfg.Table, r.cfg.Protocol)
	if err != nil {
		r.log.Warn("cannot tell who owns existing routes; will resync", "err", err)
		r.requestResync()
		return
	}
	var retry []op
	for _, o := range ops {
		p := o.route.Prefix
		proto, ok := owners[p]
		if ok && proto == int(r.cfg.Protocol) {
			retry = append(retry, op{route: o.route, replace: true})
			continue
		}
		r.stats.Failures++
		r.errs[p] = fmt.Sprintf("a route of protocol %d already exists for %s in table %d; podroute does not touch it", proto, p, r.cfg.Table)
		r.log.Warn("not installing route: another protocol's route holds the prefix", "prefix", p, "protocol", proto)
	}
	if len(retry) > 0 {
		r.applyLocked(retry)
	}
}

func (r *Reconciler) requestResync() {
	select {
	case r.fullResync <- struct{}{}:
	default:
	}
}

// Snapshot returns every desired and stale route with its kernel state,
// sorted by prefix.
func (r *Reconciler) Snapshot() []RouteState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RouteState, 0, len(r.desired)+len(r.stale)+len(r.refused))
	for p, d := range r.desired {
		kind := KindLearned
		if d.Blackhole {
			kind = KindBlackhole
		}
		have, ok := r.kernel[p]
		msg := r.errs[p]
		if note := r.nhNotes[p]; note != "" {
			msg = strings.TrimPrefix(msg+"; "+note, "; ")
		}
		out = append(out, RouteState{Route: d, Kind: kind, InKernel: ok && have.Equal(d), Error: msg})
	}
	for _, rt := range r.refused {
		out = append(out, RouteState{Route: rt, Kind: KindLearned, Error: "refused: " + r.nhNotes[rt.Prefix]})
	}
	for p := range r.stale {
		have, ok := r.kernel[p]
		out = append(out, RouteState{Route: have, Kind: KindStale, InKernel: ok})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Route.Prefix, out[j].Route.Prefix
		if a.Addr().Is4() != b.Addr().Is4() {
			return a.Addr().Is4()
		}
		return comparePrefix(a, b) < 0
	})
	return out
}

// Stats returns a copy of the counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// RemoveAll deletes every route of ours from the kernel and forgets the
// desired set: the clean stop of a daemon without graceful restart.
func (r *Reconciler) RemoveAll() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := make([]op, 0, len(r.kernel))
	for _, have := range r.kernel {
		ops = append(ops, op{route: have, delete: true})
	}
	r.desired = map[netip.Prefix]Route{}
	r.own = map[netip.Prefix]bool{}
	r.stale = map[netip.Prefix]struct{}{}
	r.refused = map[netip.Prefix]Route{}
	r.nhNotes = map[netip.Prefix]string{}
	r.applyLocked(ops)
	if len(r.kernel) > 0 {
		return fmt.Errorf("%d routes could not be removed", len(r.kernel))
	}
	return nil
}
