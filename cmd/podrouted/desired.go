package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/podroute/podroute/bgp"
	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/routes"
)

// desiredNode is everything about this node that may change while the
// daemon runs: its pod CIDRs, its peers and the policy inputs. Static mode
// builds it once from the config file; Kubernetes mode builds it again on
// every relevant change. (AS number, router ID, route protocol and table
// are fixed for the life of the process.)
type desiredNode struct {
	PodCIDRs []netip.Prefix
	Peers    []bgp.Peer
	Policy   bgp.Policy
	// Advertisements are the Service prefixes to originate besides the
	// pod CIDRs; Services says for each Service address (and range)
	// whether it is advertised and why, for the status API.
	Advertisements []bgp.Advertisement
	Services       []cluster.ServiceRoute
}

// Static mode's service prefixes, in the status API's terms.
const (
	kindStatic   cluster.AddressKind = "Static"
	reasonStatic cluster.Reason      = "servicePrefixes in the configuration file"
)

// nodeApplier pushes a desiredNode to the speaker and the reconciler. Each
// part is applied by diff downstream, so applying the same state twice
// changes nothing and one peer's change resets no other session.
type nodeApplier struct {
	speaker *bgp.Speaker
	routes  *routes.Reconciler
	log     *slog.Logger
	cni     cniWriter

	mu       sync.Mutex
	services []cluster.ServiceRoute // as last applied
}

// serviceRoutes returns the Service lines last applied.
func (a *nodeApplier) serviceRoutes() []cluster.ServiceRoute {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.services
}

func (a *nodeApplier) apply(ctx context.Context, d desiredNode) error {
	var errs []error
	if err := a.routes.SetBlackholes(d.PodCIDRs); err != nil {
		errs = append(errs, fmt.Errorf("blackhole routes for own pod CIDRs: %w", err))
	}
	// Policy before origination and peers: a new pod CIDR must be
	// protected from hijack before anyone can send it to us.
	if err := a.speaker.SetPolicy(ctx, d.Policy); err != nil {
		errs = append(errs, err)
	}
	if err := a.speaker.SetOriginated(ctx, d.PodCIDRs); err != nil {
		errs = append(errs, err)
	}
	// By diff too: only Service prefixes that came or went are sent.
	if err := a.speaker.SetAdvertisements(ctx, d.Advertisements); err != nil {
		errs = append(errs, err)
	}
	a.mu.Lock()
	a.services = d.Services
	a.mu.Unlock()
	if err := a.speaker.SetPeers(ctx, d.Peers); err != nil {
		errs = append(errs, err)
	}
	// Last: pods get addresses only once routes to them can be announced.
	if err := a.cni.write(d.PodCIDRs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func desiredFromConfig(cfg *config.Config) desiredNode {
	var advs []bgp.Advertisement
	var lines []cluster.ServiceRoute
	for _, sp := range cfg.ServicePrefixValues() {
		advs = append(advs, bgp.Advertisement{Prefix: sp.Prefix, Communities: sp.Communities, LargeCommunities: sp.LargeCommunities})
		lines = append(lines, cluster.ServiceRoute{Prefix: sp.Prefix, Via: sp.Prefix, Kind: kindStatic, Advertised: true, Reason: reasonStatic})
	}
	return desiredNode{
		Advertisements: advs, Services: lines,
		PodCIDRs: cfg.PodCIDRPrefixes(),
		Peers:    peersFromConfig(cfg),
		Policy: bgp.Policy{
			PodPools:           cfg.PodPoolPrefixes(),
			ImportDefaultRoute: cfg.ImportDefaultRoute,
			Transit:            cfg.Transit,
			ProtectedAddrs:     cfg.NodeAddrs(),
		},
	}
}
