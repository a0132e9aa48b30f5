package bgp

import (
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// peerPlan is what SetPeers must do to go from the applied peer set to the
// desired one.
type peerPlan struct {
	add      []Peer
	update   []Peer // changes GoBGP applies in place, without a reset
	recreate []Peer // changes that need a new session (delete, then add)
	remove   []Peer
}

// diffPeers compares applied and desired peer sets keyed by address. A
// peer whose desired config equals the applied one is left alone, so a
// no-op SetPeers never touches a session.
func diffPeers(applied, desired map[netip.Addr]Peer) peerPlan {
	var p peerPlan
	for addr, want := range desired {
		have, ok := applied[addr]
		switch {
		case !ok:
			p.add = append(p.add, want)
		case have == want:
		case needsNewSession(have, want):
			p.recreate = append(p.recreate, want)
		default:
			p.update = append(p.update, want)
		}
	}
	for addr, have := range applied {
		if _, ok := desired[addr]; !ok {
			p.remove = append(p.remove, have)
		}
	}
	return p
}

// needsNewSession reports whether a change can only take effect on a new
// session: what goes into the OPEN message or the TCP connection. Timers,
// max prefixes, multihop TTL and the description GoBGP updates in place
// (new timers are used from the next session on; a lower max-prefix
// limit is enforced at once).
func needsNewSession(a, b Peer) bool {
	return a.ASN != b.ASN || a.LocalAddress != b.LocalAddress || a.Port != b.Port ||
		a.Passive != b.Passive || a.Password != b.Password || a.GracefulRestart != b.GracefulRestart ||
		a.RouteReflectorClient != b.RouteReflectorClient || a.RouteReflectorClusterID != b.RouteReflectorClusterID
}

// defaultMaxPrefixHold is how long a peer torn down for exceeding its
// max-prefix limit stays down before we let it try again (see
// Speaker.holdOffLocked), so it cannot flood the node in a tight loop.
const defaultMaxPrefixHold = 30 * time.Second

// limitShutdownPct is the share of a peer's limit at which GoBGP logs its
// warning, once the limit is enforced by GoBGP (see limits.go).
const limitShutdownPct = 80

// peerOptions is what toAPIPeer needs beyond the peer's own config.
type peerOptions struct {
	// restartTime and restarting come from the speaker's global config.
	restartTime time.Duration
	restarting  bool
	// gobgpLimit switches on GoBGP's own prefix limit, which walks the
	// peer's whole Adj-RIB-In on every UPDATE; podroute switches it on
	// only to tear down a session that crossed its limit (limits.go).
	gobgpLimit bool
	// adminDown keeps the peer down (a max-prefix hold-off).
	adminDown bool
}

// toAPIPeer renders p as GoBGP's neighbor configuration.
func toAPIPeer(p Peer, o peerOptions) *api.Peer {
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Address.Is6() {
		fam = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	afi := &api.AfiSafi{
		Config: &api.AfiSafiConfig{Family: fam, Enabled: true},
	}
	if p.MaxPrefixes > 0 && o.gobgpLimit {
		afi.PrefixLimits = &api.PrefixLimit{Family: fam, MaxPrefixes: p.MaxPrefixes, ShutdownThresholdPct: limitShutdownPct}
	}
	out := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
			AdminDown:       o.adminDown,
			// No Description: GoBGP re-creates the session for any change
			// of the neighbor config, and a label is not worth a reset.
			// PeerStatus reports it from our own copy.
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          seconds(p.HoldTime),
			KeepaliveInterval: seconds(p.KeepaliveInterval),
			ConnectRetry:      seconds(p.ConnectRetry),
			// After a reset of ours the session should come back at once;
			// GoBGP's default waits 30 s. A max-prefix teardown is held
			// off separately (onPeerEvent).
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{
			PassiveMode: p.Passive,
			RemotePort:  uint32(p.Port),
		},
		AfiSafis: []*api.AfiSafi{afi},
	}
	if p.LocalAddress.IsValid() {
		out.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.RouteReflectorClient {
		out.RouteReflector = &api.RouteReflector{RouteReflectorClient: true, RouteReflectorClusterId: p.RouteReflectorClusterID}
	}
	if p.MultihopTTL > 0 {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.MultihopTTL)}
	}
	if p.GracefulRestart {
		rt := seconds(o.restartTime)
		out.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(rt),
			// Bound how long a restarting speaker waits for every peer's
			// End-of-RIB before it sends its own routes anyway.
			DeferralTime:    uint32(rt),
			LocalRestarting: o.restarting,
		}
		afi.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
	}
	return out
}

func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	s := uint64(d / time.Second)
	if s == 0 {
		s = 1
	}
	return s
}
