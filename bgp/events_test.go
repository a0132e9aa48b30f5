package bgp

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/podroute/podroute/internal/netkey"
)

// eventSpeaker is a speaker that is never started: the tests below feed
// its event handlers directly, as GoBGP's watch goroutine would.
func eventSpeaker(t *testing.T, hold time.Duration) (*Speaker, netip.Addr) {
	t.Helper()
	s, err := New(Config{ASN: 65001, RouterID: netip.MustParseAddr("10.0.0.1"), MaxPrefixHold: hold,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("192.0.2.2")
	s.peers[peer] = Peer{Address: peer, ASN: 65002, MaxPrefixes: 5}
	s.peerState[peer] = &peerLive{state: "OpenConfirm", since: time.Now()}
	t.Cleanup(func() { s.Stop(true) })
	return s, peer
}

func stateEvent(peer netip.Addr, st gobgp.FSMState, admin api.PeerState_AdminState) *apiutil.WatchEventMessage_PeerEvent {
	return &apiutil.WatchEventMessage_PeerEvent{
		Type: apiutil.PEER_EVENT_STATE,
		Peer: apiutil.Peer{State: apiutil.PeerState{NeighborAddress: peer, SessionState: st, AdminState: admin}},
	}
}

// A max-prefix teardown is the session leaving Established with GoBGP's
// "prefix count" admin state. It is reported in Info, and one teardown
// starts exactly one hold-off, measured from that teardown: a second
// teardown replaces the first timer rather than leaving it to re-enable
// the peer early (seen with GoBGP v3, where a timer per log line let a
// flooding peer back after 10 s instead of 30 s).
func TestMaxPrefixTeardownOneHoldOffPerTeardown(t *testing.T) {
	const hold = 300 * time.Millisecond
	s, peer := eventSpeaker(t, hold)
	var mu sync.Mutex
	var enabled []time.Time
	held := 0
	s.setHeld = func(p Peer, hold bool) error {
		mu.Lock()
		defer mu.Unlock()
		if p.Address != peer {
			t.Errorf("held/released %s, want %s", p.Address, peer)
		}
		if hold {
			held++
		} else {
			enabled = append(enabled, time.Now())
		}
		return nil
	}
	up := api.PeerState_ADMIN_STATE_UP
	pfx := api.PeerState_ADMIN_STATE_PFX_CT

	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_ESTABLISHED, up), time.Now())
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_IDLE, pfx), time.Now())
	s.mu.Lock()
	info := s.peerState[peer].info
	s.mu.Unlock()
	if !strings.Contains(info, "max-prefix limit 5") {
		t.Errorf("Info after the teardown = %q, want it to name the max-prefix limit 5", info)
	}

	// A second flood and teardown half-way through the first hold-off.
	time.Sleep(hold / 2)
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_ESTABLISHED, up), time.Now())
	second := time.Now()
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_IDLE, pfx), second)
	// Idle again while held (GoBGP stays Idle): no new hold-off.
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_IDLE, pfx), time.Now())

	time.Sleep(hold * 3)
	mu.Lock()
	defer mu.Unlock()
	if len(enabled) != 1 {
		t.Fatalf("peer re-enabled %d times, want once (one hold-off per teardown, the latest)", len(enabled))
	}
	if d := enabled[0].Sub(second); d < hold {
		t.Errorf("peer re-enabled %v after the second teardown, want at least the hold-off %v", d, hold)
	}
	if held != 2 {
		t.Errorf("peer re-created held down %d times, want once per teardown (2)", held)
	}
}

// An ordinary session loss is not a max-prefix teardown.
func TestSessionLossStartsNoHoldOff(t *testing.T) {
	s, peer := eventSpeaker(t, 50*time.Millisecond)
	called := make(chan struct{}, 2)
	s.setHeld = func(Peer, bool) error { called <- struct{}{}; return nil }
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_ESTABLISHED, api.PeerState_ADMIN_STATE_UP), time.Now())
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_IDLE, api.PeerState_ADMIN_STATE_UP), time.Now())
	select {
	case <-called:
		t.Error("an ordinary session loss held the peer down or released it")
	case <-time.After(300 * time.Millisecond):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.Contains(s.peerState[peer].info, "max-prefix") {
		t.Errorf("Info = %q after an ordinary session loss", s.peerState[peer].info)
	}
}

