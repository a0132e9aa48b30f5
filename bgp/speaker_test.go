package bgp

// These tests run real GoBGP speakers in this process and connect them
// over loopback. They need no privileges: every speaker binds a 127/8
// address (127.0.0.2 and friends work on Linux without configuration) or
// ::1, and only the node under test ("A") listens, on a free high port;
// the others dial it and do not listen at all.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/podroute/podroute/internal/testutil"
)

const (
	asnA, asnB, asnC = 65001, 65002, 65003

	testMaxPrefixHold = 4 * time.Second

	// waitLong bounds every "eventually": session setup takes about a
	// second with the short timers below, so this only matters when
	// something is wrong (or the machine is very slow under -race).
	waitLong = 20 * time.Second
)

var (
	addrA = netip.MustParseAddr("127.0.0.1")
	addrB = netip.MustParseAddr("127.0.0.2")
	addrC = netip.MustParseAddr("127.0.0.3")
	// addrNobody is a peer address no speaker in these tests uses.
	addrNobody = netip.MustParseAddr("127.0.0.4")
)

// lockedBuffer collects a speaker's log. Logging into t.Log is not an
// option: GoBGP goroutines may still log after the test has returned,
// which panics; the buffer is printed only when the test failed.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// peerEvent is one session state change as GoBGP reports it.
type peerEvent struct {
	addr  netip.Addr
	state string // as stateName spells it
}

// node is a running Speaker with what the test has observed of it: the
// table its Updates() describe (prefix -> next hops), every update in
// order, and every GoBGP session state change.
type node struct {
	t    *testing.T
	name string
	sp   *Speaker
	logs *lockedBuffer

	// wedged is set by a test that found the speaker deadlocked; its
	// cleanup then leaves it alone instead of blocking on it.
	wedged atomic.Bool

	mu     sync.Mutex
	rib    map[netip.Prefix][]netip.Addr
	hist   []RouteUpdate
	events []peerEvent
}

type nodeSpec struct {
	name       string
	asn        uint32
	routerID   string
	listen     netip.Addr // zero: do not listen
	policy     Policy
	originated []netip.Prefix
}

// freePort returns a TCP port that was free on addr a moment ago.
func freePort(t *testing.T, addr netip.Addr) int32 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("find a free port on %s: %v", addr, err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// startNode starts a speaker. A listening node gets a free port on its
// listen address (retried, as another process may take it between the
// probe and GoBGP's bind). Peers are configured by the caller afterwards,
// so that the speaker a peer dials already exists.
func startNode(t *testing.T, spec nodeSpec) (*node, int32) {
	t.Helper()
	logs := &lockedBuffer{}
	cfg := Config{
		ASN:         spec.asn,
		RouterID:    netip.MustParseAddr(spec.routerID),
		RestartTime: 10 * time.Second,
		// GoBGP keeps multipath in a package global that the last
		// StartBgp sets, so every speaker in this test binary uses the
		// same value.
		Multipath: true,
		// Short, so that the hold-off test does not take half a minute.
		MaxPrefixHold: testMaxPrefixHold,
		FastReconnect: true,
		Logger:        slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	var (
		sp   *Speaker
		port int32
		err  error
	)
	for attempt := 0; attempt < 5; attempt++ {
		if spec.listen.IsValid() {
			port = freePort(t, spec.listen)
			cfg.ListenAddresses = []netip.Addr{spec.listen}
			cfg.ListenPort = port
		}
		sp, err = New(cfg)
		if err != nil {
			t.Fatalf("%s: New: %v", spec.name, err)
		}
		// The policy goes in before Start, as the daemon does it; every
		// node here has pools, so Start never pushes an empty policy
		// (see TestStartWithEmptyPolicy).
		if err := sp.SetPolicy(context.Background(), spec.policy); err != nil {
			t.Fatalf("%s: SetPolicy before Start: %v", spec.name, err)
		}
		if err = sp.Start(context.Background()); err == nil {
			break
		}
		if !spec.listen.IsValid() {
			break
		}
	}
	if err != nil {
		t.Fatalf("%s: Start: %v", spec.name, err)
	}
	n := &node{t: t, name: spec.name, sp: sp, logs: logs, rib: map[netip.Prefix][]netip.Addr{}}

	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case batch := <-sp.Updates():
				n.mu.Lock()
				for _, u := range batch {
					n.hist = append(n.hist, u)
					if len(u.NextHops) == 0 {
						delete(n.rib, u.Prefix)
					} else {
						n.rib[u.Prefix] = slices.Clone(u.NextHops)
					}
				}
				n.mu.Unlock()
			}
		}
	}()
	wctx, cancelWatch := context.WithCancel(context.Background())
	err = sp.Server().WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(pe *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if pe == nil || pe.Type != apiutil.PEER_EVENT_STATE {
				return
			}
			n.mu.Lock()
			n.events = append(n.events, peerEvent{pe.Peer.State.NeighborAddress.Unmap(), stateName(pe.Peer.State.SessionState)})
			n.mu.Unlock()
		},
	}, server.WatchPeer())
	if err != nil {
		t.Fatalf("%s: watch peer events: %v", spec.name, err)
	}
	t.Cleanup(func() {
		cancelWatch()
		if !n.wedged.Load() {
			n.quiesce()
			sp.Stop(false)
			sp.Server().Stop()
		}
		close(done)
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", spec.name, logs.String())
		}
	})

	if err := sp.SetOriginated(context.Background(), spec.originated); err != nil {
		t.Fatalf("%s: SetOriginated: %v", spec.name, err)
	}
	return n, port
}

// quiesce removes the node's peers before it is stopped. GoBGP v3.37's
// StopBgp clears its global config while the receive goroutines of
// sessions it has just cancelled may still be parsing an UPDATE that
// reads it (a data race inside GoBGP that -race reports); with the peers
// deleted first and their goroutines given a moment to exit, StopBgp has
// no live sessions left to race with.
func (n *node) quiesce() {
	ctx := context.Background()
	if err := n.sp.SetPeers(ctx, nil); err != nil {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		count := 0
		if err := n.sp.Server().ListPeer(ctx, &api.ListPeerRequest{}, func(*api.Peer) { count++ }); err != nil || count == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Teardown hygiene, not an assertion: DeletePeer cancels a session's
	// goroutines without waiting for them.
	time.Sleep(200 * time.Millisecond)
}

// testPeer is a peer with short timers, so sessions come up and notice
// failures within seconds.
func testPeer(addr, local netip.Addr, asn uint32, port int32, passive bool) Peer {
	return Peer{
		Address:           addr,
		ASN:               asn,
		LocalAddress:      local,
		Port:              uint16(port),
		Passive:           passive,
		HoldTime:          3 * time.Second,
		KeepaliveInterval: time.Second,
		ConnectRetry:      time.Second,
		GracefulRestart:   true,
	}
}

func (n *node) setPeers(peers ...Peer) {
	n.t.Helper()
	if err := n.sp.SetPeers(context.Background(), peers); err != nil {
		n.t.Fatalf("%s: SetPeers: %v", n.name, err)
	}
}

func (n *node) setOriginated(ps ...netip.Prefix) {
	n.t.Helper()
	if err := n.sp.SetOriginated(context.Background(), ps); err != nil {
		n.t.Fatalf("%s: SetOriginated: %v", n.name, err)
	}
}

func (n *node) status(addr netip.Addr) (PeerStatus, error) {
	all, err := n.sp.PeerStatus(context.Background())
	if err != nil {
		return PeerStatus{}, err
	}
	for _, st := range all {
		if st.Peer.Address == addr {
			return st, nil
		}
	}
	return PeerStatus{}, fmt.Errorf("%s: no peer %s in PeerStatus", n.name, addr)
}

// gobgpPeer is GoBGP's own view of a peer (uptime, flops, config).
func (n *node) gobgpPeer(addr netip.Addr) (*api.Peer, error) {
	var out *api.Peer
	err := n.sp.Server().ListPeer(context.Background(), &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) { out = p })
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, fmt.Errorf("%s: GoBGP has no peer %s", n.name, addr)
	}
	return out, nil
}

