package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/types/known/anypb"
)

// Speaker runs GoBGP in-process and applies podroute's desired state to
// it. All methods are safe for concurrent use.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv *server.BgpServer

	updates chan []RouteUpdate
	synced  chan struct{}

	mu         sync.Mutex
	peers      map[netip.Addr]Peer // as applied to GoBGP
	peerState  map[netip.Addr]*peerLive
	originated map[netip.Prefix][]byte // prefix -> GoBGP path UUID
	policy     Policy
	applied    *policyInputs // last policy pushed to GoBGP
	isSynced   bool
	restarting bool // still in the first sync after a restart
	started    bool // GoBGP is serving; before that, setters only record

	stopWatch context.CancelFunc
}

// peerLive is what the event stream tells us about one peer.
type peerLive struct {
	state string
	since time.Time
	eor   bool // End-of-RIB seen since the session came up
	info  string
}

// GoBGPAPIOption serves GoBGP's own gRPC API at addr (for the gobgp
// CLI). Pass it to New; empty addr means no API.
func GoBGPAPIOption(addr string) server.ServerOption {
	return server.GrpcListenAddress(addr)
}

// New creates the speaker; Start starts it.
func New(cfg Config, opts ...server.ServerOption) (*Speaker, error) {
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: ASN must not be 0")
	}
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router ID %s is not an IPv4 address", cfg.RouterID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Speaker{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "bgp"),
		updates:    make(chan []RouteUpdate, 1024),
		synced:     make(chan struct{}),
		peers:      map[netip.Addr]Peer{},
		peerState:  map[netip.Addr]*peerLive{},
		originated: map[netip.Prefix][]byte{},
		restarting: cfg.Restarting,
	}
	adapter := &slogAdapter{log: s.log.With("source", "gobgp"), level: gobgplog.InfoLevel, onMaxPrefix: s.onMaxPrefix}
	if cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		adapter.level = gobgplog.DebugLevel
	}
	s.srv = server.NewBgpServer(append([]server.ServerOption{server.LoggerOption(adapter)}, opts...)...)
	return s, nil
}

// Server exposes the GoBGP server for callers that serve its API.
func (s *Speaker) Server() *server.BgpServer { return s.srv }

// Updates delivers best-path changes in batches, in order.
func (s *Speaker) Updates() <-chan []RouteUpdate { return s.updates }

// Synced is closed once every configured peer has sent End-of-RIB after
// start (immediately when there are no peers).
func (s *Speaker) Synced() <-chan struct{} { return s.synced }

// Start starts GoBGP with the global config and the event stream.
func (s *Speaker) Start(ctx context.Context) error {
	go s.srv.Serve()
	listen := s.cfg.ListenPort
	if listen == 0 {
		listen = -1 // GoBGP: do not listen
	}
	var addrs []string
	for _, a := range s.cfg.ListenAddresses {
		addrs = append(addrs, a.String())
	}
	global := &api.Global{
		Asn:              s.cfg.ASN,
		RouterId:         s.cfg.RouterID.String(),
		ListenPort:       listen,
		ListenAddresses:  addrs,
		UseMultiplePaths: s.cfg.Multipath,
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		s.srv.Stop()
		return fmt.Errorf("start BGP (AS %d, router ID %s, port %d): %w", s.cfg.ASN, s.cfg.RouterID, s.cfg.ListenPort, err)
	}
	s.mu.Lock()
	s.started = true
	err := s.applyPolicyLocked(ctx)
	s.mu.Unlock()
	if err != nil {
		s.srv.Stop()
		return err
	}
	for _, dir := range []api.PolicyDirection{api.PolicyDirection_IMPORT, api.PolicyDirection_EXPORT} {
		name := importPolicyName
		if dir == api.PolicyDirection_EXPORT {
			name = exportPolicyName
		}
		if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: dir, Policies: []*api.Policy{{Name: name}}, DefaultAction: api.RouteAction_REJECT,
		}}); err != nil {
			s.srv.Stop()
			return fmt.Errorf("assign %s policy: %w", name, err)
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	err = s.srv.WatchEvent(wctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, s.onEvent)
	if err != nil {
		cancel()
		s.srv.Stop()
		return fmt.Errorf("watch BGP events: %w", err)
	}
	// Synced is first judged in SetPeers: before the peer set is known,
	// "every peer sent End-of-RIB" would be vacuously true.
	return nil
}