// A new prefix from a peer already at its limit is refused by the
// best-path view (it never reaches Updates), the peer is marked over its
// limit and the guard is told; replacements and withdrawals still pass.
func TestLimitRefusesPrefixesPastIt(t *testing.T) {
	v := newRIBView(slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	peer := netip.MustParseAddr("192.0.2.1")
	v.setLimit(peer, 2)
	v.apply([]*apiutil.Path{
		unicast(t, "192.0.2.1", "192.0.2.1", "10.244.1.0/24", false),
		unicast(t, "192.0.2.1", "192.0.2.1", "10.244.2.0/24", false),
	})
	select {
	case <-v.over:
		t.Fatal("over its limit at the limit")
	default:
	}
	v.apply([]*apiutil.Path{
		unicast(t, "192.0.2.1", "192.0.2.1", "10.244.3.0/24", false),
		// A replacement of a prefix it has is not a new prefix.
		unicast(t, "192.0.2.1", "192.0.2.9", "10.244.2.0/24", false),
	})
	select {
	case got := <-v.over:
		if got != peer {
			t.Errorf("guard told of %s, want %s", got, peer)
		}
	default:
		t.Error("crossing the limit did not tell the guard")
	}
	if _, ok := v.paths[netkey.Of(netip.MustParsePrefix("10.244.3.0/24"))]; ok {
		t.Error("the prefix past the limit was taken into the view")
	}
	if hops := v.sets.get(v.paths[netkey.Of(netip.MustParsePrefix("10.244.2.0/24"))]).hops; len(hops) != 1 || hops[0] != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("replacement within the limit refused: %v", hops)
	}
	if n := v.received(peer); n != 2 {
		t.Errorf("received = %d, want 2", n)
	}
	// Withdrawals still pass, and the mark stays for the session.
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.1", "192.0.2.1", "10.244.1.0/24", true)})
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.1", "192.0.2.1", "10.244.4.0/24", false)})
	if n := len(v.paths); n != 1 {
		t.Errorf("view holds %d prefixes, want 1 (a peer over its limit adds nothing until its session ends)", n)
	}
	// A new session starts clean.
	v.forgetSession(peer)
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.1", "192.0.2.1", "10.244.4.0/24", false)})
	if n := len(v.paths); n != 2 {
		t.Errorf("after a new session the view holds %d prefixes, want 2", n)
	}
	// GoBGP's exact count (paths the view never sees) past the limit
	// trips it too, as does a lowered limit already exceeded.
	v.setFloor(peer, 3)
	if !v.overLimit[peer] {
		t.Error("an exact recount past the limit did not trip it")
	}
	v.forgetSession(peer)
	v.setLimit(peer, 1)
	if !v.overLimit[peer] {
		t.Error("lowering the limit below the count did not trip it")
	}
}

