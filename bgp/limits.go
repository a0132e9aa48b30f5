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
// GoBGP's own prefix limit counts the peer's Adj-RIB-In by walking (and
// copying) it on every UPDATE: 5-6 ms per UPDATE with 100k paths, and a
// flood of single-prefix UPDATEs against a 10,000 limit took 12-15 s to
// reach the teardown. podroute counts what each peer sent itself, from
// GoBGP's pre-policy update events, and enforces the limit there:
//
//   - GoBGP reports an UPDATE's paths to the pre-policy watch before it
//     reports the best-path changes they cause, on the same ordered event
//     stream. The UPDATE that crosses the limit therefore marks the peer
//     over its limit before any of its paths reaches the best-path view,
//     which then refuses every new path from that peer: nothing past the
//     limit is ever installed.
//   - The session is then torn down with the NOTIFICATION RFC 4486 asks
//     for (Cease, Maximum Number of Prefixes Reached): GoBGP's own check
//     is switched on for that one moment (it fires at once, one walk) and
//     the peer is re-created administratively down (holdOffLocked), which
//     drops what it sent and the UPDATEs still queued.
//
// GoBGP keeps paths it rejects for an AS-path loop without reporting them;
// a periodic exact recount (one walk per limited peer every limitRecount)
// catches a peer filling the table with those.

// limitRecount is how often the guard asks GoBGP for the exact Adj-RIB-In
// size of each limited peer (paths GoBGP stores but never reports).
const limitRecount = 10 * time.Second

// adjInCounter mirrors the size of each peer's Adj-RIB-In: prefixes from
// pre-policy update events, minus those GoBGP drops itself when a session
// ends. Each peer's set lives only as long as its session.
type adjInCounter struct {
	mu    sync.Mutex
	peers map[netip.Addr]*adjInPeer
	// limits are the peers' maxPrefixes (absent or 0: no limit).
	limits map[netip.Addr]uint32
	// over reports a peer that just crossed its limit (to Speaker).
	over chan netip.Addr
}

type adjInPeer struct {
	prefixes map[netkey.Key]struct{}
	// floor is GoBGP's own count from the last recount.
	floor uint64
	// overLimit: this session crossed the limit; its new paths are
	// refused until the session is gone.
	overLimit bool
}

func newAdjInCounter() *adjInCounter {
	return &adjInCounter{peers: map[netip.Addr]*adjInPeer{}, limits: map[netip.Addr]uint32{}, over: make(chan netip.Addr, 64)}
}

// setLimit records a peer's limit; a lowered limit already exceeded trips
// at once.
func (c *adjInCounter) setLimit(addr netip.Addr, limit uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit == 0 {
		delete(c.limits, addr)
		return
	}
	c.limits[addr] = limit
	if peer := c.peers[addr]; peer != nil {
		c.checkLocked(addr, peer)
	}
}

// onUpdate is GoBGP's callback for pre-policy updates and its own
// Adj-RIB-In withdrawals.
func (c *adjInCounter) onUpdate(paths []*apiutil.Path, _ time.Time) {
	if len(paths) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var last netip.Addr
	var peer *adjInPeer
	for _, p := range paths {
		if !p.PeerAddress.IsValid() {
			continue
		}
		prefix, err := pathPrefix(p)
		if err != nil {
			continue
		}
		addr := p.PeerAddress.Unmap()
		if addr != last || peer == nil {
			if peer != nil {
				c.checkLocked(last, peer)
			}
			last, peer = addr, c.peers[addr]
			if peer == nil && !p.Withdrawal {
				peer = &adjInPeer{prefixes: map[netkey.Key]struct{}{}}
				c.peers[addr] = peer
			}
		}
		if peer == nil {
			continue
		}
		switch {
		case p.Withdrawal:
			delete(peer.prefixes, netkey.Of(prefix))
		case peer.overLimit:
			// Refused, and the session is on its way down: the count
			// stays where it crossed the limit.
		default:
			peer.prefixes[netkey.Of(prefix)] = struct{}{}
		}
	}
	if peer != nil {
		c.checkLocked(last, peer)
	}
}

// checkLocked marks a peer over its limit the moment its count passes it.
func (c *adjInCounter) checkLocked(addr netip.Addr, peer *adjInPeer) {
	limit, ok := c.limits[addr]
	if !ok || peer.overLimit || max(uint64(len(peer.prefixes)), peer.floor) <= uint64(limit) {
		return
	}
	peer.overLimit = true
	select {
	case c.over <- addr:
	default: // the guard is behind; the recount finds it again
	}
}

// overLimit reports whether addr's session crossed its limit.
func (c *adjInCounter) overLimit(addr netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	peer := c.peers[addr]
	return peer != nil && peer.overLimit
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
	c.checkLocked(addr, peer)
}

// forget drops a peer's count: its session ended (GoBGP's own drop of
// the table is reported too, but after a graceful-restart teardown the
// kept paths are swept later without a report) or it was removed.
func (c *adjInCounter) forget(addr netip.Addr) {
	c.mu.Lock()
	delete(c.peers, addr)
	c.mu.Unlock()
}

// guardLimits tears down the sessions that crossed their limits, and
// recounts the limited peers exactly now and then, until ctx ends.
func (s *Speaker) guardLimits(ctx context.Context) {
	recount := time.NewTicker(limitRecount)
	defer recount.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case addr := <-s.adjIn.over:
			s.tearDownOverLimit(ctx, addr)
		case <-recount.C:
			s.recountLimited(ctx)
		}
	}
}

// recountLimited asks GoBGP for the exact count of each Established peer
// that has a limit (one walk of its table each).
func (s *Speaker) recountLimited(ctx context.Context) {
	s.mu.Lock()
	var peers []netip.Addr
	for addr, p := range s.peers {
		if live := s.peerState[addr]; live != nil && p.MaxPrefixes > 0 && live.state == "Established" {
			peers = append(peers, addr)
		}
	}
	s.mu.Unlock()
	for _, addr := range peers {
		if n, ok := s.gobgpReceived(ctx, addr); ok {
			s.adjIn.setFloor(addr, n)
		}
	}
}

// tearDownOverLimit ends a session that crossed its limit: GoBGP's own
// check, switched on in place, sends the Cease (Maximum Number of Prefixes
// Reached) NOTIFICATION at once; the state event that follows starts the
// hold-off (onPeerEvent, holdOffLocked), which re-creates the peer
// administratively down.
func (s *Speaker) tearDownOverLimit(ctx context.Context, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.peers[addr]
	live := s.peerState[addr]
	if !ok || live == nil || p.MaxPrefixes == 0 || live.holdOff != nil {
		return
	}
	s.log.Warn("peer crossed its prefix limit; its new routes are refused and the session is torn down",
		"peer", addr, "max_prefixes", p.MaxPrefixes, "received", s.adjIn.count(addr))
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
