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
	"sync/atomic"
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

// Summary is the table in numbers, kept as routes change: reading it
// costs nothing whatever the table's size.
type Summary struct {
	Learned, Blackholes, Stale int
	// InKernel counts the learned and blackhole routes the kernel holds
	// as wanted.
	InKernel int
	// Failed counts routes the kernel rejected; Refused, learned routes
	// with no next hop a peer may set (nexthop.go).
	Failed, Refused int
}

// Reconciler makes the kernel hold exactly the desired routes of its
// protocol. All methods are safe for concurrent use.
type Reconciler struct {
	cfg Config
	log *slog.Logger
	ns  netns.NsHandle

	handle *netlink.Handle
	sock   *batchSocket
	dumpFD int

	mu     sync.Mutex
	table  map[pkey]entry
	hops   hopTable
	counts counts
	errs   map[netip.Prefix]string
	synced bool
	// local are the addresses configured in the namespace; refused holds
	// learned routes left with no acceptable next hop, and nhNotes why
	// next hops were dropped (nexthop.go).
	local   map[netip.Addr]struct{}
	refused map[netip.Prefix]Route
	nhNotes map[netip.Prefix]string
	// own is the set SetBlackholes made, for next-hop sanity.
	own map[netip.Prefix]bool
	// touched collects the prefixes written while a resync's dump runs
	// without the lock; the dump's view of them is out of date.
	touched map[pkey]struct{}

	// repair collects prefixes whose routes someone deleted; the loop
	// re-installs them. fullResync asks the loop for a dump-and-diff.
	repairMu   sync.Mutex
	repair     map[netip.Prefix]struct{}
	kick       chan struct{}
	fullResync chan struct{}

	stats   Stats
	notices atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
}

