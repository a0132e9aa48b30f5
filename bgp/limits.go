package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// Per-peer prefix limits, enforced exactly and cheaply.
//
// GoBGP's own prefix limit counts the peer's Adj-RIB-In by walking (and
// copying) it on every UPDATE: 5-6 ms per UPDATE with 100k paths, and a
// flood of single-prefix UPDATEs against a 10,000 limit took 12-15 s to
// reach the teardown. podroute enforces the limit where it already
// counts: in the best-path view (rib.go), which knows for each peer how
// many prefixes use its paths.
//
//   - A new prefix from a peer already at its limit is refused there: it
//     never reaches the kernel. The peer is marked over its limit and the
//     guard is told.
//   - The guard tears the session down with the NOTIFICATION RFC 4486 asks
//     for (Cease, Maximum Number of Prefixes Reached): GoBGP's own check,
//     switched on for that one moment, fires at once (one walk); the
//     state event that follows starts the hold-off (holdOffLocked), which
//     re-creates the peer administratively down and so drops what it sent
//     and whatever is still queued.
//
// What the view does not see are paths GoBGP stores but never selects:
// those the import policy rejects and those with an AS-path loop. A peer
// filling GoBGP's memory with those is caught by an exact recount (one
// walk of each limited peer's Adj-RIB-In every limitRecount); no such
// path ever reaches the kernel meanwhile.
//
// Counting from the view also spares every UPDATE GoBGP's pre-policy
// watch, which deep-copies the peer's configuration per UPDATE (a fifth of
// podrouted's CPU in a flood of single-prefix UPDATEs).

// limitRecount is how often the guard asks GoBGP for the exact Adj-RIB-In
// size of each Established peer.
const limitRecount = 5 * time.Second

// guardLimits tears down the sessions that crossed their limits, and
// recounts the limited peers exactly now and then, until ctx ends.
func (s *Speaker) guardLimits(ctx context.Context) {
	recount := time.NewTicker(limitRecount)
	defer recount.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case addr := <-s.rib.over:
			s.tearDownOverLimit(ctx, addr)
		case <-recount.C:
			s.recountLimited(ctx)
		}
	}
}

// recountLimited asks GoBGP for the exact count of each Established peer
// (one walk of its table each): it catches limited peers filling GoBGP
// with paths the view never sees, and keeps status's RECEIVED (what the
// peer sent, before the import policy) current within limitRecount.
func (s *Speaker) recountLimited(ctx context.Context) {
	s.mu.Lock()
	var peers []netip.Addr
	for addr := range s.peers {
		if live := s.peerState[addr]; live != nil && live.state == "Established" {
			peers = append(peers, addr)
		}
	}
	s.mu.Unlock()
	for _, addr := range peers {
		if n, ok := s.gobgpReceived(ctx, addr); ok {
			s.rib.setFloor(addr, n)
		}
	}
}

// tearDownOverLimit ends a session that crossed its limit: GoBGP's own
// check, switched on in place, sends the Cease (Maximum Number of Prefixes
// Reached) NOTIFICATION at once.
func (s *Speaker) tearDownOverLimit(ctx context.Context, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[addr]
	live := s.peerState[addr]
	if !ok || live == nil || p.MaxPrefixes == 0 || live.holdOff != nil {
		return
	}
	s.log.Warn("peer crossed its prefix limit; its new routes are refused and the session is torn down",
		"peer", addr, "max_prefixes", p.MaxPrefixes, "received", s.rib.received(addr))
	if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: toAPIPeer(p, peerOptions{restartTime: s.cfg.RestartTime, gobgpLimit: true})}); err != nil {
		s.log.Warn("tear down a peer past its prefix limit", "peer", addr, "err", err)
	}
}

// gobgpReceived asks GoBGP for the size of addr's Adj-RIB-In (one walk).
func (s *Speaker) gobgpReceived(ctx context.Context, addr netip.Addr) (uint64, bool) {
	var n uint64
	found := false
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		found = true
		for _, af := range p.AfiSafis {
			if af.State != nil {
				n += af.State.Received
			}
		}
	})
	return n, err == nil && found
}

// setLimit records a peer's limit (0: none); a limit already exceeded
// trips at once.
func (v *ribView) setLimit(peer netip.Addr, limit uint32) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if limit == 0 {
		delete(v.limits, peer)
		return
	}
	v.limits[peer] = limit
	v.checkLocked(peer)
}

// setFloor records GoBGP's exact count for peer.
func (v *ribView) setFloor(peer netip.Addr, n uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.floor[peer] = n
	v.checkLocked(peer)
}

// forgetSession clears what belongs to a session that ended: the
// over-limit mark and GoBGP's last count. (Its paths leave the view the
// usual way, as GoBGP withdraws them.)
func (v *ribView) forgetSession(peer netip.Addr) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.overLimit, peer)
	delete(v.floor, peer)
}

// received is what the peer has sent as far as the view knows: the
// prefixes using its paths, or GoBGP's last exact count when higher.
func (v *ribView) received(peer netip.Addr) uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return max(v.inUse[peer], v.floor[peer])
}

// admitLocked reports whether peer may add one more prefix; at its limit
// it is marked over and the guard told.
func (v *ribView) admitLocked(peer netip.Addr) bool {
	if v.overLimit[peer] {
		return false
	}
	limit, ok := v.limits[peer]
	if !ok || v.inUse[peer] < uint64(limit) {
		return true
	}
	v.markOverLocked(peer)
	return false
}

// checkLocked marks a peer over its limit when its count is past it.
func (v *ribView) checkLocked(peer netip.Addr) {
	limit, ok := v.limits[peer]
	if ok && !v.overLimit[peer] && max(v.inUse[peer], v.floor[peer]) > uint64(limit) {
		v.markOverLocked(peer)
	}
}

func (v *ribView) markOverLocked(peer netip.Addr) {
	v.overLimit[peer] = true
	select {
	case v.over <- peer:
	default: // the guard is behind; the recount finds it again
	}
}