func unicast(t *testing.T, peer, nextHop string, prefix string, withdraw bool) *apiutil.Path {
	t.Helper()
	p, err := originPath(netip.MustParsePrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	nh := netip.MustParseAddr(nextHop)
	if nh.Is4() {
		a, _ := gobgp.NewPathAttributeNextHop(nh)
		p.Attrs = []gobgp.PathAttributeInterface{a}
	} else {
		a, _ := gobgp.NewPathAttributeMpReachNLRI(gobgp.RF_IPv6_UC, []gobgp.PathNLRI{{NLRI: p.Nlri}}, nh)
		p.Attrs = []gobgp.PathAttributeInterface{a}
	}
	p.PeerAddress = netip.MustParseAddr(peer)
	p.Withdrawal = withdraw
	return p
}

// GoBGP's multipath events carry only changes to a prefix's set; the view
// must turn them into the whole set, and coalesce: one update per prefix
// with the latest next hops, however many events came in between.
func TestRIBViewMultipathDeltasAndCoalescing(t *testing.T) {
	v := newRIBView(slog.New(slog.NewTextHandler(io.Discard, nil)), true)
	p := netip.MustParsePrefix("10.244.5.0/24")
	q := netip.MustParsePrefix("fd00:244:0:5::/64")
	v.apply([]*apiutil.Path{
		unicast(t, "192.0.2.1", "192.0.2.1", "10.244.5.0/24", false),
		unicast(t, "192.0.2.2", "192.0.2.2", "10.244.5.0/24", false),
		unicast(t, "2001:db8::1", "2001:db8::1", "fd00:244:0:5::/64", false),
	})
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.1", "192.0.2.1", "10.244.5.0/24", true)})
	// A path's attributes change: same peer, new next hop.
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.2", "192.0.2.9", "10.244.5.0/24", false)})

	if in, sole, learned, own := v.counts(netip.MustParseAddr("192.0.2.2")); in != 1 || sole != 1 || learned != 1 || own != 0 {
		t.Errorf("counts for 192.0.2.2 = %d %d %d %d, want in use 1, sole 1, learned v4 1, own 0", in, sole, learned, own)
	}
	if in, _, _, _ := v.counts(netip.MustParseAddr("192.0.2.1")); in != 0 {
		t.Errorf("192.0.2.1 withdrew its only path but is counted in use for %d", in)
	}

	ctx := t.Context()
	go v.forward(ctx)
	v.signal()
	got := map[netip.Prefix][]netip.Addr{}
	deadline := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case b := <-v.updates:
			for _, u := range b {
				if _, dup := got[u.Prefix]; dup {
					t.Errorf("prefix %s delivered twice", u.Prefix)
				}
				got[u.Prefix] = u.NextHops
			}
		case <-deadline:
			t.Fatalf("updates so far %v", got)
		}
	}
	if nh := got[p]; len(nh) != 1 || nh[0] != netip.MustParseAddr("192.0.2.9") {
		t.Errorf("%s via %v, want only 192.0.2.9", p, nh)
	}
	if nh := got[q]; len(nh) != 1 || nh[0] != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("%s via %v, want 2001:db8::1", q, nh)
	}

	// The last path goes: one update with no next hops.
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.2", "192.0.2.9", "10.244.5.0/24", true)})
	select {
	case b := <-v.updates:
		if len(b) != 1 || b[0].Prefix != p || len(b[0].NextHops) != 0 {
			t.Errorf("after the last withdrawal got %v, want %s with no next hops", b, p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no update after the last withdrawal")
	}
}

// Without multipath each event carries the new best path alone; it
// replaces whatever the prefix had.
func TestRIBViewSingleBestReplaces(t *testing.T) {
	v := newRIBView(slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.1", "192.0.2.1", "10.244.5.0/24", false)})
	v.apply([]*apiutil.Path{unicast(t, "192.0.2.2", "192.0.2.2", "10.244.5.0/24", false)})
	set := v.sets.get(v.paths[netkey.Of(netip.MustParsePrefix("10.244.5.0/24"))]).paths
	if len(set) != 1 || set[0].peer != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("set = %v, want only the new best from 192.0.2.2", set)
	}
	if in, _, learned, _ := v.counts(netip.MustParseAddr("192.0.2.1")); in != 0 || learned != 1 {
		t.Errorf("old best still counted: in use %d, learned %d", in, learned)
	}
}

// A password-protected session that never came up is most likely a TCP
// MD5 mismatch, which neither side can see; status says so until the
// session has been up once.
func TestStatusHintsAtMD5(t *testing.T) {
	s, peer := eventSpeaker(t, time.Second)
	p := s.peers[peer]
	p.Password, p.Passive = "secret", true
	s.peers[peer] = p
	st, _ := s.PeerStatus(t.Context())
	if len(st) != 1 || !strings.Contains(st[0].Info, "TCP MD5: no correctly signed connection from the peer") {
		t.Fatalf("status of a passive MD5 peer never up: %+v", st)
	}
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_ESTABLISHED, api.PeerState_ADMIN_STATE_UP), time.Now())
	s.onPeerEvent(stateEvent(peer, gobgp.BGP_FSM_IDLE, api.PeerState_ADMIN_STATE_UP), time.Now())
	if st, _ := s.PeerStatus(t.Context()); strings.Contains(st[0].Info, "MD5") {
		t.Errorf("after the session was up once the hint stays: %q", st[0].Info)
	}
	p.Password = ""
	s.peers[peer] = p
	s.peerState[peer].everUp = false
	if st, _ := s.PeerStatus(t.Context()); strings.Contains(st[0].Info, "MD5") {
		t.Errorf("a peer without a password gets the MD5 hint: %q", st[0].Info)
	}
}
