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
// Accepted is how many prefixes use one of the peer's paths (past the
// import policy and best-path selection, equal-cost paths included);
// Received is that, or GoBGP's exact count of what the peer sent (its
// Adj-RIB-In, before the import policy) as of the last recount of a
// limited peer (limits.go) when that is higher; Advertised is how many
// prefixes our export policy sends it.
func (s *Speaker) PeerStatus(_ context.Context) ([]PeerStatus, error) {
	s.mu.Lock()
	transit := s.policy.Transit
	out := make([]PeerStatus, 0, len(s.peers))
	for addr, p := range s.peers {
		st := PeerStatus{Peer: p, State: "Idle"}
		if live := s.peerState[addr]; live != nil {
			st.State, st.StateSince, st.Info = live.state, live.since, live.info
			if st.Info == "" && !live.everUp {
				st.Info = md5Hint(p)
			}
		}
		out = append(out, st)
	}
	s.mu.Unlock()
	for i := range out {
		st := &out[i]
		addr := st.Peer.Address
		st.Received = s.rib.received(addr)
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

// md5Hint explains a session with a TCP MD5 password that has never come
// up. The kernel drops a segment with a missing or wrong signature
// silently, so neither side sees a refusal; this is the likeliest cause
// and the one worth checking first.
func md5Hint(p Peer) string {
	if p.Password == "" {
		return ""
	}
	if p.Passive {
		return "TCP MD5: no correctly signed connection from the peer yet (check the password on both sides)"
	}
	return "TCP MD5: no answer to our signed connection attempts yet (check the password on both sides)"
}