// waitReceived waits until A holds want paths from addr, accepted or not.
func (n *node) waitReceived(addr netip.Addr, want int) {
	n.t.Helper()
	eventually(n.t, waitLong, fmt.Sprintf("%s: all %d announcements of %s received", n.name, want, addr), func() error {
		st, err := n.status(addr)
		if err != nil {
			return err
		}
		if st.Received != uint64(want) {
			return fmt.Errorf("received %d", st.Received)
		}
		return nil
	})
}

// checkAccepted compares PeerStatus.Accepted, what operators are shown as
// "accepted", with the number of paths the import policy let through.
func (n *node) checkAccepted(addr netip.Addr, want int) {
	n.t.Helper()
	st, err := n.status(addr)
	if err != nil {
		n.t.Fatal(err)
	}
	if st.Accepted != uint64(want) {
		n.t.Errorf("%s: PeerStatus for %s says Accepted %d of Received %d; the import policy accepted %d",
			n.name, addr, st.Accepted, st.Received, want)
	}
}

func (n *node) waitEstablished(addr netip.Addr) PeerStatus {
	n.t.Helper()
	var st PeerStatus
	eventually(n.t, waitLong, fmt.Sprintf("%s: session to %s Established", n.name, addr), func() error {
		var err error
		if st, err = n.status(addr); err != nil {
			return err
		}
		if st.State != "Established" {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	return st
}

// eventCount marks a point in the event log; stateChangesSince lists the
// session state changes of addr after it.
func (n *node) eventCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.events)
}

func (n *node) stateChangesSince(mark int, addr netip.Addr) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, e := range n.events[mark:] {
		if e.addr == addr {
			out = append(out, e.state)
		}
	}
	return out
}

func (n *node) table() map[netip.Prefix][]netip.Addr {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[netip.Prefix][]netip.Addr, len(n.rib))
	for p, nh := range n.rib {
		out[p] = sortedAddrs(nh)
	}
	return out
}

func (n *node) histLen() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.hist)
}

func (n *node) updatesSince(mark int, p netip.Prefix) []RouteUpdate {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []RouteUpdate
	for _, u := range n.hist[mark:] {
		if u.Prefix == p {
			out = append(out, u)
		}
	}
	return out
}

// everSeen reports whether Updates() ever announced p with a next hop.
func (n *node) everSeen(p netip.Prefix) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, u := range n.hist {
		if u.Prefix == p && len(u.NextHops) > 0 {
			return true
		}
	}
	return false
}

// globalRIB is GoBGP's own table, peer paths only: the ground truth that
// Updates() is meant to describe.
func (n *node) globalRIB(afi api.Family_Afi) (map[netip.Prefix][]netip.Addr, error) {
	out := map[netip.Prefix][]netip.Addr{}
	family := gobgp.RF_IPv4_UC
	if afi == api.Family_AFI_IP6 {
		family = gobgp.RF_IPv6_UC
	}
	err := n.sp.Server().ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: family},
		func(_ gobgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				if !p.PeerAddress.IsValid() || p.Filtered {
					continue
				}
				pfx, err := pathPrefix(p)
				if err != nil {
					continue
				}
				if nh, err := pathNextHop(p); err == nil {
					out[pfx] = append(out[pfx], nh)
				}
			}
		})
	for p, nh := range out {
		out[p] = sortedAddrs(nh)
	}
	return out, err
}

func sortedAddrs(as []netip.Addr) []netip.Addr {
	out := slices.Clone(as)
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// eventually polls every 50 ms: these speakers run on loopback and react
// within milliseconds.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	testutil.EventuallyEvery(t, 50*time.Millisecond, timeout, what, cond)
}

// consistently checks cond for the whole of d and fails at the first
// violation. It is used only for "this must not happen" properties, and
// d is chosen well above the time the unwanted thing would take.
func consistently(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tableEqual(got, want map[netip.Prefix][]netip.Addr) error {
	var diffs []string
	for p, nh := range want {
		if g, ok := got[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %s via %v", p, nh))
		} else if !slices.Equal(g, sortedAddrs(nh)) {
			diffs = append(diffs, fmt.Sprintf("%s via %v, want %v", p, g, nh))
		}
	}
	for p, nh := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s via %v", p, nh))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		return fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return nil
}

func via(nh netip.Addr, ps ...netip.Prefix) map[netip.Prefix][]netip.Addr {
	out := map[netip.Prefix][]netip.Addr{}
	for _, p := range ps {
		out[p] = []netip.Addr{nh}
	}
	return out
}

// pair is the basic topology: A (the node under test) listens on
// addrA and has B as a passive peer; B dials A from addrB and does not
// listen.
type pair struct {
	a, b   *node
	portA  int32
	peerB  Peer // A's config for B
	peerAB Peer // B's config for A
}

func startPair(t *testing.T, polA, polB Policy, ownA, ownB []netip.Prefix) *pair {
	t.Helper()
	a, portA := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: addrA, policy: polA, originated: ownA})
	b, _ := startNode(t, nodeSpec{name: "B", asn: asnB, routerID: "10.0.0.2", policy: polB, originated: ownB})
	p := &pair{a: a, b: b, portA: portA,
		peerB:  testPeer(addrB, addrA, asnB, 0, true),
		peerAB: testPeer(addrA, addrB, asnA, portA, false),
	}
	a.setPeers(p.peerB)
	b.setPeers(p.peerAB)
	return p
}

// addC starts a third speaker C at addrC that dials A.
func addC(t *testing.T, portA int32, pol Policy, own []netip.Prefix) (*node, Peer) {
	t.Helper()
	c, _ := startNode(t, nodeSpec{name: "C", asn: asnC, routerID: "10.0.0.3", policy: pol, originated: own})
	c.setPeers(testPeer(addrA, addrC, asnA, portA, false))
	return c, testPeer(addrC, addrA, asnC, 0, true)
}

var (
	podPools = mustPrefixes("10.244.0.0/16")
	ownA     = netip.MustParsePrefix("10.244.1.0/24")

	// routerPolicy is for the speakers that play routers or misbehaving
	// peers and announce arbitrary prefixes. GoBGP runs the global import
	// policy over our own AddPath routes too (see
	// TestOriginatedOutsidePoolsIsAdvertised), so a speaker only
	// announces what its own import policy would accept; these pools
	// accept everything.
	routerPolicy = Policy{PodPools: mustPrefixes("0.0.0.0/0", "::/0")}
)

