package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// onEvent handles GoBGP's event stream. GoBGP calls it from one goroutine
// and buffers behind it, so blocking here on a slow consumer delays route
// updates but never the BGP sessions.
func (s *Speaker) onEvent(ev *api.WatchEventResponse) {
	switch e := ev.Event.(type) {
	case *api.WatchEventResponse_Peer:
		s.onPeerEvent(e.Peer)
	case *api.WatchEventResponse_Table:
		var eors []*api.Path
		paths := e.Table.Paths[:0:0]
		for _, p := range e.Table.Paths {
			if isEOR(p) {
				eors = append(eors, p)
				continue
			}
			paths = append(paths, p)
		}
		if ups := pathsToUpdates(paths, s.log.Warn); len(ups) > 0 {
			s.updates <- ups
		}
		for _, p := range eors {
			s.onEOR(p)
		}
	}
}

// isEOR tells GoBGP's End-of-RIB marker: the only path it sends without
// an NLRI.
func isEOR(p *api.Path) bool {
	return p.Nlri == nil
}

// pathsToUpdates groups an event's paths by prefix. With multipath GoBGP
// sends, per changed prefix, either all its equal-cost paths or a single
// withdrawal. Our own originated paths (no neighbor) are skipped.
func pathsToUpdates(paths []*api.Path, warn func(string, ...any)) []RouteUpdate {
	if len(paths) == 0 {
		return nil
	}
	idx := map[netip.Prefix]int{}
	var out []RouteUpdate
	for _, p := range paths {
		prefix, err := pathPrefix(p)
		if err != nil {
			warn("skipping path", "err", err)
			continue
		}
		// Every prefix in the event gets an update, also when its best
		// path is now our own: the route learned from a peer must go.
		i, ok := idx[prefix]
		if !ok {
			i = len(out)
			idx[prefix] = i
			out = append(out, RouteUpdate{Prefix: prefix})
		}
		if p.IsWithdraw || !fromPeer(p) {
			continue
		}
		nh, err := pathNextHop(p)
		if err != nil {
			warn("skipping path", "prefix", prefix, "err", err)
			continue
		}
		if !slices.Contains(out[i].NextHops, nh) {
			out[i].NextHops = append(out[i].NextHops, nh)
		}
	}
	return out
}

func fromPeer(p *api.Path) bool {
	return p.NeighborIp != "" && p.NeighborIp != "<nil>"
}

func pathPrefix(p *api.Path) (netip.Prefix, error) {
	var n api.IPAddressPrefix
	if err := p.Nlri.UnmarshalTo(&n); err != nil {
		return netip.Prefix{}, fmt.Errorf("NLRI is not an IP prefix: %w", err)
	}
	a, err := netip.ParseAddr(n.Prefix)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("NLRI prefix %q: %w", n.Prefix, err)
	}
	pfx, err := a.Prefix(int(n.PrefixLen))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("NLRI %s/%d: %w", n.Prefix, n.PrefixLen, err)
	}
	return pfx, nil
}

func pathNextHop(p *api.Path) (netip.Addr, error) {
	for _, a := range p.Pattrs {
		switch {
		case a.MessageIs(&api.NextHopAttribute{}):
			var nh api.NextHopAttribute
			if err := a.UnmarshalTo(&nh); err != nil {
				return netip.Addr{}, err
			}
			return netip.ParseAddr(nh.NextHop)
		case a.MessageIs(&api.MpReachNLRIAttribute{}):
			var mp api.MpReachNLRIAttribute
			if err := a.UnmarshalTo(&mp); err != nil {
				return netip.Addr{}, err
			}
			// The first next hop is the global one; a link-local second
			// one (RFC 2545) is not usable without an interface.
			for _, s := range mp.NextHops {
				if a, err := netip.ParseAddr(s); err == nil && !a.IsLinkLocalUnicast() {
					return a, nil
				}
			}
			return netip.Addr{}, fmt.Errorf("no usable next hop in %v", mp.NextHops)
		}
	}
	return netip.Addr{}, fmt.Errorf("path has no next hop attribute")
}

