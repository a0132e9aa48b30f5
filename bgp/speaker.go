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

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Speaker runs GoBGP in-process and applies podroute's desired state to
// it. All methods are safe for concurrent use.
type Speaker struct {
	cfg Config
	log *slog.Logger
	srv *server.BgpServer

	// rib mirrors the paths GoBGP uses per prefix and hands changes to
	// Updates, and enforces the peers' prefix limits (limits.go).
	rib *ribView

	mu         sync.Mutex
	peers      map[netip.Addr]Peer // as applied to GoBGP
	peerState  map[netip.Addr]*peerLive
	originated map[netip.Prefix]*apiutil.Path
	advertised map[netip.Prefix]advertised
	policy     Policy
	applied    *policyInputs // last policy pushed to GoBGP
	// softResets counts the re-evaluations of every peer's table that
	// policy changes caused (tests check advertisements cause none).
	softResets int
	isSynced   bool
	restarting bool // still in the first sync after a restart
	started    bool // GoBGP is serving; before that, setters only record

	stopWatch context.CancelFunc
	stopLimit context.CancelFunc
	// setHeld re-creates a peer in GoBGP administratively down (held) or
	// up again (released); see holdOffLocked. s.mu must be held. A test
	// replaces it.
	setHeld func(p Peer, held bool) error
}

// advertised is an Advertisement as given to GoBGP.
type advertised struct {
	adv  Advertisement
	path *apiutil.Path
}

// peerLive is what the event stream tells us about one peer.
type peerLive struct {
	state string
	since time.Time
	eor   bool // End-of-RIB seen since the session came up
	// everUp: the session has been Established at least once.
	everUp bool
	// retains: in the current session both sides negotiated graceful
	// restart for the peer's family, so GoBGP keeps the peer's routes
	// (stale) when the session is lost.
	retains bool
	// lastFast is when the peer was last re-created to reconnect fast.
	lastFast time.Time
	info     string
	// holdOff re-enables a peer torn down for exceeding its prefix limit;
	// one teardown starts one timer, replacing any earlier one.
	holdOff *time.Timer
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
	if cfg.MaxPrefixHold <= 0 {
		cfg.MaxPrefixHold = defaultMaxPrefixHold
	}
	log := cfg.Logger.With("component", "bgp")
	s := &Speaker{
		cfg:        cfg,
		log:        log,
		rib:        newRIBView(log, cfg.Multipath),
		peers:      map[netip.Addr]Peer{},
		peerState:  map[netip.Addr]*peerLive{},
		originated: map[netip.Prefix]*apiutil.Path{},
		advertised: map[netip.Prefix]advertised{},
		restarting: cfg.Restarting,
	}
	// GoBGP logs through the daemon's own slog handler, so there is one
	// stream with one format. Its debug output is per message; it is
	// enabled only when the daemon runs at debug level.
	level := new(slog.LevelVar)
	level.Set(slog.LevelInfo)
	if cfg.Logger.Enabled(context.Background(), slog.LevelDebug) {
		level.Set(slog.LevelDebug)
	}
	gobgpLog := slog.New(levelFilter{cfg.Logger.With("source", "gobgp").Handler(), level})
	s.srv = server.NewBgpServer(append([]server.ServerOption{server.LoggerOption(gobgpLog, level)}, opts...)...)
	s.setHeld = s.setHeldLocked
	return s, nil
}

// Server exposes the GoBGP server for callers that serve its API.
func (s *Speaker) Server() *server.BgpServer { return s.srv }

// Updates delivers best-path changes in batches, in order. A prefix that
// changed several times while the consumer was busy appears once, with its
// latest next hops.
func (s *Speaker) Updates() <-chan []RouteUpdate { return s.rib.updates }

