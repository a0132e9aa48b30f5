package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/podroute/podroute/bgp"
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
}

// nodeApplier pushes a desiredNode to the speaker and the reconciler. Each
// part is applied by diff downstream, so applying the same state twice
// changes nothing and one peer's change resets no other session.
type nodeApplier struct {
	speaker *bgp.Speaker
	routes  *routes.Reconciler
	log     *slog.Logger
	cni     cniWriter
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
	return desiredNode{
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