func TestImportPolicy(t *testing.T) {
	// What B (a misbehaving or merely chatty peer) announces, and whether
	// A may use it.
	table := []struct {
		prefix string
		accept bool
		why    string
	}{
		{"10.244.2.0/24", true, "another node's pod CIDR"},
		{"10.244.3.0/24", true, "another node's pod CIDR"},
		{"10.244.1.0/24", false, "A's own pod CIDR"},
		{"10.244.1.128/25", false, "inside A's own pod CIDR"},
		{"10.244.0.0/16", false, "covers A's own pod CIDR"},
		{"10.244.9.0/24", false, "covers the protected node address 10.244.9.9"},
		{"127.0.0.2/32", false, "the peer's own address"},
		{"192.168.77.0/24", false, "outside the pod pools"},
		{"0.0.0.0/0", false, "default route, not asked for"},
	}
	for _, importDefault := range []bool{false, true} {
		t.Run(fmt.Sprintf("ImportDefaultRoute=%v", importDefault), func(t *testing.T) {
			var announced []netip.Prefix
			want := map[netip.Prefix][]netip.Addr{}
			for _, r := range table {
				p := netip.MustParsePrefix(r.prefix)
				announced = append(announced, p)
				if r.accept || (importDefault && p.Bits() == 0) {
					want[p] = []netip.Addr{addrB}
				}
			}
			polA := Policy{PodPools: podPools, ProtectedAddrs: mustAddrs("10.244.9.9"), ImportDefaultRoute: importDefault}
			pr := startPair(t, polA, routerPolicy, []netip.Prefix{ownA}, announced)
			pr.a.waitEstablished(addrB)

			// Every announcement arrived...
			pr.a.waitReceived(addrB, len(announced))
			// ...and Updates() carries exactly the allowed ones, via B.
			eventually(t, waitLong, "A's learned table", func() error { return tableEqual(pr.a.table(), want) })
			got, err := pr.a.globalRIB(api.Family_AFI_IP)
			if err != nil {
				t.Fatal(err)
			}
			if err := tableEqual(got, want); err != nil {
				t.Errorf("GoBGP's table on A: %v", err)
			}
			for _, r := range table {
				p := netip.MustParsePrefix(r.prefix)
				if _, ok := want[p]; !ok && pr.a.everSeen(p) {
					t.Errorf("%s (%s) was announced on Updates() although it must be rejected", p, r.why)
				}
			}
			pr.a.checkAccepted(addrB, len(want))
		})
	}

	// The automatic protection of session addresses, on its own: here
	// the pool includes the peer's address, so only the protected-address
	// rule stands between B and a route to itself through itself.
	t.Run("peer address protected inside a pool", func(t *testing.T) {
		polA := Policy{PodPools: mustPrefixes("10.244.0.0/16", "127.0.0.0/8")}
		announced := mustPrefixes("127.0.0.0/8", "127.0.0.0/30", "127.0.0.2/32", "127.0.9.0/24")
		pr := startPair(t, polA, routerPolicy, []netip.Prefix{ownA}, announced)
		pr.a.waitEstablished(addrB)
		// Only 127.0.9.0/24 covers no session address.
		want := via(addrB, netip.MustParsePrefix("127.0.9.0/24"))
		pr.a.waitReceived(addrB, len(announced))
		eventually(t, waitLong, "A's learned table", func() error { return tableEqual(pr.a.table(), want) })
		got, err := pr.a.globalRIB(api.Family_AFI_IP)
		if err != nil {
			t.Fatal(err)
		}
		if err := tableEqual(got, want); err != nil {
			t.Errorf("GoBGP's table on A: %v", err)
		}
	})
}

// TestImportPolicyIPv6 runs two speakers on ::1, the only IPv6 loopback
// address: A listens on one port, B dials it from the same address. GoBGP
// keys a peer by address, and each speaker has just the other one as a
// peer, so sharing the address is fine as long as only A listens.
func TestImportPolicyIPv6(t *testing.T) {
	lo6 := netip.MustParseAddr("::1")
	if l, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		l.Close()
	}
	own := netip.MustParsePrefix("fd00:244:0:1::/64")
	table := []struct {
		prefix string
		accept bool
	}{
		{"fd00:244:0:2::/64", true},
		{"fd00:244:0:3::/64", true},
		{"fd00:244:0:1::/64", false},   // A's own
		{"fd00:244:0:1::/80", false},   // inside A's own
		{"fd00:244::/48", false},       // the pool, covers A's own
		{"fd00:244:0:9::/64", false},   // covers protected fd00:244:0:9::9
		{"::1/128", false},             // the peer's (and A's) address
		{"2001:db8:77::/48", false},    // outside the pool
		{"::/0", false},                // default route, not asked for
		{"fd00:244:1::/64", false},     // next /48: outside the pool
		{"fd00:244:0:ff00::/56", true}, // inside the pool, overlaps nothing
	}

	polA := Policy{PodPools: mustPrefixes("fd00:244::/48"), ProtectedAddrs: mustAddrs("fd00:244:0:9::9")}
	var announced []netip.Prefix
	want := map[netip.Prefix][]netip.Addr{}
	for _, r := range table {
		p := netip.MustParsePrefix(r.prefix)
		announced = append(announced, p)
		if r.accept {
			want[p] = []netip.Addr{lo6}
		}
	}
	a, portA := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: lo6, policy: polA, originated: []netip.Prefix{own}})
	b, _ := startNode(t, nodeSpec{name: "B", asn: asnB, routerID: "10.0.0.2", policy: routerPolicy, originated: announced})
	a.setPeers(testPeer(lo6, lo6, asnB, 0, true))
	b.setPeers(testPeer(lo6, lo6, asnA, portA, false))

	a.waitEstablished(lo6)
	a.waitReceived(lo6, len(announced))
	eventually(t, waitLong, "A's learned v6 table", func() error { return tableEqual(a.table(), want) })
	got, err := a.globalRIB(api.Family_AFI_IP6)
	if err != nil {
		t.Fatal(err)
	}
	if err := tableEqual(got, want); err != nil {
		t.Errorf("GoBGP's v6 table on A: %v", err)
	}
	a.checkAccepted(lo6, len(want))
	// A exported exactly its own v6 prefix over the same session (B
	// rejects it on import: B announces that prefix itself).
	eventually(t, waitLong, "B receives A's v6 prefix", func() error {
		st, err := b.status(lo6)
		if err != nil {
			return err
		}
		if st.Received != 1 {
			return fmt.Errorf("B received %d from A, want 1", st.Received)
		}
		return nil
	})
}