// Synced is closed once every configured peer has sent End-of-RIB after
// start (immediately when there are no peers), and only after every route
// learned before those End-of-RIBs has been delivered on Updates.
func (s *Speaker) Synced() <-chan struct{} { return s.rib.synced }

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
	for _, dir := range []api.PolicyDirection{api.PolicyDirection_POLICY_DIRECTION_IMPORT, api.PolicyDirection_POLICY_DIRECTION_EXPORT} {
		name := importPolicyName
		if dir == api.PolicyDirection_POLICY_DIRECTION_EXPORT {
			name = exportPolicyName
		}
		if err := s.srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Name: "global", Direction: dir, Policies: []*api.Policy{{Name: name}}, DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
		}}); err != nil {
			s.srv.Stop()
			return fmt.Errorf("assign %s policy: %w", name, err)
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.stopWatch = cancel
	go s.rib.forward(wctx)
	// One watcher for everything, so that events arrive in the order GoBGP
	// produced them: a peer's routes before its End-of-RIB.
	err = s.srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnBestPath:   s.onBestPath,
		OnPathEor:    s.onEOR,
		OnPeerUpdate: s.onPeerEvent,
	}, server.WatchBestPath(true), server.WatchEor(false), server.WatchPeer())
	if err != nil {
		cancel()
		s.srv.Stop()
		return fmt.Errorf("watch BGP events: %w", err)
	}
	lctx, lcancel := context.WithCancel(context.Background())
	s.stopLimit = lcancel
	go s.guardLimits(lctx)
	// Synced is first judged in SetPeers: before the peer set is known,
	// "every peer sent End-of-RIB" would be vacuously true.
	return nil
}

// Stop ends the speaker.
//
// With graceful false, every session gets a Cease NOTIFICATION, so peers
// withdraw our routes at once, and GoBGP stops.
//
// With graceful true nothing is sent: a NOTIFICATION makes helpers without
// RFC 8538 flush our routes. The caller must then end the process without
// calling anything else on the server: the kernel closes the TCP
// connections, as in a crash, and graceful-restart helpers keep our routes
// for the restart time while the next instance starts.
func (s *Speaker) Stop(graceful bool) {
	if s.stopWatch != nil {
		s.stopWatch()
	}
	if s.stopLimit != nil {
		s.stopLimit()
	}
	s.mu.Lock()
	for _, live := range s.peerState {
		if live.holdOff != nil {
			live.holdOff.Stop()
		}
	}
	s.mu.Unlock()
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
	return s.applyPolicyWithLocked(ctx, s.advertisedPrefixesLocked())
}

// applyPolicyWithLocked is applyPolicyLocked with svc as the advertised
// prefixes the export policy lets through.
func (s *Speaker) applyPolicyWithLocked(ctx context.Context, svc []netip.Prefix) error {
	in := policyInputs{policy: s.policy, own: s.ownLocked(), svc: svc, protected: s.protectedLocked()}
	if s.applied != nil && sameInputs(*s.applied, in) {
		return nil
	}
	if err := s.srv.SetPolicies(ctx, buildPolicies(in)); err != nil {
		return fmt.Errorf("set BGP policies: %w", err)
	}
	first := s.applied == nil
	prev := s.applied
	s.applied = &in
	// A change of the advertised prefixes alone needs no re-evaluation:
	// SetAdvertisements widens the export set before it adds a path and
	// narrows it only after the path is gone, so no existing path's
	// outcome changes. Re-running every peer's table for each Service
	// endpoint that comes or goes would cost a walk of the whole table
	// per event.
	if !first && len(s.peers) > 0 && !sameInputsButSvc(*prev, in) {
		s.softResets++
		// Re-run import over the stored Adj-RIB-In and export over our
		// best paths; no session is reset. GoBGP v4 withdraws from a peer
		// what the new export policy no longer lets through (transit
		// turned off), so no session needs re-opening for that either.
		if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: "all", Soft: true, Direction: api.ResetPeerRequest_DIRECTION_BOTH}); err != nil {
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
	slices.SortFunc(own, comparePrefixes)
	return own
}

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
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
		path, err := originPath(p)
		if err == nil {
			_, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("originate %s: %w", p, err))
			continue
		}
		s.originated[p] = path
	}
	for p, path := range s.originated {
		if want[p] {
			continue
		}
		// By path, not by the UUID AddPath returned: GoBGP resolves a
		// UUID by walking the whole table.
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(s.originated, p)
	}
	s.rib.setOwn(s.ownLocked())
	// Our own prefixes feed both the export and the anti-hijack import
	// policy.
	if err := s.applyPolicyLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetAdvertisements makes advs the complete set of prefixes this node