// Stats are counters for metrics and tests.
type Stats struct {
	Writes, Deletes, Failures, Repairs, Resyncs uint64
	// Notices counts the route notices the kernel let through the
	// deletion watch's socket filter: deletions of our routes (our own
	// included), never the routes we write.
	Notices uint64
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
		dumpFD:     -1,
		table:      map[pkey]entry{},
		hops:       newHopTable(),
		errs:       map[netip.Prefix]string{},
		local:      map[netip.Addr]struct{}{},
		refused:    map[netip.Prefix]Route{},
		nhNotes:    map[netip.Prefix]string{},
		own:        map[netip.Prefix]bool{},
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
	if r.dumpFD, err = dumpSocket(r.ns); err != nil {
		r.sock.close()
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

// put stores e for k, keeping the running counts; an entry with nothing
// wanted, nothing in the kernel and no flag is dropped.
func (r *Reconciler) put(k pkey, old, e entry) {
	r.counts.add(old, -1)
	if e.want == noHops && e.have == noHops && e.flags == 0 {
		delete(r.table, k)
		return
	}
	r.counts.add(e, +1)
	r.table[k] = e
}

// route materializes a Route; its NextHops are shared with the hop table
// and must not be modified.
func (r *Reconciler) route(p netip.Prefix, id hopsID) Route {
	if id == blackholeHops {
		return Route{Prefix: p, Blackhole: true}
	}
	return Route{Prefix: p, NextHops: r.hops.hops(id)}
}

// idOf interns a normalized route's next hops.
func (r *Reconciler) idOf(rt Route) hopsID {
	if rt.Blackhole {
		return blackholeHops
	}
	return r.hops.id(rt.NextHops)
}

// Start adopts the routes of our protocol already in the kernel (they stay
// until MarkSynced or StaleTimeout) and starts the event and resync loop.
// It returns the number of adopted routes.
func (r *Reconciler) Start(ctx context.Context) (int, error) {
	local, err := loadLocalAddrs(r.handle)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	r.local = local
	adopted := 0
	err = dumpOwn(r.dumpFD, r.cfg.Table, r.cfg.Protocol, func(kr *kernelRoute) {
		k := keyOf(kr.prefix)
		old := r.table[k]
		e := old
		e.have = r.idOf(Route{Prefix: kr.prefix, NextHops: kr.hops, Blackhole: kr.blackhole})
		if e.want == noHops && e.flags&flagStale == 0 {
			e.flags |= flagStale
			adopted++
		}
		r.put(k, old, e)
	})
	if adopted == 0 {
		r.synced = true
	}
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if adopted > 0 {
		r.log.Info("adopted routes from a previous run; keeping them until the table is re-learned",
			"routes", adopted, "protocol", r.cfg.Protocol, "table", r.cfg.Table, "bound", r.cfg.StaleTimeout)
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
	if r.dumpFD >= 0 {
		unix.Close(r.dumpFD)
	}
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
	n := 0
	for k, old := range r.table {
		if old.flags&flagStale == 0 {
			continue
		}
		e := old
		e.flags &^= flagStale
		if e.want == noHops {
			n++
			if e.have != noHops {
				ops = append(ops, op{route: r.route(k.prefix(), e.have), delete: true})
			}
		}
		r.put(k, old, e)
	}
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
		k := keyOf(rt.Prefix)
		old := r.table[k]
		if old.flags&flagOwn != 0 && !blackholes {
			bad = append(bad, fmt.Errorf("route %s: the prefix is this node's own (blackholed); not replaced", rt))
			continue
		}
		e := old
		e.flags &^= flagStale
		if blackholes {
			e.flags |= flagOwn
		} else {
			delete(r.refused, rt.Prefix)
			delete(r.nhNotes, rt.Prefix)
		}
		if !blackholes && !rt.Blackhole {
			sane, why := r.saneNextHopsLocked(rt)
			if why != "" {
				r.nhNotes[rt.Prefix] = why
				bad = append(bad, fmt.Errorf("route %s: %s", rt, why))
			}
			if len(sane.NextHops) == 0 {
				// Refused: whatever we had for the prefix goes, as if
				// the peer had withdrawn it.
				r.refused[rt.Prefix] = rt
				e.want = noHops
				delete(r.errs, rt.Prefix)
				ops = r.planLocked(ops, k, e)
				r.put(k, old, e)
				continue
			}
			rt = sane
		}
		e.want = r.idOf(rt)
		ops = r.planLocked(ops, k, e)
		r.put(k, old, e)
	}
	for _, p := range del {
		p = p.Masked()
		if !blackholes {
			delete(r.refused, p)
			delete(r.nhNotes, p)
		}
		k := keyOf(p)
		old, ok := r.table[k]
		if !ok || old.want == noHops || (old.flags&flagOwn != 0) != blackholes {
			continue
		}
		e := old
		e.want = noHops
		e.flags &^= flagOwn
		delete(r.errs, p)
		ops = r.planLocked(ops, k, e)
		r.put(k, old, e)
	}
	r.applyLocked(ops)
	return errors.Join(bad...)
}

// planLocked appends the kernel operation entry e needs.
func (r *Reconciler) planLocked(ops []op, k pkey, e entry) []op {
	switch decide(e) {
	case actCreate:
		return append(ops, op{route: r.route(k.prefix(), e.want), hops: e.want})
	case actReplace:
		return append(ops, op{route: r.route(k.prefix(), e.want), hops: e.want, replace: true})
	case actDelete:
		return append(ops, op{route: r.route(k.prefix(), e.have), hops: e.have, delete: true})
	}
	return ops
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
//
// The dump streams into a compact map without the lock, so that a large
// table does not stall updates; whatever is written meanwhile is left out
// of the comparison (its state is known from the write itself).
func (r *Reconciler) Resync() error {
	// Address events can be missed while the subscription is re-made.
	if local, err := loadLocalAddrs(r.handle); err == nil {
		r.mu.Lock()
		r.local = local
		r.mu.Unlock()
	}
	r.mu.Lock()
	r.touched = map[pkey]struct{}{}
	r.mu.Unlock()
	// Next-hop sets seen in the dump, interned locally and translated
	// under the lock (there are few distinct ones).
	kernel := map[pkey]uint32{}
	var sets []Route
	setIndex := map[string]uint32{}
	err := dumpOwn(r.dumpFD, r.cfg.Table, r.cfg.Protocol, func(kr *kernelRoute) {
		key := "b"
		if !kr.blackhole {
			key = hopsKey(kr.hops)
		}
		i, ok := setIndex[key]
		if !ok {
			i = uint32(len(sets))
			setIndex[key] = i
			sets = append(sets, Route{Blackhole: kr.blackhole, NextHops: append([]netip.Addr(nil), kr.hops...)})
		}
		kernel[keyOf(kr.prefix)] = i
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	touched := r.touched
	r.touched = nil
	if err != nil {
		return err
	}
	r.stats.Resyncs++
	ids := make([]hopsID, len(sets))
	for i, s := range sets {
		ids[i] = r.idOf(s)
	}
	var ops []op
	writes, deletes := 0, 0
	for k, old := range r.table {
		if _, skip := touched[k]; skip {
			continue
		}
		e := old
		e.have = noHops
		if i, ok := kernel[k]; ok {
			e.have = ids[i]
		}
		if n := len(ops); decide(e) != actNone {
			ops = r.planLocked(ops, k, e)
			if ops[n].delete {
				deletes++
			} else {
				writes++
			}
		}
		r.put(k, old, e)
	}
	for k, i := range kernel {
		if _, known := r.table[k]; known {
			continue
		}
		if _, skip := touched[k]; skip {
			continue
		}
		// Ours by protocol, wanted by nobody, not kept from a previous
		// run: someone added it by hand, or we lost track of it.
		ops = append(ops, op{route: r.route(k.prefix(), ids[i]), delete: true})
		deletes++
	}
	if len(ops) > 0 {
		r.log.Info("resync found drift", "write", writes, "delete", deletes)
	}
	sort.Slice(ops, func(i, j int) bool { return comparePrefix(ops[i].route.Prefix, ops[j].route.Prefix) < 0 })
	r.applyLocked(ops)
	r.compactHopsLocked()
	return nil
}

// compactHopsLocked rebuilds the hop table when it holds far more sets
// than entries use (peers cycling through next hops).
func (r *Reconciler) compactHopsLocked() {
	if len(r.hops.sets) < 64 {
		return
	}
	used := map[hopsID]bool{}
	for _, e := range r.table {
		used[e.want], used[e.have] = true, true
	}
	if len(r.hops.sets) < 2*len(used)+64 {
		return
	}
	fresh := newHopTable()
	remap := map[hopsID]hopsID{noHops: noHops, blackholeHops: blackholeHops}
	for id := range used {
		if id >= 2 {
			remap[id] = fresh.id(r.hops.hops(id))
		}
	}
	for k, e := range r.table {
		e.want, e.have = remap[e.want], remap[e.have]
		r.table[k] = e
	}
	r.hops = fresh
}

// applyLocked writes ops and records the outcome in the table and r.errs.
// r.mu must be held.
func (r *Reconciler) applyLocked(ops []op) {
	if len(ops) == 0 {
		return
	}
	results, known, err := r.sock.apply(ops, r.cfg.Table, r.cfg.Protocol)
	if err != nil {
		// The socket failed mid-way; what the kernel holds is unknown, so
		// the next resync re-reads it.
		r.log.Error("netlink write failed; will resync", "err", err)
		r.requestResync()
	}
	var exists []op
	for i, o := range ops {
		p := o.route.Prefix
		k := keyOf(p)
		if r.touched != nil {
			r.touched[k] = struct{}{}
		}
		if i >= known {
			continue
		}
		res := results[i]
		old := r.table[k]
		e := old
		switch {
		case res == nil && o.delete:
			e.have = noHops
			r.stats.Deletes++
		case res == nil:
			e.have = o.hops
			if e.have == noHops { // an op built without its id
				e.have = r.idOf(o.route)
			}
			delete(r.errs, p)
			r.stats.Writes++
		case !o.delete && !o.replace && errors.Is(res, unix.EEXIST):
			exists = append(exists, o)
			continue
		default:
			r.stats.Failures++
			r.errs[p] = res.Error()
			r.log.Warn("kernel rejected route", "route", o.route.String(), "delete", o.delete, "err", res)
			continue
		}
		r.put(k, old, e)
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
			retry = append(retry, op{route: o.route, hops: o.hops, replace: true})
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

// Snapshot returns every desired, stale and refused route with its kernel
// state, sorted by prefix. It walks the whole table: for listings, not for
// counts (see Summary).
func (r *Reconciler) Snapshot() []RouteState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RouteState, 0, len(r.table)+len(r.refused))
	for k, e := range r.table {
		p := k.prefix()
		switch {
		case e.want != noHops:
			kind := KindLearned
			if e.want == blackholeHops {
				kind = KindBlackhole
			}
			msg := r.errs[p]
			if note := r.nhNotes[p]; note != "" {
				msg = strings.TrimPrefix(msg+"; "+note, "; ")
			}
			out = append(out, RouteState{Route: r.route(p, e.want), Kind: kind, InKernel: e.have == e.want, Error: msg})
		case e.flags&flagStale != 0:
			out = append(out, RouteState{Route: r.route(p, e.have), Kind: KindStale, InKernel: e.have != noHops})
		}
	}
	for _, rt := range r.refused {
		out = append(out, RouteState{Route: rt, Kind: KindLearned, Error: "refused: " + r.nhNotes[rt.Prefix]})
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

// Summary returns the running counts.
func (r *Reconciler) Summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Summary{
		Learned: r.counts.learned, Blackholes: r.counts.blackholes, Stale: r.counts.stale,
		InKernel: r.counts.inKernel, Failed: len(r.errs), Refused: len(r.refused),
	}
}

// Stats returns a copy of the counters.
func (r *Reconciler) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stats
	st.Notices = r.notices.Load()
	return st
}

// RemoveAll deletes every route of ours from the kernel and forgets the
// desired set: the clean stop of a daemon without graceful restart.
func (r *Reconciler) RemoveAll() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []op
	for k, e := range r.table {
		if e.have != noHops {
			ops = append(ops, op{route: r.route(k.prefix(), e.have), delete: true})
		}
		// Keep only what the kernel holds, as unwanted and not stale, so
		// the deletions below are recorded.
		r.put(k, e, entry{have: e.have})
	}
	r.own = map[netip.Prefix]bool{}
	r.refused = map[netip.Prefix]Route{}
	r.nhNotes = map[netip.Prefix]string{}
	r.applyLocked(ops)
	if n := len(r.table); n > 0 {
		return fmt.Errorf("%d routes could not be removed", n)
	}
	return nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