func TestExportPolicy(t *testing.T) {
	other := netip.MustParsePrefix("10.244.2.0/24")
	polA := Policy{PodPools: podPools}
	// B accepts anything in the pools, so whatever A exports shows up
	// in B's table.
	pr := startPair(t, polA, Policy{PodPools: podPools}, []netip.Prefix{ownA}, nil)
	_, peerC := addC(t, pr.portA, routerPolicy, []netip.Prefix{other})
	pr.a.setPeers(pr.peerB, peerC)
	pr.a.waitEstablished(addrB)
	pr.a.waitEstablished(addrC)

	// A has learned C's prefix...
	eventually(t, waitLong, "A learns C's prefix", func() error {
		return tableEqual(pr.a.table(), via(addrC, other))
	})
	// ...and B gets only A's own one.
	eventually(t, waitLong, "B learns A's own prefix", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA))
	})
	// A decides on export when C's path arrives, so B would have it by
	// now; the window only covers delivery.
	consistently(t, 2*time.Second, "transit off: B must not learn C's prefix through A", func() error {
		if _, ok := pr.b.table()[other]; ok {
			return fmt.Errorf("B has %s via %v", other, pr.b.table()[other])
		}
		return nil
	})
	if st, err := pr.b.status(addrA); err != nil || st.Received != 1 {
		t.Errorf("B's Received from A = %d (%v), want 1", st.Received, err)
	}

	// Transit on, at run time: the policy change must re-export (soft
	// reset out) without resetting the sessions.
	mark := pr.a.eventCount()
	polA.Transit = true
	if err := pr.a.sp.SetPolicy(context.Background(), polA); err != nil {
		t.Fatal(err)
	}
	want := via(addrA, ownA, other)
	eventually(t, waitLong, "transit on: B learns both", func() error { return tableEqual(pr.b.table(), want) })
	for _, p := range []netip.Addr{addrB, addrC} {
		if ch := pr.a.stateChangesSince(mark, p); len(ch) > 0 {
			t.Errorf("policy change reset the session to %s: %v", p, ch)
		}
	}
}

// Turning transit off must take back what transit sent: otherwise B
// keeps routing C's pods through A after A stopped offering that path.
func TestTransitOffWithdrawsTransitRoutes(t *testing.T) {
	other := netip.MustParsePrefix("10.244.2.0/24")
	polA := Policy{PodPools: podPools, Transit: true}
	pr := startPair(t, polA, Policy{PodPools: podPools}, []netip.Prefix{ownA}, nil)
	_, peerC := addC(t, pr.portA, routerPolicy, []netip.Prefix{other})
	pr.a.setPeers(pr.peerB, peerC)
	eventually(t, waitLong, "transit on: B learns both", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA, other))
	})

	polA.Transit = false
	if err := pr.a.sp.SetPolicy(context.Background(), polA); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "transit off: B keeps only A's own prefix", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA))
	})
}

func TestWithdrawal(t *testing.T) {
	keep, gone := netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("10.244.3.0/24")
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA}, []netip.Prefix{keep, gone})
	eventually(t, waitLong, "A learns both", func() error { return tableEqual(pr.a.table(), via(addrB, keep, gone)) })

	mark := pr.a.histLen()
	pr.b.setOriginated(keep)
	eventually(t, waitLong, "A drops the withdrawn prefix", func() error { return tableEqual(pr.a.table(), via(addrB, keep)) })
	ups := pr.a.updatesSince(mark, gone)
	if len(ups) != 1 || len(ups[0].NextHops) != 0 {
		t.Errorf("updates for %s after the withdrawal = %v, want one with no next hops", gone, ups)
	}
	if ups := pr.a.updatesSince(mark, keep); len(ups) != 0 {
		t.Errorf("the withdrawal of %s also produced updates for %s: %v", gone, keep, ups)
	}
}

// sessionMark is what identifies one BGP session from the outside: when
// A's side of it became Established (podroute's view and GoBGP's uptime)
// and how often GoBGP saw it flap.
type sessionMark struct {
	since  time.Time
	uptime int64
	flops  uint32
	events int
}

func (n *node) markSession(addr netip.Addr) sessionMark {
	n.t.Helper()
	st := n.waitEstablished(addr)
	gp, err := n.gobgpPeer(addr)
	if err != nil {
		n.t.Fatal(err)
	}
	return sessionMark{since: st.StateSince, uptime: gp.Timers.State.Uptime.AsTime().Unix(), flops: gp.State.Flops, events: n.eventCount()}
}

// sameSession fails unless the session to addr is the one marked: still
// Established, no state change since, same uptime, no new flop.
func (n *node) sameSession(addr netip.Addr, m sessionMark, after string) {
	n.t.Helper()
	if ch := n.stateChangesSince(m.events, addr); len(ch) > 0 {
		n.t.Errorf("%s: session %s->%s changed state: %v", after, n.name, addr, ch)
	}
	st, err := n.status(addr)
	if err != nil {
		n.t.Fatal(err)
	}
	if st.State != "Established" || !st.StateSince.Equal(m.since) {
		n.t.Errorf("%s: %s->%s is %s since %v, want Established since %v", after, n.name, addr, st.State, st.StateSince, m.since)
	}
	gp, err := n.gobgpPeer(addr)
	if err != nil {
		n.t.Fatal(err)
	}
	if u := gp.Timers.State.Uptime.AsTime().Unix(); u != m.uptime || gp.State.Flops != m.flops {
		n.t.Errorf("%s: GoBGP uptime %d flops %d, want %d and %d", after, u, gp.State.Flops, m.uptime, m.flops)
	}
}

// settle is how long a session is watched after a config change that
// must not reset it. GoBGP tears a session down synchronously with the
// config change and the state event follows within milliseconds, so this
// is far more than needed.
const settle = 1500 * time.Millisecond

// keepsSession watches the marked session for settle and then checks it
// is still the same one.
func (n *node) keepsSession(addr netip.Addr, m sessionMark, after string) {
	n.t.Helper()
	consistently(n.t, settle, after, func() error {
		if ch := n.stateChangesSince(m.events, addr); len(ch) > 0 {
			return fmt.Errorf("session %s->%s changed state: %v", n.name, addr, ch)
		}
		return nil
	})
	n.sameSession(addr, m, after)
}

func TestSetPeersKeepsSessions(t *testing.T) {
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA}, nil)
	a := pr.a
	mB := a.markSession(addrB)

	// Identical list: nothing happens.
	a.setPeers(pr.peerB)
	a.keepsSession(addrB, mB, "identical SetPeers")

	// Only the hold time: applied in place, the session stays.
	peerB := pr.peerB
	peerB.HoldTime = 6 * time.Second
	a.setPeers(peerB)
	a.keepsSession(addrB, mB, "hold time change")
	if gp, err := a.gobgpPeer(addrB); err != nil || gp.Timers.Config.HoldTime != 6 {
		t.Errorf("GoBGP's hold time for B = %v (%v), want 6: the change was not applied", gp.GetTimers().GetConfig().GetHoldTime(), err)
	}

	// A second peer comes and goes: B's session is not touched.
	_, peerC := addC(t, pr.portA, routerPolicy, nil)
	a.setPeers(peerB, peerC)
	a.waitEstablished(addrC)
	a.sameSession(addrB, mB, "adding C")
	a.setPeers(peerB)
	eventually(t, waitLong, "C is gone from A", func() error {
		if _, err := a.status(addrC); err == nil {
			return fmt.Errorf("still listed")
		}
		return nil
	})
	a.keepsSession(addrB, mB, "removing C")

	// C back, then B's ASN changes: only B's session is re-created.
	a.setPeers(peerB, peerC)
	mC := a.markSession(addrC)
	mark := a.eventCount()
	peerB.ASN = 65012
	a.setPeers(peerB, peerC)
	eventually(t, waitLong, "B's session re-created", func() error {
		if ch := a.stateChangesSince(mark, addrB); len(ch) == 0 {
			return fmt.Errorf("no state change for B yet")
		}
		return nil
	})
	if gp, err := a.gobgpPeer(addrB); err != nil || gp.Conf.PeerAsn != 65012 {
		t.Errorf("GoBGP's ASN for B = %v (%v), want 65012", gp.GetConf().GetPeerAsn(), err)
	}
	// B really is AS 65002, so the new session cannot come up.
	consistently(t, settle, "B with the wrong ASN", func() error {
		if st, err := a.status(addrB); err != nil || st.State == "Established" {
			return fmt.Errorf("B is %s (%v), want not Established", st.State, err)
		}
		return nil
	})
	a.sameSession(addrC, mC, "changing B's ASN")
}