// originates besides its pod CIDRs (Services), each with its communities.
// An advertisement whose prefix is also a pod CIDR of this node is
// refused: one prefix has one origin.
func (s *Speaker) SetAdvertisements(ctx context.Context, advs []Advertisement) error {
	want := map[netip.Prefix]Advertisement{}
	var errs []error
	for _, a := range advs {
		a.Prefix = a.Prefix.Masked()
		if _, dup := want[a.Prefix]; dup {
			errs = append(errs, fmt.Errorf("advertisement %s is listed twice", a.Prefix))
			continue
		}
		want[a.Prefix] = a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return errors.New("bgp: SetAdvertisements called before Start")
	}
	// The export set first takes old and new prefixes, so that GoBGP
	// exports each new path as it is added (see applyPolicyWithLocked).
	widened := s.advertisedPrefixesLocked()
	for p := range want {
		if _, ok := s.advertised[p]; !ok {
			widened = append(widened, p)
		}
	}
	slices.SortFunc(widened, comparePrefixes)
	if err := s.applyPolicyWithLocked(ctx, widened); err != nil {
		return err
	}
	for p, have := range s.advertised {
		if a, ok := want[p]; ok && a.equal(have.adv) {
			continue
		}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{have.path}}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
			continue
		}
		delete(s.advertised, p)
	}
	for p, a := range want {
		if _, ok := s.advertised[p]; ok {
			continue
		}
		if _, own := s.originated[p]; own {
			errs = append(errs, fmt.Errorf("advertisement %s is this node's pod CIDR; not advertised twice", p))
			continue
		}
		path, err := advertisementPath(a)
		if err == nil {
			_, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("advertise %s: %w", p, err))
			continue
		}
		s.advertised[p] = advertised{adv: a, path: path}
	}
	if err := s.applyPolicyLocked(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Speaker) advertisedPrefixesLocked() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(s.advertised))
	for p := range s.advertised {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefixes)
	return out
}

// Advertisements lists what SetAdvertisements made this node originate.
func (s *Speaker) Advertisements() []Advertisement {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Advertisement, 0, len(s.advertised))
	for _, a := range s.advertised {
		out = append(out, a.adv)
	}
	slices.SortFunc(out, func(a, b Advertisement) int { return comparePrefixes(a.Prefix, b.Prefix) })
	return out
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
		if live := s.peerState[p.Address]; live != nil && live.holdOff != nil {
			live.holdOff.Stop()
		}
		delete(s.peerState, p.Address)
		s.rib.forgetSession(p.Address)
		s.rib.setLimit(p.Address, 0)
		s.log.Info("peer removed", "peer", p.Address)
	}
	for _, p := range plan.recreate {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
			errs = append(errs, fmt.Errorf("re-create peer %s: %w", p.Address, err))
			continue
		}
		delete(s.peers, p.Address)
		s.rib.forgetSession(p.Address)
		if live := s.peerState[p.Address]; live != nil {
			// The session is gone now, whatever GoBGP's events still
			// have to say about it.
			live.state, live.since, live.eor = "Idle", time.Now(), false
		}
		plan.add = append(plan.add, p)
	}
	for _, p := range plan.update {
		live := s.peerState[p.Address]
		held := live != nil && live.holdOff != nil
		if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: toAPIPeer(p, peerOptions{restartTime: s.cfg.RestartTime, adminDown: held})}); err != nil {
			errs = append(errs, fmt.Errorf("update peer %s: %w", p.Address, err))
			continue
		}
		s.peers[p.Address] = p
		s.rib.setLimit(p.Address, p.MaxPrefixes)
		s.log.Info("peer updated in place", "peer", p.Address)
	}
	for _, p := range plan.add {
		live := s.peerState[p.Address]
		held := live != nil && live.holdOff != nil
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: toAPIPeer(p, peerOptions{restartTime: s.cfg.RestartTime, restarting: s.restarting, adminDown: held})}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s (AS %d): %w", p.Address, p.ASN, err))
			continue
		}
		s.peers[p.Address] = p
		s.rib.setLimit(p.Address, p.MaxPrefixes)
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

// setHeldLocked re-creates p in GoBGP, administratively down or up. Down,
// GoBGP drops what the peer sent (as a withdrawal, not as a graceful
// restart) and refuses its connections; up, the new neighbor connects at
// once.
func (s *Speaker) setHeldLocked(p Peer, held bool) error {
	ctx := context.Background()
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()}); err != nil {
		return err
	}
	s.rib.forgetSession(p.Address)
	return s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: toAPIPeer(p, peerOptions{restartTime: s.cfg.RestartTime, restarting: s.restarting, adminDown: held})})
}

// Originated lists the prefixes this node advertises.
func (s *Speaker) Originated() []netip.Prefix {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ownLocked()
}