// Stop ends the speaker.
//
// With graceful false, every session gets a Cease NOTIFICATION, so peers
// withdraw our routes at once, and GoBGP stops.
//
// With graceful true nothing is sent: GoBGP has no way to close a session
// without a NOTIFICATION, and a NOTIFICATION makes helpers without RFC 8538
// flush our routes. The caller must then end the process without calling
// anything else on the server: the kernel closes the TCP connections, as in
// a crash, and graceful-restart helpers keep our routes for the restart
// time while the next instance starts.
func (s *Speaker) Stop(graceful bool) {
	if s.stopWatch != nil {
		s.stopWatch()
	}
	if graceful {
		return
	}
	// StopBgp sends every peer its NOTIFICATION and waits for the
	// sessions to end. (Deleting the peers one by one first does not wait
	// for the NOTIFICATION to go out: a process exiting right after could
	// close the connections silently, and helpers would keep our routes.)
	if err := s.srv.StopBgp(context.Background(), &api.StopBgpRequest{}); err != nil {
		s.log.Warn("stop BGP", "err", err)
	}
	s.srv.Stop()
}

// SetPolicy replaces the import/export policy inputs. Called before
// Start, it only records them (GoBGP's management calls block until the
// server runs), and Start applies them.
func (s *Speaker) SetPolicy(ctx context.Context, p Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policy = p
	if !s.started {
		return nil
	}
	return s.applyPolicyLocked(ctx)
}

// applyPolicyLocked pushes the policies if their inputs changed and makes
// GoBGP re-evaluate what it already holds.
func (s *Speaker) applyPolicyLocked(ctx context.Context) error {
	in := policyInputs{policy: s.policy, own: s.ownLocked(), protected: s.protectedLocked()}
	if s.applied != nil && sameInputs(*s.applied, in) {
		return nil
	}
	if err := s.srv.SetPolicies(ctx, buildPolicies(in)); err != nil {
		return fmt.Errorf("set BGP policies: %w", err)
	}
	first := s.applied == nil
	transitOff := !first && s.applied.policy.Transit && !in.policy.Transit
	s.applied = &in
	if transitOff {
		// GoBGP v3.37's soft reset out does not withdraw routes the new
		// export policy rejects (fixed upstream after v3), so peers would
		// keep routes we no longer carry. Re-open the sessions instead;
		// this happens only when a node stops being a route reflector.
		for addr := range s.peers {
			if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Communication: "podroute: transit turned off"}); err != nil {
				return fmt.Errorf("reset peer %s after turning transit off: %w", addr, err)
			}
		}
		return nil
	}
	if !first && len(s.peers) > 0 {
		// Re-run import over the stored Adj-RIB-In and export over our
		// best paths; no session is reset.
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_BOTH}); err != nil {
			return fmt.Errorf("re-apply BGP policies: %w", err)
		}
	}
	return nil
}

func (s *Speaker) ownLocked() []netip.Prefix {
	own := make([]netip.Prefix, 0, len(s.originated))
	for p := range s.originated {
		own = append(own, p)
	}
	slices.SortFunc(own, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return own
}

func (s *Speaker) protectedLocked() []netip.Addr {
	set := map[netip.Addr]bool{}
	for _, a := range s.policy.ProtectedAddrs {
		set[a] = true
	}
	for _, p := range s.peers {
		set[p.Address] = true
		if p.LocalAddress.IsValid() {
			set[p.LocalAddress] = true
		}
	}
	out := make([]netip.Addr, 0, len(set))
	for a := range set {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// SetOriginated makes prefixes the complete set this node advertises.
func (s *Speaker) SetOriginated(ctx context.Context, prefixes []netip.Prefix) error {
	want := map[netip.Prefix]bool{}
	for _, p := range prefixes {
		want[p.Masked()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return errors.New("bgp: SetOriginated called before Start")
	}
	var errs []error
	for p := range want {
		if _, ok := s.originated[p]; ok {
			continue
		}
		resp, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: originPath(p)})
		if err != nil {
			errs = append(errs, fmt.Errorf("originate %s: %w", p, err))
			continue
		}
		s.originated[p] = resp.Uuid
	}
	for p, uuid := range s.originated {
		if want[p] {
			continue
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: uuid}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(s.originated, p)
	}
	// Our own prefixes feed both the export and the anti-hijack import
	// policy.
	if err := s.applyPolicyLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// originPath is a locally originated path for p with next hop self
// (GoBGP fills in the session's local address for an unspecified one).
func originPath(p netip.Prefix) *api.Path {
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	if p.Addr().Is4() {
		nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "0.0.0.0"})
		return &api.Path{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
			Nlri:   nlri, Pattrs: []*anypb.Any{origin, nh},
		}
	}
	fam := &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	mp, _ := anypb.New(&api.MpReachNLRIAttribute{Family: fam, NextHops: []string{"::"}, Nlris: []*anypb.Any{nlri}})
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: []*anypb.Any{origin, mp}}
}