// A description is a label: changing it must not cost a session (diffPeers
// classes it as an in-place update).
func TestDescriptionChangeKeepsSession(t *testing.T) {
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA}, nil)
	mB := pr.a.markSession(addrB)
	peerB := pr.peerB
	peerB.Description = "rack 7 ToR"
	pr.a.setPeers(peerB)
	pr.a.keepsSession(addrB, mB, "description change")
	if st, err := pr.a.status(addrB); err != nil || st.Peer.Description != peerB.Description {
		t.Errorf("PeerStatus description = %q (%v), want %q", st.Peer.Description, err, peerB.Description)
	}
}

// floodPrefixes are n pool prefixes outside everything else used here.
func floodPrefixes(n int) []netip.Prefix {
	var out []netip.Prefix
	for i := range n {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(100 + i), 0}), 24))
	}
	return out
}

// liveState is the session state as podroute's event handler has
// processed it (PeerStatus.State comes from GoBGP directly).
func (n *node) liveState(addr netip.Addr) string {
	n.sp.mu.Lock()
	defer n.sp.mu.Unlock()
	if l := n.sp.peerState[addr]; l != nil {
		return l.state
	}
	return ""
}

// maxPrefixSetup: A limits B and C to five prefixes each; C announces
// two, B then ten. B floods only once podroute has seen its session come
// up: a flood right at session start races with that event (see
// TestMaxPrefixInfoSurvivesLateEstablishedEvent), and this test is about
// the teardown itself.
func maxPrefixSetup(t *testing.T) (*pair, PeerStatus) {
	t.Helper()
	flood := floodPrefixes(10)
	cOwn := mustPrefixes("10.244.20.0/24", "10.244.21.0/24")
	a, portA := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: addrA, policy: Policy{PodPools: podPools}, originated: []netip.Prefix{ownA}})
	b, _ := startNode(t, nodeSpec{name: "B", asn: asnB, routerID: "10.0.0.2", policy: routerPolicy})
	pr := &pair{a: a, b: b, portA: portA,
		peerB:  testPeer(addrB, addrA, asnB, 0, true),
		peerAB: testPeer(addrA, addrB, asnA, portA, false),
	}
	pr.peerB.MaxPrefixes = 5
	b.setPeers(pr.peerAB)
	_, peerC := addC(t, portA, routerPolicy, cOwn)
	peerC.MaxPrefixes = 5
	a.setPeers(pr.peerB, peerC)

	a.waitEstablished(addrC)
	eventually(t, waitLong, "A learns C's prefixes", func() error {
		return tableEqual(a.table(), via(addrC, cOwn...))
	})
	eventually(t, waitLong, "podroute sees B Established", func() error {
		if st := a.liveState(addrB); st != "Established" {
			return fmt.Errorf("state %q", st)
		}
		return nil
	})
	b.setOriginated(flood...)
	var st PeerStatus
	eventually(t, waitLong, "B torn down for max-prefix", func() error {
		var err error
		if st, err = a.status(addrB); err != nil {
			return err
		}
		if !strings.Contains(st.Info, "max-prefix") || st.State == "Established" {
			return fmt.Errorf("state %s info %q", st.State, st.Info)
		}
		return nil
	})
	// Up to the limit, B's prefixes are as good as anyone's; the one past
	// it is refused. After the teardown none is left.
	seen := 0
	for _, p := range flood {
		if a.everSeen(p) {
			seen++
		}
	}
	if seen > int(pr.peerB.MaxPrefixes) {
		t.Errorf("A announced %d of B's flood prefixes, limit %d: a prefix past the limit got through", seen, pr.peerB.MaxPrefixes)
	}
	eventually(t, waitLong, "B's prefixes gone after the teardown", func() error {
		for _, p := range flood {
			if _, ok := a.table()[p]; ok {
				return fmt.Errorf("%s still in A's table", p)
			}
		}
		return nil
	})
	return pr, st
}

func TestMaxPrefixes(t *testing.T) {
	pr, st := maxPrefixSetup(t)
	if !strings.Contains(st.Info, "5") {
		t.Errorf("Info %q does not name the limit", st.Info)
	}
	mC := pr.a.markSession(addrC)
	// C is within its limit and must be unaffected by B's teardown; A
	// keeps answering.
	consistently(t, 2*time.Second, "C stays up", func() error {
		st, err := pr.a.status(addrC)
		if err != nil {
			return err
		}
		if st.State != "Established" {
			return fmt.Errorf("C is %s", st.State)
		}
		return nil
	})
	pr.a.sameSession(addrC, mC, "B's max-prefix teardown")
	if got := pr.a.table(); len(got) != 2 {
		t.Errorf("A's table = %v, want only C's two prefixes", got)
	}
}

// After a max-prefix teardown the peer is kept out for Config.MaxPrefixHold
// (so it cannot flood again at once) and then retried (so a peer that
// leaked routes once is not lost until the daemon restarts); the log line
// promises "retry_after". Here B stops flooding while it is held down, so
// the retried session must come up and stay.
func TestMaxPrefixHoldThenRetry(t *testing.T) {
	pr, _ := maxPrefixSetup(t)
	tornDown := time.Now()
	mark := pr.a.eventCount()
	calm := mustPrefixes("10.244.100.0/24", "10.244.101.0/24", "10.244.102.0/24")
	pr.b.setOriginated(calm...)

	established := func() bool {
		return slices.Contains(pr.a.stateChangesSince(mark, addrB), "Established")
	}
	hold := testMaxPrefixHold * 9 / 10
	consistently(t, hold, fmt.Sprintf("B must stay down for at least %v after a max-prefix teardown", hold), func() error {
		if established() {
			return fmt.Errorf("B is Established again; state changes since teardown: %v", pr.a.stateChangesSince(mark, addrB))
		}
		return nil
	})
	// GoBGP adds its own idle hold (5 s) before it connects again.
	retryBy := testMaxPrefixHold + 15*time.Second
	eventually(t, retryBy-time.Since(tornDown), fmt.Sprintf("B retried within %v of the teardown", retryBy), func() error {
		if !established() {
			return fmt.Errorf("B still down: %v", pr.a.stateChangesSince(mark, addrB))
		}
		return nil
	})
	eventually(t, waitLong, "A learns B's remaining prefixes", func() error {
		got := pr.a.table()
		for _, p := range calm {
			if !slices.Equal(got[p], []netip.Addr{addrB}) {
				return fmt.Errorf("%s via %v", p, got[p])
			}
		}
		return nil
	})
}

