package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/podroute/podroute/internal/netkey"
)

// ribView mirrors, for every prefix learned from peers, the paths GoBGP
// currently uses for it (the best path and, with multipath, its
// equal-cost siblings). GoBGP's best-path events carry only what changed
// (a path added to or withdrawn from a prefix's set); the view turns them
// into the prefix's whole next-hop set.
//
// Changed prefixes are collected in a set and handed to Updates by one
// goroutine: however many events touched a prefix while the consumer was
// busy, it gets one RouteUpdate with the latest next hops. Nothing here
// walks the table; every operation is per prefix.
//
// Memory: a prefix maps (pointer-free key) to the id of an interned set of
// paths; the 100k prefixes behind one peer share one set, and the set's
// next-hop slice is what Updates hands out, so a table load allocates
// nothing per prefix here but its map slot.
type ribView struct {
	log *slog.Logger
	// multipath: GoBGP reports each change to a prefix's equal-cost set.
	// Without it, each event carries the new best path alone, which
	// replaces whatever the prefix had.
	multipath bool

	mu    sync.Mutex
	paths map[netkey.Key]pathSetID
	sets  pathSets
	dirty map[netkey.Key]struct{}
	// inUse and sole count, per peer, the prefixes that use one of its
	// paths and those that use only its paths (for status).
	inUse map[netip.Addr]uint64
	sole  map[netip.Addr]uint64
	// limits, overLimit, floor and over enforce the peers' prefix limits
	// (limits.go).
	limits    map[netip.Addr]uint32
	overLimit map[netip.Addr]bool
	floor     map[netip.Addr]uint64
	over      chan netip.Addr
	// learned counts the prefixes of each family (index: is IPv6).
	learned [2]uint64
	own     [2]uint64
	// syncPending asks the forwarder to close synced once it has handed
	// on everything collected so far.
	syncPending bool
	syncClosed  bool

	kick    chan struct{}
	updates chan []RouteUpdate
	synced  chan struct{}
}

// usedPath is one path in a prefix's set: which peer sent it and where
// it leads.
type usedPath struct {
	peer    netip.Addr
	nextHop netip.Addr
}

// pathSetID names an interned set of paths; 0 is the empty set.
type pathSetID uint32

// pathSet is one interned set: its paths, and what Updates and the
// counters need of it, computed once.
type pathSet struct {
	paths []usedPath
	hops  []netip.Addr // distinct next hops, shared read-only
	peers []netip.Addr // distinct peers
	sole  netip.Addr   // the only peer, if there is one
}

// pathSets interns path sets. A set's identity is its paths in order of
// peer. Sets are not freed one by one; compact rebuilds the table when it
// has grown well past the sets in use (next hops churning).
type pathSets struct {
	sets  []pathSet
	index map[string]pathSetID
	// step caches set transitions (from, path added or removed) -> to:
	// a table load applies the same step to 100k prefixes in a row.
	step map[pathStep]pathSetID
}

type pathStep struct {
	from   pathSetID
	path   usedPath
	remove bool
}

func newPathSets() pathSets {
	return pathSets{sets: []pathSet{{}}, index: map[string]pathSetID{}, step: map[pathStep]pathSetID{}}
}

func (s *pathSets) get(id pathSetID) *pathSet { return &s.sets[id] }

// apply returns the set that from becomes when path is added (replacing
// the path of the same peer) or removed.
func (s *pathSets) apply(from pathSetID, path usedPath, remove bool) pathSetID {
	k := pathStep{from, path, remove}
	if to, ok := s.step[k]; ok {
		return to
	}
	old := s.sets[from].paths
	var paths []usedPath
	for _, u := range old {
		if u.peer != path.peer {
			paths = append(paths, u)
		}
	}
	if !remove {
		paths = append(paths, path)
	}
	slices.SortFunc(paths, func(a, b usedPath) int { return a.peer.Compare(b.peer) })
	to := s.intern(paths)
	if len(s.step) > 4096 {
		clear(s.step)
	}
	s.step[k] = to
	return to
}

