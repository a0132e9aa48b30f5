package bgp

import (
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// onPeerEvent handles GoBGP's session state changes. GoBGP calls it from
// its watch goroutine; nothing here calls back into GoBGP.
func (s *Speaker) onPeerEvent(e *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if e == nil || e.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := e.Peer.State.NeighborAddress.Unmap()
	if !addr.IsValid() {
		addr = e.Peer.Conf.NeighborAddress.Unmap()
	}
	state := stateName(e.Peer.State.SessionState)
	s.mu.Lock()
	live := s.peerState[addr]
	if live == nil {
		s.mu.Unlock()
		return
	}
	old := live.state
	var maxPrefixTeardown, lost bool
	if old != state {
		live.state = state
		live.since = time.Now()
		switch {
		case state == "Established":
			live.eor = false
			live.everUp = true
			live.retains = retainsRoutes(e.Peer.State.RemoteCap, addr)
			// info keeps the last notable problem (say, a max-prefix
			// teardown) even after the session came back.
		case old == "Established" && e.Peer.State.AdminState == api.PeerState_ADMIN_STATE_PFX_CT:
			maxPrefixTeardown = true
		case old == "Established":
			if e.Peer.State.DisconnectMessage != "" {
				live.info = fmt.Sprintf("session down: %s", e.Peer.State.DisconnectMessage)
			}
			lost = e.Peer.State.AdminState == api.PeerState_ADMIN_STATE_UP && lostByFailure(e.Peer.State.DisconnectReason)
		}
	}
	if old == "Established" && state != old {
		// What the peer sent lives in this session only.
		s.rib.forgetSession(addr)
	}
	p, configured := s.peers[addr]
	if maxPrefixTeardown && configured {
		s.holdOffLocked(addr, p, live)
	}
	if lost && configured && s.cfg.FastReconnect && !(p.GracefulRestart && live.retains) && live.holdOff == nil &&
		time.Since(live.lastFast) > fastReconnectDamping {
		live.lastFast = time.Now()
		go s.fastReconnect(p)
	}
	s.mu.Unlock()
	if old != state && (old == "Established" || state == "Established") {
		s.log.Info("peer session state", "peer", addr, "from", old, "to", state)
	}
}

// holdOffLocked starts the hold-off after a max-prefix teardown. GoBGP
// leaves such a peer administratively down for good; podroute gives it
// another chance after Config.MaxPrefixHold, so a peer that fixed its
// table recovers by itself while one that keeps flooding is held off. One
// teardown means one hold-off, measured from that teardown: an earlier
// timer is replaced, never left to release the peer early.
//
// GoBGP v4.8 also mistakes its own max-prefix teardown for a graceful
// restart of the peer (it closes the connection after the NOTIFICATION
// and then sees a read error): it keeps everything the peer sent as
// stale routes, including the UPDATEs past the limit that it never let
// into the table before. So the peer is re-created at once,
// administratively down: that drops its routes the way a NOTIFICATION
// should have (the view never installs them meanwhile: see
// ribView.apply), and keeps it out until the hold-off ends.
func (s *Speaker) holdOffLocked(addr netip.Addr, p Peer, live *peerLive) {
	hold := s.cfg.MaxPrefixHold
	live.info = fmt.Sprintf("max-prefix limit %d exceeded; session torn down at %s, retrying after %v",
		p.MaxPrefixes, time.Now().Format(time.TimeOnly), hold)
	s.log.Error("peer sent more prefixes than its limit; tearing that session down",
		"peer", addr, "asn", p.ASN, "max_prefixes", p.MaxPrefixes, "retry_after", hold)
	if live.holdOff != nil {
		live.holdOff.Stop()
	}
	var t *time.Timer
	current := func() bool {
		cur := s.peerState[addr]
		return cur != nil && cur.holdOff == t && s.peers[addr] == p
	}
	t = time.AfterFunc(hold, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !current() {
			return
		}
		live.holdOff = nil
		if err := s.setHeld(p, false); err != nil {
			s.log.Warn("release peer after max-prefix hold", "peer", addr, "err", err)
		}
	})
	live.holdOff = t
	// Not here: the caller is GoBGP's event goroutine, which must not
	// wait for GoBGP's management loop.
	go func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !current() {
			return
		}
		if err := s.setHeld(p, true); err != nil {
			s.log.Warn("drop the routes of a peer past its prefix limit", "peer", addr, "err", err)
		}
	}()
}