// Lowering a peer's limit below what it already sent is applied in place
// and "enforced at once" (peers.go): GoBGP checks the count inside
// UpdatePeer and logs the teardown from its server goroutine, which calls
// the speaker's max-prefix hook while SetPeers still holds the speaker's
// lock and waits for UpdatePeer. SetPeers must return, and the speaker
// must stay usable.
func TestLoweringMaxPrefixesBelowCurrentCount(t *testing.T) {
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA}, floodPrefixes(10))
	eventually(t, waitLong, "A learns B's ten prefixes", func() error {
		if got := len(pr.a.table()); got != 10 {
			return fmt.Errorf("%d prefixes", got)
		}
		return nil
	})
	peerB := pr.peerB
	peerB.MaxPrefixes = 5
	done := make(chan error, 1)
	go func() { done <- pr.a.sp.SetPeers(context.Background(), []Peer{peerB}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("SetPeers: %v", err)
		}
	case <-time.After(10 * time.Second):
		// A's speaker is wedged: its cleanup would block forever too.
		pr.a.wedged.Store(true)
		t.Fatal("SetPeers lowering MaxPrefixes below the received count has not returned after 10 s (deadlock)")
	}
	eventually(t, waitLong, "B torn down for max-prefix", func() error {
		st, err := pr.a.status(addrB)
		if err != nil {
			return err
		}
		if st.State == "Established" || !strings.Contains(st.Info, "max-prefix") {
			return fmt.Errorf("state %s info %q", st.State, st.Info)
		}
		return nil
	})
}

// GoBGP runs the global import policy over locally originated paths too
// (AddPath). A node's pod CIDR that is not inside the import pools must
// still be advertised: export is "our own prefixes", not "our own
// prefixes that we would also accept from a peer".
func TestOriginatedOutsidePoolsIsAdvertised(t *testing.T) {
	extra := netip.MustParsePrefix("10.250.7.0/24")
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA, extra}, nil)
	eventually(t, waitLong, "B learns both of A's prefixes", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA, extra))
	})
}

func TestSynced(t *testing.T) {
	// The daemon starts the speaker and only then configures the peers.
	// Synced is what tells it that the table has been re-learned (and
	// stale kernel routes may go), so it must not close in between.
	t.Run("waits for the peer set", func(t *testing.T) {
		a, _ := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: addrA, policy: Policy{PodPools: podPools}})
		select {
		case <-a.sp.Synced():
			t.Error("Synced closed after Start, before any SetPeers")
		case <-time.After(time.Second):
		}
		// An empty peer set is a known peer set: nothing to wait for.
		a.setPeers()
		select {
		case <-a.sp.Synced():
		case <-time.After(waitLong):
			t.Fatal("Synced not closed with an empty peer set")
		}
	})

	t.Run("all peers", func(t *testing.T) {
		a, portA := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: addrA, policy: Policy{PodPools: podPools}, originated: []netip.Prefix{ownA}})
		b, _ := startNode(t, nodeSpec{name: "B", asn: asnB, routerID: "10.0.0.2", policy: routerPolicy, originated: mustPrefixes("10.244.2.0/24")})
		c, _ := startNode(t, nodeSpec{name: "C", asn: asnC, routerID: "10.0.0.3", policy: routerPolicy, originated: mustPrefixes("10.244.3.0/24")})
		b.setPeers(testPeer(addrA, addrB, asnA, portA, false))
		c.setPeers(testPeer(addrA, addrC, asnA, portA, false))
		// Both peers in one call, so that Synced cannot legitimately
		// close on B's End-of-RIB alone.
		a.setPeers(testPeer(addrB, addrA, asnB, 0, true), testPeer(addrC, addrA, asnC, 0, true))
		select {
		case <-a.sp.Synced():
		case <-time.After(waitLong):
			t.Fatal("Synced not closed after both peers came up")
		}
		// Synced means the table is learned: both prefixes must be in
		// GoBGP's table by now.
		got, err := a.globalRIB(api.Family_AFI_IP)
		if err != nil {
			t.Fatal(err)
		}
		want := via(addrB, netip.MustParsePrefix("10.244.2.0/24"))
		want[netip.MustParsePrefix("10.244.3.0/24")] = []netip.Addr{addrC}
		if err := tableEqual(got, want); err != nil {
			t.Errorf("Synced closed before the table was learned: %v", err)
		}
	})

	t.Run("a peer that never comes up", func(t *testing.T) {
		a, portA := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: addrA, policy: Policy{PodPools: podPools}, originated: []netip.Prefix{ownA}})
		b, _ := startNode(t, nodeSpec{name: "B", asn: asnB, routerID: "10.0.0.2", policy: routerPolicy})
		b.setPeers(testPeer(addrA, addrB, asnA, portA, false))
		peerB := testPeer(addrB, addrA, asnB, 0, true)
		// Nobody runs a speaker at addrNobody; A dials it in vain.
		a.setPeers(peerB, testPeer(addrNobody, addrA, 65099, 179, false))
		a.waitEstablished(addrB)
		// Make sure B's End-of-RIB is in, so that only the dead peer can
		// be what holds Synced back.
		eventually(t, waitLong, "B's End-of-RIB", func() error {
			a.sp.mu.Lock()
			defer a.sp.mu.Unlock()
			if l := a.sp.peerState[addrB]; l == nil || !l.eor {
				return fmt.Errorf("not yet")
			}
			return nil
		})
		select {
		case <-a.sp.Synced():
			t.Fatalf("Synced closed although peer %s never came up", addrNobody)
		case <-time.After(2 * time.Second):
		}
		// Unconfiguring the dead peer leaves only synced peers.
		a.setPeers(peerB)
		select {
		case <-a.sp.Synced():
		case <-time.After(waitLong):
			t.Fatal("Synced not closed after the dead peer was removed")
		}
	})
}

func TestMultipath(t *testing.T) {
	shared := netip.MustParsePrefix("10.244.5.0/24")
	// B and C are in different ASes; GoBGP's multipath only needs equal
	// local preference, AS path length, origin and MED.
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA}, []netip.Prefix{shared})
	_, peerC := addC(t, pr.portA, routerPolicy, []netip.Prefix{shared})
	pr.a.setPeers(pr.peerB, peerC)

	both := map[netip.Prefix][]netip.Addr{shared: {addrB, addrC}}
	eventually(t, waitLong, "A has both next hops", func() error { return tableEqual(pr.a.table(), both) })

	mark := pr.a.histLen()
	pr.b.setOriginated()
	eventually(t, waitLong, "A keeps only C", func() error { return tableEqual(pr.a.table(), via(addrC, shared)) })
	// The change must be a replacement, never a delete followed by an
	// add: that would blackhole the prefix in between.
	for _, u := range pr.a.updatesSince(mark, shared) {
		if len(u.NextHops) == 0 {
			t.Errorf("transient withdrawal of %s while C still had it: %v", shared, pr.a.updatesSince(mark, shared))
			break
		}
	}
}