func (s *pathSets) intern(paths []usedPath) pathSetID {
	if len(paths) == 0 {
		return 0
	}
	b := make([]byte, 0, 32*len(paths))
	for _, u := range paths {
		p, n := u.peer.As16(), u.nextHop.As16()
		b = append(append(b, p[:]...), n[:]...)
	}
	if id, ok := s.index[string(b)]; ok {
		return id
	}
	set := pathSet{paths: paths}
	for _, u := range paths {
		if !slices.Contains(set.hops, u.nextHop) {
			set.hops = append(set.hops, u.nextHop)
		}
		if !slices.Contains(set.peers, u.peer) {
			set.peers = append(set.peers, u.peer)
		}
	}
	// Sorted, so that the kernel side takes them as they are.
	slices.SortFunc(set.hops, func(a, b netip.Addr) int { return a.Compare(b) })
	if len(set.peers) == 1 {
		set.sole = set.peers[0]
	}
	id := pathSetID(len(s.sets))
	s.sets = append(s.sets, set)
	s.index[string(b)] = id
	return id
}

func newRIBView(log *slog.Logger, multipath bool) *ribView {
	return &ribView{
		log:       log,
		multipath: multipath,
		paths:     map[netkey.Key]pathSetID{},
		sets:      newPathSets(),
		dirty:     map[netkey.Key]struct{}{},
		inUse:     map[netip.Addr]uint64{},
		sole:      map[netip.Addr]uint64{},
		limits:    map[netip.Addr]uint32{},
		overLimit: map[netip.Addr]bool{},
		floor:     map[netip.Addr]uint64{},
		over:      make(chan netip.Addr, 64),
		kick:      make(chan struct{}, 1),
		// One batch in flight: while the consumer is busy, changes
		// gather (and coalesce) in the dirty set rather than in a queue.
		updates: make(chan []RouteUpdate, 1),
		synced:  make(chan struct{}),
	}
}

// onBestPath is GoBGP's best-path callback. GoBGP calls it from one
// goroutine, in order.
func (s *Speaker) onBestPath(paths []*apiutil.Path, _ time.Time) { s.rib.apply(paths) }

