package bgp

import (
	"context"
	"net/netip"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"

	"github.com/podroute/podroute/internal/netkey"
)

// Per-peer prefix limits, enforced exactly and cheaply.
//
// GoBGP's own prefix limit is exact (it tears the session down inside the
// UPDATE that crosses the limit, before any of it reaches the RIB) but it
// counts the peer's Adj-RIB-In by walking it on every UPDATE: 5-6 ms per
// UPDATE with 100k paths. podroute therefore counts what each peer sent
// itself, from GoBGP's pre-policy update events, and switches GoBGP's
// check on only when a peer is near its limit, where the walk is bounded
// by the limit. Far from the limit no UPDATE costs a walk.
//
// "Near" leaves room for limitMargin prefixes, several full UPDATEs,
// between the switch and the limit, because the switch happens a moment
// after the events that triggered it; small limits therefore have GoBGP's
// check on from the start.

const (
	// limitMargin is how many prefixes may still arrive between our count
	// reaching "near" and GoBGP's check taking over: a 4096-byte UPDATE
	// holds at most about 1,360 prefixes of /9 or longer.
	limitMargin = 8192
	// limitNearPct caps "near" for large limits.
	limitNearPct = 80
	// limitOffPct: below this share of "near" GoBGP's check is switched
	// off again (hysteresis, so a peer hovering at the mark does not flap
	// the setting).
	limitOffPct = 75
	// limitRecount is how often the guard asks GoBGP for the exact count
	// of a limited peer, a single walk: paths GoBGP stores but never
	// reports (those it rejects for an AS-path loop) are seen this way.
	limitRecount = 10 * time.Second
)

// limitNear is the count at which GoBGP's exact check must be on.
func limitNear(limit uint32) uint64 {
	l := uint64(limit)
	near := l * limitNearPct / 100
	if l > limitMargin && l-limitMargin < near {
		near = l - limitMargin
	} else if l <= limitMargin {
		near = 0
	}
	return near
}

// wantGoBGPLimit decides the switch for a peer that has count prefixes
// and the switch at on.
func wantGoBGPLimit(limit uint32, count uint64, on bool) bool {
	if limit == 0 {
		return false
	}
	near := limitNear(limit)
	if on {
		return count*100 >= near*limitOffPct
	}
	return count >= near
}

// adjInCounter mirrors the size of each peer's Adj-RIB-In: prefixes from
// pre-policy update events, minus those GoBGP drops itself when a session
// ends. Each peer's set lives only as long as its session.
type adjInCounter struct {
	mu    sync.Mutex
	peers map[netip.Addr]*adjInPeer
	kick  chan struct{}
}

type adjInPeer struct {
	prefixes map[netkey.Key]struct{}
	// floor is GoBGP's own count from the last recount.
	floor uint64
}

func newAdjInCounter() *adjInCounter {
	return &adjInCounter{peers: map[netip.Addr]*adjInPeer{}, kick: make(chan struct{}, 1)}
}

// onUpdate is GoBGP's callback for pre-policy updates and its own
// Adj-RIB-In withdrawals.
func (c *adjInCounter) onUpdate(paths []*apiutil.Path, _ time.Time) {
	if len(paths) == 0 {
		return
	}
	c.mu.Lock()
	for _, p := range paths {
		if !p.PeerAddress.IsValid() {
			continue
		}
		prefix, err := pathPrefix(p)
		if err != nil {
			continue
		}
		addr := p.PeerAddress.Unmap()
		peer := c.peers[addr]
		if peer == nil {
			if p.Withdrawal {
				continue
			}
			peer = &adjInPeer{prefixes: map[netkey.Key]struct{}{}}
			c.peers[addr] = peer
		}
		if p.Withdrawal {
			delete(peer.prefixes, netkey.Of(prefix))
		} else {
			peer.prefixes[netkey.Of(prefix)] = struct{}{}
		}
	}
	c.mu.Unlock()
	c.kickGuard()
}

func (c *adjInCounter) kickGuard() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// count is the peer's Adj-RIB-In size as far as we know.
func (c *adjInCounter) count(addr netip.Addr) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	peer := c.peers[addr]
	if peer == nil {
		return 0
	}
	return max(uint64(len(peer.prefixes)), peer.floor)
}

func (c *adjInCounter) setFloor(addr netip.Addr, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	peer := c.peers[addr]
	if peer == nil {
		peer = &adjInPeer{prefixes: map[netkey.Key]struct{}{}}
		c.peers[addr] = peer
	}
	peer.floor = n
}

// forget drops a peer's count: its session ended (GoBGP's own drop of
// the table is reported too, but after a graceful-restart teardown the
// kept paths are swept later without a report) or it was removed.
func (c *adjInCounter) forget(addr netip.Addr) {
	c.mu.Lock()
	delete(c.peers, addr)
	c.mu.Unlock()
	c.kickGuard()
}

// guardLimits switches GoBGP's exact prefix check on and off as peers
// approach and leave their limits, until ctx ends.
func (s *Speaker) guardLimits(ctx context.Context) {
	recount := time.NewTicker(limitRecount)
	defer recount.Stop()
	for {
		exact := false
		select {
		case <-ctx.Done():
			return
		case <-s.adjIn.kick:
		case <-recount.C:
			exact = true
		}
		s.checkLimits(ctx, exact)
	}
}

func (s *Speaker) checkLimits(ctx context.Context, exact bool) {
	type limited struct {
		peer   Peer
		on, up bool
	}
	s.mu.Lock()
	var todo []limited
	for addr, p := range s.peers {
		if live := s.peerState[addr]; live != nil && (p.MaxPrefixes > 0 || live.gobgpLimit) {
			todo = append(todo, limited{peer: p, on: live.gobgpLimit, up: live.state == "Established"})
		}
	}
	s.mu.Unlock()
	for _, l := range todo {
		addr := l.peer.Address
		if exact && l.up && !l.on {
			if n, ok := s.gobgpReceived(ctx, addr); ok {
				s.adjIn.setFloor(addr, n)
			}
		}
		want := wantGoBGPLimit(l.peer.MaxPrefixes, s.adjIn.count(addr), l.on)
		if want == l.on {
			continue
		}
		s.switchGoBGPLimit(ctx, l.peer, want)
	}
}

// switchGoBGPLimit turns GoBGP's check for p on or off in place (no
// session reset). Turned on past the limit, GoBGP tears the session down
// at once.
func (s *Speaker) switchGoBGPLimit(ctx context.Context, p Peer, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.peerState[p.Address]
	if cur, ok := s.peers[p.Address]; !ok || cur != p || live == nil || live.gobgpLimit == on {
		return // changed meanwhile; the next check decides again
	}
	held := live.holdOff != nil
	if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: toAPIPeer(p, peerOptions{restartTime: s.cfg.RestartTime, gobgpLimit: on, adminDown: held})}); err != nil {
		s.log.Warn("switch GoBGP's prefix limit", "peer", p.Address, "on", on, "err", err)
		return
	}
	live.gobgpLimit = on
	s.log.Debug("GoBGP's prefix limit check", "peer", p.Address, "on", on, "max_prefixes", p.MaxPrefixes)
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