// fastReconnectDamping bounds fast reconnects: a peer whose session keeps
// failing is left to GoBGP's own pace (5 s idle, then connect retries).
const fastReconnectDamping = 30 * time.Second

// lostByFailure tells a session lost to the network or the peer (hold
// timer, connection reset, the peer restarting) from one we or our
// configuration ended.
func lostByFailure(r api.PeerState_DisconnectReason) bool {
	switch r {
	case api.PeerState_DISCONNECT_REASON_ADMIN_DOWN, api.PeerState_DISCONNECT_REASON_DECONFIGURED,
		api.PeerState_DISCONNECT_REASON_HARD_RESET:
		return false
	}
	return true
}

// retainsRoutes reports whether the peer's OPEN listed the family of its
// address in its graceful-restart capability: then GoBGP keeps the
// peer's routes, marked stale, when the session is lost (RFC 4724), and
// the peer must not be re-created (that would drop them).
func retainsRoutes(caps []bgp.ParameterCapabilityInterface, peer netip.Addr) bool {
	want := bgp.RF_IPv4_UC
	if peer.Is6() {
		want = bgp.RF_IPv6_UC
	}
	for _, c := range caps {
		gr, ok := c.(*bgp.CapGracefulRestart)
		if !ok {
			continue
		}
		for _, t := range gr.Tuples {
			if bgp.NewFamily(t.AFI, t.SAFI) == want {
				return true
			}
		}
	}
	return false
}

// fastReconnect re-creates p in GoBGP after its session was lost: GoBGP
// keeps a peer Idle for a fixed 5 s after any such loss (only its own
// administrative reset shortens that), while a new peer connects at once.
// GoBGP has already dropped the peer's routes (no graceful restart for its
// family), so nothing is lost that the re-creation would drop.
func (s *Speaker) fastReconnect(p Peer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.peerState[p.Address]
	if cur, ok := s.peers[p.Address]; !ok || cur != p || live == nil || live.state == "Established" || live.holdOff != nil {
		return // changed meanwhile
	}
	s.log.Info("session lost; re-creating the peer so that it reconnects at once (GoBGP would wait 5 s)", "peer", p.Address)
	if err := s.setHeld(p, false); err != nil {
		s.log.Warn("fast reconnect", "peer", p.Address, "err", err)
	}
}

// onEOR handles an End-of-RIB marker from a peer.
func (s *Speaker) onEOR(p *apiutil.Path, _ time.Time) {
	if p == nil || !p.PeerAddress.IsValid() {
		return
	}
	s.mu.Lock()
	if live := s.peerState[p.PeerAddress.Unmap()]; live != nil {
		live.eor = true
	}
	s.checkSyncedLocked()
	s.mu.Unlock()
}

// checkSyncedLocked marks the table learned once every configured peer
// has sent End-of-RIB. Peers that never come up hold it back; the caller
// bounds that wait with its own timer.
func (s *Speaker) checkSyncedLocked() {
	if s.isSynced {
		return
	}
	for addr := range s.peers {
		if live := s.peerState[addr]; live == nil || !live.eor {
			return
		}
	}
	s.isSynced = true
	s.restarting = false
	s.rib.markSynced()
	s.log.Info("BGP table learned from every peer (End-of-RIB)", "peers", len(s.peers))
}

func stateName(st bgp.FSMState) string {
	switch st {
	case bgp.BGP_FSM_IDLE:
		return "Idle"
	case bgp.BGP_FSM_CONNECT:
		return "Connect"
	case bgp.BGP_FSM_ACTIVE:
		return "Active"
	case bgp.BGP_FSM_OPENSENT:
		return "OpenSent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "OpenConfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "Established"
	}
	return "Unknown"
}