// When this node starts originating a prefix it had learned from a peer
// (a pod CIDR handed over from another node), the peer's route must go:
// import now rejects it as our own, and the consumer of Updates() must be
// told, or it keeps a kernel route for our own pod CIDR via the peer.
func TestOriginatingLearnedPrefixWithdrawsPeerRoute(t *testing.T) {
	moved := netip.MustParsePrefix("10.244.2.0/24")
	pr := startPair(t, Policy{PodPools: podPools}, routerPolicy, []netip.Prefix{ownA}, []netip.Prefix{moved})
	eventually(t, waitLong, "A learns the prefix from B", func() error { return tableEqual(pr.a.table(), via(addrB, moved)) })

	pr.a.setOriginated(ownA, moved)
	// GoBGP's own table: B's path for our prefix is gone (import now
	// rejects it as own) and only our local path is left.
	eventually(t, waitLong, "B's path leaves GoBGP's table", func() error {
		got, err := pr.a.globalRIB(api.Family_AFI_IP)
		if err != nil {
			return err
		}
		return tableEqual(got, map[netip.Prefix][]netip.Addr{})
	})
	eventually(t, waitLong, "Updates() drops the peer route for our own prefix", func() error {
		return tableEqual(pr.a.table(), map[netip.Prefix][]netip.Addr{})
	})
}

// PeerStatus.Advertised is shown to operators as "prefixes sent".
func TestPeerStatusAdvertised(t *testing.T) {
	pr := startPair(t, Policy{PodPools: podPools}, Policy{PodPools: podPools}, []netip.Prefix{ownA}, nil)
	eventually(t, waitLong, "B learns A's prefix", func() error { return tableEqual(pr.b.table(), via(addrA, ownA)) })
	st, err := pr.a.status(addrB)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := pr.b.status(addrA)
	if err != nil {
		t.Fatal(err)
	}
	if st.Advertised != bs.Received || st.Advertised != 1 {
		t.Errorf("A says it advertised %d to B; B received %d; A originates 1", st.Advertised, bs.Received)
	}
}

// A graceful stop (podrouted on SIGTERM with graceful restart on) is
// Stop(true) followed by the end of the process: the kernel closes the
// TCP connection without a NOTIFICATION, and a graceful-restart helper
// (A) keeps the stopped speaker's (B's) routes for its restart time (10 s
// here). B runs in a child process so that it can really exit.
func TestGracefulStopKeepsRoutesAtHelper(t *testing.T) {
	if port := os.Getenv("PODROUTE_BGP_GRACEFUL_CHILD"); port != "" {
		runGracefulChild(t, port)
		return
	}
	p := netip.MustParsePrefix("10.244.2.0/24")
	a, portA := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", listen: addrA, policy: Policy{PodPools: podPools}, originated: []netip.Prefix{ownA}})
	a.setPeers(testPeer(addrB, addrA, asnB, 0, true))

	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PODROUTE_BGP_GRACEFUL_CHILD="+strconv.Itoa(int(portA)))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	eventually(t, waitLong, "A learns B's prefix", func() error { return tableEqual(a.table(), via(addrB, p)) })
	mark := a.histLen()

	// Closing stdin tells the child to stop gracefully and exit.
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child B: %v\n%s", err, out.String())
	}
	eventually(t, waitLong, "A notices B is gone", func() error {
		st, err := a.status(addrB)
		if err != nil {
			return err
		}
		if st.State == "Established" {
			return fmt.Errorf("B still Established after it exited")
		}
		return nil
	})
	consistently(t, 3*time.Second, "A keeps B's route while B restarts", func() error {
		if ups := a.updatesSince(mark, p); len(ups) > 0 {
			return fmt.Errorf("A changed B's route: %v", ups)
		}
		return nil
	})
}

