package bgp

import (
	"context"
	"slices"
)

// PeerStatus lists every configured peer with its live state and counters.
//
// It answers from podroute's own running counts and never asks GoBGP:
// GoBGP's peer listing counts each peer's Adj-RIB-In by walking it, which
// at 100k paths costs milliseconds per peer and queues behind a flood.
//
// Received is what the peer has sent and we hold (its Adj-RIB-In, before
// the import policy); Accepted is how many prefixes use one of its paths
// (past the import policy and best-path selection, equal-cost paths
// included); Advertised is how many prefixes our export policy sends it.
func (s *Speaker) PeerStatus(_ context.Context) ([]PeerStatus, error) {
	s.mu.Lock()
	transit := s.policy.Transit
	out := make([]PeerStatus, 0, len(s.peers))
	for addr, p := range s.peers {
		st := PeerStatus{Peer: p, State: "Idle"}
		if live := s.peerState[addr]; live != nil {
			st.State, st.StateSince, st.Info = live.state, live.since, live.info
		}
		out = append(out, st)
	}
	s.mu.Unlock()
	for i := range out {
		st := &out[i]
		addr := st.Peer.Address
		st.Received = s.adjIn.count(addr)
		inUse, sole, learned, own := s.rib.counts(addr)
		st.Accepted = inUse
		if st.State == "Established" {
			// GoBGP never sends a peer the paths it learned only from
			// that peer.
			st.Advertised = own
			if transit {
				st.Advertised += learned - sole
			}
		}
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Peer.Address.Compare(b.Peer.Address) })
	return out, nil
}
