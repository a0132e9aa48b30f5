package bgp

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// GoBGP calls the max-prefix hook (through its logger) from its server
// goroutine the moment the UPDATE that crosses the limit is handled, but
// delivers session state changes to the watcher asynchronously. A peer
// that sends its whole table right after OPEN therefore produces: hook,
// then "Established", then "Idle". The reason for the teardown must
// survive that order (it was seen under -race with real speakers).
func TestMaxPrefixInfoSurvivesLateEstablishedEvent(t *testing.T) {
	s, err := New(Config{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("192.0.2.2")
	s.peers[peer] = Peer{Address: peer, ASN: 65002, MaxPrefixes: 5}
	s.peerState[peer] = &peerLive{state: "OpenConfirm", since: time.Now()}

	event := func(st api.PeerState_SessionState) {
		s.onPeerEvent(&api.WatchEventResponse_PeerEvent{
			Type: api.WatchEventResponse_PeerEvent_STATE,
			Peer: &api.Peer{State: &api.PeerState{NeighborAddress: peer.String(), SessionState: st}},
		})
	}
	s.onMaxPrefix(peer.String())
	event(api.PeerState_ESTABLISHED)
	event(api.PeerState_IDLE)

	// The hook may record asynchronously (it runs on GoBGP's server
	// goroutine and must not block it), so allow it a moment.
	var info string
	for deadline := time.Now().Add(2 * time.Second); ; {
		s.mu.Lock()
		info = s.peerState[peer].info
		s.mu.Unlock()
		if strings.Contains(info, "max-prefix") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(info, "max-prefix") {
		t.Errorf("after hook, Established, Idle: Info = %q, want the max-prefix teardown", info)
	}

	// A later session that comes up after the teardown was seen is a
	// fresh start: clearing the old reason then is fine either way, so
	// it is not asserted here.
}

// The adapter must call the hook for the teardown message only, not for
// the warning at the threshold percentage, and must pass the peer key.
func TestSlogAdapterMaxPrefixHook(t *testing.T) {
	var got []string
	a := &slogAdapter{log: slog.New(slog.NewTextHandler(io.Discard, nil)), onMaxPrefix: func(k string) { got = append(got, k) }}
	a.Warn("prefix limit reached", map[string]any{"Key": "192.0.2.2", "Family": "ipv4-unicast", "Pct": 80})
	if len(got) != 0 {
		t.Errorf("threshold warning triggered the teardown hook: %v", got)
	}
	a.Warn("prefix limit reached", map[string]any{"Key": "192.0.2.2", "Family": "ipv4-unicast"})
	a.Info("prefix limit reached", map[string]any{"Key": "192.0.2.3"})
	a.Warn("something else", map[string]any{"Key": "192.0.2.4"})
	if len(got) != 1 || got[0] != "192.0.2.2" {
		t.Errorf("hook calls = %v, want exactly [192.0.2.2]", got)
	}
}
