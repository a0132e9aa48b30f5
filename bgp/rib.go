package bgp

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
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
type ribView struct {
	log *slog.Logger
	// multipath: GoBGP reports each change to a prefix's equal-cost set.
	// Without it, each event carries the new best path alone, which
	// replaces whatever the prefix had.
	multipath bool

	mu    sync.Mutex
	paths map[netip.Prefix][]usedPath
	dirty map[netip.Prefix]struct{}
	// inUse and sole count, per peer, the prefixes that use one of its
	// paths and those that use only its paths (for status).
	inUse map[netip.Addr]uint64
	sole  map[netip.Addr]uint64
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

func newRIBView(log *slog.Logger, multipath bool) *ribView {
	return &ribView{
		log:       log,
		multipath: multipath,
		paths:     map[netip.Prefix][]usedPath{},
		dirty:     map[netip.Prefix]struct{}{},
		inUse:     map[netip.Addr]uint64{},
		sole:      map[netip.Addr]uint64{},
		kick:      make(chan struct{}, 1),
		updates:   make(chan []RouteUpdate, 16),
		synced:    make(chan struct{}),
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
		if p.Withdrawal {
			changed = v.removeLocked(prefix, peer) || changed
			continue
		}
		if p.Stale && !slices.ContainsFunc(v.paths[prefix], func(u usedPath) bool { return u.peer == peer }) {
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
			changed = v.removeLocked(prefix, peer) || changed
			continue
		}
		changed = v.upsertLocked(prefix, usedPath{peer: peer, nextHop: nh}) || changed
	}
	v.mu.Unlock()
	if changed {
		v.signal()
	}
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

func (v *ribView) upsertLocked(prefix netip.Prefix, up usedPath) bool {
	old := v.paths[prefix]
	if !v.multipath && len(old) > 0 && (len(old) > 1 || old[0].peer != up.peer) {
		v.countLocked(old, -1)
		old = old[:0]
		v.learned[familyIndex(prefix)]--
	}
	i := slices.IndexFunc(old, func(u usedPath) bool { return u.peer == up.peer })
	if i >= 0 {
		if old[i] == up {
			return false
		}
		old[i] = up
		v.dirty[prefix] = struct{}{}
		return true
	}
	v.countLocked(old, -1)
	nu := append(old, up)
	if len(old) == 0 {
		v.learned[familyIndex(prefix)]++
	}
	v.countLocked(nu, +1)
	v.paths[prefix] = nu
	v.dirty[prefix] = struct{}{}
	return true
}

func (v *ribView) removeLocked(prefix netip.Prefix, peer netip.Addr) bool {
	old := v.paths[prefix]
	i := slices.IndexFunc(old, func(u usedPath) bool { return u.peer == peer })
	if i < 0 {
		return false
	}
	v.countLocked(old, -1)
	nu := slices.Delete(old, i, i+1)
	if len(nu) == 0 {
		delete(v.paths, prefix)
		v.learned[familyIndex(prefix)]--
	} else {
		v.paths[prefix] = nu
		v.countLocked(nu, +1)
	}
	v.dirty[prefix] = struct{}{}
	return true
}

// countLocked adds d to the per-peer counters for a prefix whose set is
// set.
func (v *ribView) countLocked(set []usedPath, d int) {
	if len(set) == 0 {
		return
	}
	for i, u := range set {
		// A peer with two paths in one set (not possible without
		// add-path) is counted once.
		if slices.ContainsFunc(set[:i], func(o usedPath) bool { return o.peer == u.peer }) {
			continue
		}
		v.inUse[u.peer] = uint64(int64(v.inUse[u.peer]) + int64(d))
	}
	first := set[0].peer
	if !slices.ContainsFunc(set[1:], func(o usedPath) bool { return o.peer != first }) {
		v.sole[first] = uint64(int64(v.sole[first]) + int64(d))
	}
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
			for p := range v.dirty {
				batch = append(batch, RouteUpdate{Prefix: p, NextHops: nextHops(v.paths[p])})
			}
			// A new map rather than clear: a map keeps its buckets, and
			// one full-table load would pin them for good.
			v.dirty = map[netip.Prefix]struct{}{}
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

// nextHops is the distinct next hops of a prefix's paths (empty: gone).
func nextHops(set []usedPath) []netip.Addr {
	if len(set) == 0 {
		return nil
	}
	out := make([]netip.Addr, 0, len(set))
	for _, u := range set {
		if !slices.Contains(out, u.nextHop) {
			out = append(out, u.nextHop)
		}
	}
	return out
}