func (s *Speaker) onPeerEvent(e *api.WatchEventResponse_PeerEvent) {
	if e.Type != api.WatchEventResponse_PeerEvent_STATE || e.Peer == nil || e.Peer.State == nil {
		return
	}
	addr, err := netip.ParseAddr(e.Peer.State.NeighborAddress)
	if err != nil {
		return
	}
	state := stateName(e.Peer.State.SessionState)
	s.mu.Lock()
	live := s.peerState[addr]
	if live == nil {
		s.mu.Unlock()
		return
	}
	old := live.state
	if old != state {
		live.state = state
		live.since = time.Now()
		if state == "Established" {
			live.eor = false
			// info keeps the last notable problem (say, a max-prefix
			// teardown) even after the session came back.
		}
	}
	s.mu.Unlock()
	if old != state && (old == "Established" || state == "Established") {
		s.log.Info("peer session state", "peer", addr, "from", old, "to", state)
	}
}

func (s *Speaker) onEOR(p *api.Path) {
	addr, err := netip.ParseAddr(p.NeighborIp)
	if err != nil {
		return
	}
	s.mu.Lock()
	if live := s.peerState[addr]; live != nil {
		live.eor = true
	}
	s.checkSyncedLocked()
	s.mu.Unlock()
}

// checkSyncedLocked closes Synced once every configured peer has sent
// End-of-RIB. Peers that never come up hold it back; the caller bounds
// that wait with its own timer.
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
	close(s.synced)
	s.log.Info("BGP table learned from every peer (End-of-RIB)", "peers", len(s.peers))
}

func stateName(st api.PeerState_SessionState) string {
	switch st {
	case api.PeerState_IDLE:
		return "Idle"
	case api.PeerState_CONNECT:
		return "Connect"
	case api.PeerState_ACTIVE:
		return "Active"
	case api.PeerState_OPENSENT:
		return "OpenSent"
	case api.PeerState_OPENCONFIRM:
		return "OpenConfirm"
	case api.PeerState_ESTABLISHED:
		return "Established"
	}
	return "Unknown"
}

// PeerStatus lists every configured peer with its live state and counters.
func (s *Speaker) PeerStatus(ctx context.Context) ([]PeerStatus, error) {
	counters := map[string]*api.Peer{}
	// No EnableAdvertised: GoBGP would walk every Adj-RIB-Out for a count
	// we take ourselves (advertisedTo, without End-of-RIB).
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.Conf != nil {
			counters[p.Conf.NeighborAddress] = p
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list BGP peers: %w", err)
	}
	accepted := s.ribCounts(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.peers))
	for addr, p := range s.peers {
		st := PeerStatus{Peer: p, State: "Idle"}
		if live := s.peerState[addr]; live != nil {
			st.State, st.StateSince, st.Info = live.state, live.since, live.info
		}
		if ap := counters[addr.String()]; ap != nil {
			if ap.State != nil {
				st.State = stateName(ap.State.SessionState)
			}
			for _, af := range ap.AfiSafis {
				if af.State != nil {
					st.Received += af.State.Received
				}
			}
		}
		// GoBGP's own accepted count ignores the import policy and its
		// advertised count includes End-of-RIB, so count the tables.
		st.Accepted, st.Advertised = accepted[addr.String()], s.advertisedTo(ctx, addr)
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Peer.Address.Compare(b.Peer.Address) })
	return out, nil
}

// ribCounts counts, per neighbor address, the paths that made it into the RIB
// (past the import policy and the AS-loop check), one walk per family for
// all peers together.
func (s *Speaker) ribCounts(ctx context.Context) map[string]uint64 {
	counts := map[string]uint64{}
	for _, afi := range []api.Family_Afi{api.Family_AFI_IP, api.Family_AFI_IP6} {
		fam := &api.Family{Afi: afi, Safi: api.Family_SAFI_UNICAST}
		_ = s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam, EnableOnlyBinary: true},
			func(d *api.Destination) {
				for _, p := range d.Paths {
					counts[p.NeighborIp]++
				}
			})
	}
	return counts
}

// advertisedTo counts the paths sent to peer. Only binary forms are asked
// for, so GoBGP does not render every path for a count.
func (s *Speaker) advertisedTo(ctx context.Context, peer netip.Addr) (n uint64) {
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if peer.Is6() {
		fam.Afi = api.Family_AFI_IP6
	}
	_ = s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_ADJ_OUT, Name: peer.String(), Family: fam,
		EnableOnlyBinary: true}, func(d *api.Destination) {
		n += uint64(len(d.Paths))
	})
	return n
}

// Originated lists the prefixes this node advertises.
func (s *Speaker) Originated() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ownLocked()
}