// runGracefulChild is speaker B of TestGracefulStopKeepsRoutesAtHelper:
// it peers with A, originates its prefix, and when stdin closes does what
// podrouted does on SIGTERM: Stop(true), then exit.
func runGracefulChild(t *testing.T, portA string) {
	port, err := strconv.Atoi(portA)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := New(Config{ASN: asnB, RouterID: netip.MustParseAddr("10.0.0.2"), RestartTime: 10 * time.Second, Multipath: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.SetPolicy(context.Background(), Policy{PodPools: podPools}); err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetOriginated(context.Background(), []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	if err := sp.SetPeers(context.Background(), []Peer{testPeer(addrA, addrB, asnA, int32(port), false)}); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	sp.Stop(true)
	os.Exit(0)
}

// A speaker started before any policy input is known (what New + Start
// does) must come up. Run in a child process: GoBGP answers a policy it
// cannot load with its logger's Fatal, which exits the process.
func TestStartWithEmptyPolicy(t *testing.T) {
	if os.Getenv("PODROUTE_BGP_CHILD") == t.Name() {
		sp, err := New(Config{ASN: asnA, RouterID: netip.MustParseAddr("10.0.0.1"),
			Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
		if err != nil {
			t.Fatal(err)
		}
		if err := sp.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		sp.Stop(false)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PODROUTE_BGP_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("New + Start with no policy inputs: child process failed (%v):\n%s", err, out)
	}
}

// The daemon sets the policy before it starts the speaker. That must
// either work or fail, but not block forever (GoBGP's management calls
// wait for its server loop, which Start starts); the same goes for the
// other setters.
func TestSettersBeforeStart(t *testing.T) {
	sp, err := New(Config{ASN: asnA, RouterID: netip.MustParseAddr("10.0.0.1"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	returns := func(what string, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			// The goroutine stays blocked; nothing else in this
			// process uses this speaker.
			t.Fatalf("%s before Start has not returned after 5 s", what)
			return nil
		}
	}
	ctx := context.Background()
	if err := returns("SetPolicy", func() error { return sp.SetPolicy(ctx, Policy{PodPools: podPools}) }); err != nil {
		t.Fatalf("SetPolicy before Start: %v", err)
	}
	_ = returns("SetOriginated", func() error { return sp.SetOriginated(ctx, []netip.Prefix{ownA}) })
	_ = returns("SetPeers", func() error { return sp.SetPeers(ctx, nil) })

	// The recorded policy is what Start pushes.
	if err := sp.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Stop(false); sp.Server().Stop() })
	var pools []string
	err = sp.Server().ListDefinedSet(ctx, &api.ListDefinedSetRequest{DefinedType: api.DefinedType_DEFINED_TYPE_PREFIX, Name: "podroute-pools-v4"},
		func(ds *api.DefinedSet) {
			for _, p := range ds.Prefixes {
				pools = append(pools, p.IpPrefix)
			}
		})
	if err != nil || !slices.Equal(pools, []string{"10.244.0.0/16"}) {
		t.Errorf("after SetPolicy then Start, GoBGP's v4 pool set = %v (%v), want [10.244.0.0/16]", pools, err)
	}
}

// Advertisements (Service prefixes) are exported beside the pod CIDRs,
// with their communities, and withdrawn when they leave the set; one
// that names the node's own pod CIDR is refused.
func TestAdvertisementsWithCommunities(t *testing.T) {
	svc := netip.MustParsePrefix("10.96.0.0/16")
	lb := netip.MustParsePrefix("192.0.2.10/32")
	// B accepts the pools and the service ranges.
	polB := Policy{PodPools: mustPrefixes("10.244.0.0/16", "10.96.0.0/16", "192.0.2.0/24")}
	pr := startPair(t, Policy{PodPools: podPools}, polB, []netip.Prefix{ownA}, nil)
	pr.a.waitEstablished(addrB)
	advs := []Advertisement{
		{Prefix: svc, Communities: []uint32{65001<<16 | 100}},
		{Prefix: lb, LargeCommunities: [][3]uint32{{65001, 1, 2}}},
	}
	resets := func() int {
		pr.a.sp.mu.Lock()
		defer pr.a.sp.mu.Unlock()
		return pr.a.sp.softResets
	}
	resetsBefore := resets()
	if err := pr.a.sp.SetAdvertisements(context.Background(), advs); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "B learns A's pod CIDR and both advertisements", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA, svc, lb))
	})
	// The communities arrive with the paths.
	comms := map[netip.Prefix]string{}
	err := pr.b.sp.Server().ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gobgp.RF_IPv4_UC},
		func(_ gobgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				pfx, _ := pathPrefix(p)
				for _, a := range p.Attrs {
					switch a := a.(type) {
					case *gobgp.PathAttributeCommunities:
						comms[pfx] += fmt.Sprint(a.Value)
					case *gobgp.PathAttributeLargeCommunities:
						for _, c := range a.Values {
							comms[pfx] += fmt.Sprintf("%d:%d:%d", c.ASN, c.LocalData1, c.LocalData2)
						}
					}
				}
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	if comms[svc] != fmt.Sprint([]uint32{65001<<16 | 100}) || comms[lb] != "65001:1:2" || comms[ownA] != "" {
		t.Errorf("communities on B = %v", comms)
	}
	// One withdrawn, and the pod CIDR refused as an advertisement.
	err = pr.a.sp.SetAdvertisements(context.Background(), []Advertisement{advs[0], {Prefix: ownA}})
	if err == nil || !strings.Contains(err.Error(), "pod CIDR") {
		t.Errorf("advertising the pod CIDR: err %v, want a refusal", err)
	}
	eventually(t, waitLong, "B drops the withdrawn advertisement", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA, svc))
	})
	if got := pr.a.sp.Advertisements(); len(got) != 1 || got[0].Prefix != svc {
		t.Errorf("Advertisements() = %v, want only %s", got, svc)
	}
	// Service prefixes come and go with endpoints: that must never make
	// GoBGP re-run every peer's table (a soft reset), only send the one
	// prefix. The export set is widened before a path is added.
	if err := pr.a.sp.SetAdvertisements(context.Background(), advs); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "B learns the advertisement added back", func() error {
		return tableEqual(pr.b.table(), via(addrA, ownA, svc, lb))
	})
	if n := resets() - resetsBefore; n != 0 {
		t.Errorf("advertisement changes caused %d soft resets of every peer, want 0", n)
	}
	// A policy change proper still re-evaluates what peers sent.
	if err := pr.a.sp.SetPolicy(context.Background(), Policy{PodPools: mustPrefixes("10.244.0.0/16", "10.245.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	if n := resets() - resetsBefore; n != 1 {
		t.Errorf("a pod pool change caused %d soft resets, want 1", n)
	}
}

// A session lost to a peer without graceful restart (GoBGP has dropped its
// routes) is re-created and reconnects at once, not after GoBGP's fixed
// 5 s idle hold. Here B listens and A dials; B is stopped (its NOTIFICATION
// ends the session) and started again on the same address and port.
func TestFastReconnect(t *testing.T) {
	polB := routerPolicy
	b, portB := startNode(t, nodeSpec{name: "B", asn: asnB, routerID: "10.0.0.2", listen: addrB, policy: polB, originated: mustPrefixes("10.244.2.0/24")})
	a, _ := startNode(t, nodeSpec{name: "A", asn: asnA, routerID: "10.0.0.1", policy: Policy{PodPools: podPools}, originated: []netip.Prefix{ownA}})
	noGR := func(p Peer) Peer { p.GracefulRestart = false; return p }
	b.setPeers(noGR(testPeer(addrA, addrB, asnA, 0, true)))
	a.setPeers(noGR(testPeer(addrB, addrA, asnB, portB, false)))
	a.waitEstablished(addrB)

	// B goes away with a NOTIFICATION and comes back 0.5 s later on the
	// same port.
	b.sp.Stop(false)
	b.sp.Server().Stop()
	lost := time.Now()
	time.Sleep(500 * time.Millisecond)
	b2 := restartNodeOnPort(t, nodeSpec{name: "B2", asn: asnB, routerID: "10.0.0.2", listen: addrB, policy: polB, originated: mustPrefixes("10.244.2.0/24")}, portB)
	b2.setPeers(noGR(testPeer(addrA, addrB, asnA, 0, true)))
	eventually(t, waitLong, "A back up with B", func() error {
		st, err := a.status(addrB)
		if err != nil {
			return err
		}
		if st.State != "Established" || !st.StateSince.After(lost) {
			return fmt.Errorf("state %s since %v", st.State, st.StateSince)
		}
		return nil
	})
	st, _ := a.status(addrB)
	took := st.StateSince.Sub(lost)
	t.Logf("session back %v after B's NOTIFICATION (B listening again after 0.5 s)", took.Round(time.Millisecond))
	// GoBGP alone: 5 s idle, then the first attempt 1.5-2 s later.
	if took > 4500*time.Millisecond {
		t.Errorf("session back after %v; a fast reconnect would have it within about 2.5 s, GoBGP's own pace takes over 6.5 s", took)
	}
}

// restartNodeOnPort is startNode for a node that must listen on a given
// port again (a restarted router).
func restartNodeOnPort(t *testing.T, spec nodeSpec, port int32) *node {
	t.Helper()
	logs := &lockedBuffer{}
	sp, err := New(Config{ASN: spec.asn, RouterID: netip.MustParseAddr(spec.routerID), RestartTime: 10 * time.Second, Multipath: true,
		ListenAddresses: []netip.Addr{spec.listen}, ListenPort: port,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.SetPolicy(context.Background(), spec.policy); err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(context.Background()); err != nil {
		t.Fatalf("%s: Start on port %d again: %v", spec.name, port, err)
	}
	n := &node{t: t, name: spec.name, sp: sp, logs: logs, rib: map[netip.Prefix][]netip.Addr{}}
	t.Cleanup(func() {
		n.quiesce()
		sp.Stop(false)
		sp.Server().Stop()
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", spec.name, logs.String())
		}
	})
	if err := sp.SetOriginated(context.Background(), spec.originated); err != nil {
		t.Fatal(err)
	}
	return n
}