// SetPeers makes peers the complete peer set. Peers whose config did not
// change are not touched; a changed peer is updated in place when GoBGP
// can, re-created otherwise; other sessions are never affected.
func (s *Speaker) SetPeers(ctx context.Context, peers []Peer) error {
	desired := make(map[netip.Addr]Peer, len(peers))
	for _, p := range peers {
		if _, dup := desired[p.Address]; dup {
			return fmt.Errorf("peer %s is listed twice", p.Address)
		}
		desired[p.Address] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return errors.New("bgp: SetPeers called before Start")
	}
	plan := diffPeers(s.peers, desired)
	var errs []error
	for _, p := range plan.remove {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("remove peer %s: %w", p.Address, err))
			continue
		}
		delete(s.peers, p.Address)
		delete(s.peerState, p.Address)
		s.log.Info("peer removed", "peer", p.Address)
	}
	for _, p := range plan.recreate {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("re-create peer %s: %w", p.Address, err))
			continue
		}
		delete(s.peers, p.Address)
		plan.add = append(plan.add, p)
	}
	for _, p := range plan.update {
		if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: toAPIPeer(p, s.cfg.RestartTime, false)}); err != nil {
			errs = append(errs, fmt.Errorf("update peer %s: %w", p.Address, err))
			continue
		}
		s.peers[p.Address] = p
		s.log.Info("peer updated in place", "peer", p.Address)
	}
	for _, p := range plan.add {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: toAPIPeer(p, s.cfg.RestartTime, s.restarting)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s (AS %d): %w", p.Address, p.ASN, err))
			continue
		}
		s.peers[p.Address] = p
		if _, ok := s.peerState[p.Address]; !ok {
			s.peerState[p.Address] = &peerLive{state: "Idle", since: time.Now()}
		}
		s.log.Info("peer added", "peer", p.Address, "asn", p.ASN, "max_prefixes", p.MaxPrefixes, "graceful_restart", p.GracefulRestart)
	}
	if err := s.applyPolicyLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	s.checkSyncedLocked()
	return errors.Join(errs...)
}

// onMaxPrefix is called from GoBGP's logger, on GoBGP's own goroutine,
// when a peer exceeded its limit and GoBGP tears the session down. GoBGP
// may be inside a management call we made while holding s.mu (UpdatePeer
// enforcing a lowered limit), so nothing here may wait for s.mu: the
// bookkeeping runs on a goroutine of its own.
func (s *Speaker) onMaxPrefix(key string) {
	addr, err := netip.ParseAddr(key)
	if err != nil {
		return
	}
	go func() {
		s.mu.Lock()
		p, ok := s.peers[addr]
		if live := s.peerState[addr]; live != nil {
			live.info = fmt.Sprintf("max-prefix limit %d exceeded; session torn down, retrying in %v", p.MaxPrefixes, idleHoldAfterReset)
		}
		s.mu.Unlock()
		if !ok {
			return
		}
		s.log.Error("peer sent more prefixes than its limit; tearing that session down",
			"peer", addr, "asn", p.ASN, "max_prefixes", p.MaxPrefixes, "retry_after", idleHoldAfterReset)
		// GoBGP leaves such a peer administratively down for good; give it
		// another chance later, so a peer that fixed its table recovers
		// by itself, while one that keeps flooding is held off.
		time.AfterFunc(idleHoldAfterReset, func() {
			s.mu.Lock()
			_, still := s.peers[addr]
			s.mu.Unlock()
			if !still {
				return
			}
			if err := s.srv.EnablePeer(context.Background(), &api.EnablePeerRequest{Address: addr.String()}); err != nil {
				s.log.Warn("re-enable peer after max-prefix hold", "peer", addr, "err", err)
			}
		})
	}()
}