// apply records the paths of one best-path event.
func (v *ribView) apply(paths []*apiutil.Path) {
	if len(paths) == 0 {
		return
	}
	v.mu.Lock()
	changed := false
	for _, p := range paths {
		// Our own originated paths have no peer; a learned path that one
		// of them displaced comes as its own withdrawal.
		if !p.PeerAddress.IsValid() {
			continue
		}
		prefix, err := pathPrefix(p)
		if err != nil {
			v.log.Warn("skipping path", "peer", p.PeerAddress, "err", err)
			continue
		}
		peer := p.PeerAddress.Unmap()
		k := netkey.Of(prefix)
		if p.Withdrawal {
			changed = v.setLocked(k, prefix, v.sets.apply(v.paths[k], usedPath{peer: peer}, true)) || changed
			continue
		}
		if p.Stale && !slices.ContainsFunc(v.sets.get(v.paths[k]).paths, func(u usedPath) bool { return u.peer == peer }) {
			// Graceful restart marks paths that were in use as stale; a
			// path first seen stale was never in use. GoBGP v4.8 produces
			// those when it treats its own max-prefix teardown as a
			// graceful restart and stales the UPDATEs past the limit that
			// it had kept out of the table (see holdOffLocked).
			v.log.Debug("ignoring a path first seen stale", "prefix", prefix, "peer", peer)
			continue
		}
		nh, err := pathNextHop(p)
		if err != nil {
			v.log.Warn("skipping path", "prefix", prefix, "peer", peer, "err", err)
			changed = v.setLocked(k, prefix, v.sets.apply(v.paths[k], usedPath{peer: peer}, true)) || changed
			continue
		}
		from := v.paths[k]
		if !slices.ContainsFunc(v.sets.get(from).paths, func(u usedPath) bool { return u.peer == peer }) && !v.admitLocked(peer) {
			// A new prefix for this peer, past its limit (limits.go).
			v.log.Debug("refusing a path from a peer past its prefix limit", "prefix", prefix, "peer", peer)
			continue
		}
		if !v.multipath {
			from = 0 // the new best replaces the prefix's whole set
		}
		changed = v.setLocked(k, prefix, v.sets.apply(from, usedPath{peer: peer, nextHop: nh}, false)) || changed
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
}

// setLocked moves prefix k to set to, keeping the counters.
func (v *ribView) setLocked(k netkey.Key, prefix netip.Prefix, to pathSetID) bool {
	from := v.paths[k]
	if from == to {
		return false
	}
	v.countLocked(from, k, -1)
	v.countLocked(to, k, +1)
	if to == 0 {
		delete(v.paths, k)
	} else {
		v.paths[k] = to
	}
	v.dirty[k] = struct{}{}
	return true
}

func (v *ribView) countLocked(id pathSetID, k netkey.Key, d int) {
	if id == 0 {
		return
	}
	set := v.sets.get(id)
	for _, p := range set.peers {
		v.inUse[p] = uint64(int64(v.inUse[p]) + int64(d))
	}
	if set.sole.IsValid() {
		v.sole[set.sole] = uint64(int64(v.sole[set.sole]) + int64(d))
	}
	f := 0
	if k.Is6() {
		f = 1
	}
	v.learned[f] = uint64(int64(v.learned[f]) + int64(d))
}

func (v *ribView) signal() {
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

func familyIndex(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// setOwn records how many prefixes of each family this node originates.
func (v *ribView) setOwn(own []netip.Prefix) {
	var n [2]uint64
	for _, p := range own {
		n[familyIndex(p)]++
	}
	v.mu.Lock()
	v.own = n
	v.mu.Unlock()
}

// counts returns, for status, the prefixes using peer's paths, those using
// only its paths, and the prefixes of peer's family learned and
// originated.
func (v *ribView) counts(peer netip.Addr) (inUse, sole, learned, own uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f := 0
	if peer.Is6() {
		f = 1
	}
	return v.inUse[peer], v.sole[peer], v.learned[f], v.own[f]
}

// markSynced asks the forwarder to close synced after handing on what is
// collected now. Everything GoBGP reported before the End-of-RIB that made
// the table complete is in the dirty set already: events come in order.
func (v *ribView) markSynced() {
	v.mu.Lock()
	v.syncPending = true
	v.mu.Unlock()
	v.signal()
}

// forward hands collected changes to Updates until ctx ends.
func (v *ribView) forward(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.kick:
		}
		v.mu.Lock()
		var batch []RouteUpdate
		if len(v.dirty) > 0 {
			batch = make([]RouteUpdate, 0, len(v.dirty))
			for k := range v.dirty {
				batch = append(batch, RouteUpdate{Prefix: k.Prefix(), NextHops: v.sets.get(v.paths[k]).hops})
			}
			// A new map rather than clear: a map keeps its buckets, and
			// one full-table load would pin them for good.
			v.dirty = map[netkey.Key]struct{}{}
			v.compactLocked()
		}
		closeSynced := v.syncPending && !v.syncClosed
		if closeSynced {
			v.syncClosed = true
		}
		v.mu.Unlock()
		if len(batch) > 0 {
			select {
			case v.updates <- batch:
			case <-ctx.Done():
				return
			}
		}
		if closeSynced {
			close(v.synced)
		}
	}
}

// compactLocked rebuilds the set table when it holds far more sets than
// prefixes use (peers churning through next hops).
func (v *ribView) compactLocked() {
	if len(v.sets.sets) < 1024 {
		return
	}
	used := map[pathSetID]bool{}
	for _, id := range v.paths {
		used[id] = true
	}
	if len(v.sets.sets) < 4*len(used)+1024 {
		return
	}
	fresh := newPathSets()
	remap := map[pathSetID]pathSetID{}
	for id := range used {
		remap[id] = fresh.intern(v.sets.get(id).paths)
	}
	for k, id := range v.paths {
		v.paths[k] = remap[id]
	}
	v.sets = fresh
}
