package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v4/pkg/server"
	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/bgp"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/policy/controller"
	"github.com/podroute/podroute/routes"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// daemonExtras are the parts only Kubernetes mode has.
type daemonExtras struct {
	// policy enforces NetworkPolicy (nil: not enforced); it runs on its
	// own, runDaemon only reports it.
	policy *controller.Controller
	// registry is where /metrics comes from; Kubernetes mode registers
	// the policy metrics on it first (nil: a new one).
	registry *prometheus.Registry
}

// runDaemon wires the parts together and blocks until ctx ends. leaving
// tells, at shutdown, whether the node leaves for good (notify peers,
// remove routes) rather than restarts. changes delivers later desired
// states (Kubernetes mode; nil in static mode), and ready is called once
// the table has been learned (nil: nothing to tell).
func runDaemon(ctx context.Context, cfg *config.Config, log *slog.Logger, leaving func() bool,
	initial desiredNode, changes <-chan desiredNode, ready func(context.Context), extras daemonExtras) error {
	grEnabled := cfg.GracefulRestart.IsEnabled()
	rec, err := routes.New(routes.Config{
		Protocol:       uint8(cfg.RouteProtocol),
		Table:          uint32(cfg.RouteTable),
		ResyncInterval: cfg.ResyncInterval.Duration,
		StaleTimeout:   cfg.GracefulRestart.StaleRouteTimeout.Duration,
		Logger:         log,
	})
	if err != nil {
		return err
	}
	adopted, err := rec.Start(ctx)
	if err != nil {
		rec.Close()
		return err
	}

	var opts []server.ServerOption
	if cfg.GoBGPAPIEnabled() {
		opts = append(opts, bgp.GoBGPAPIOption(cfg.GoBGPAPI))
	}
	speaker, err := bgp.New(bgp.Config{
		ASN:             cfg.ASN,
		RouterID:        cfg.RouterIDAddr(),
		ListenAddresses: cfg.ListenAddrs(),
		ListenPort:      cfg.Port(),
		RestartTime:     cfg.GracefulRestart.RestartTime.Duration,
		// Forwarding state survived only if there were routes to adopt.
		Restarting:    grEnabled && adopted > 0,
		Multipath:     true,
		MaxPrefixHold: cfg.MaxPrefixHoldTime.Duration,
		FastReconnect: cfg.FastReconnectEnabled(),
		Logger:        log,
	}, opts...)
	if err != nil {
		rec.Close()
		return err
	}
	if err := speaker.Start(ctx); err != nil {
		rec.Close()
		return err
	}
	enableForwarding(initial.PodCIDRs, log)
	node := &nodeApplier{speaker: speaker, routes: rec, log: log,
		cni: newCNIWriter(cfg, log)}
	if err := node.apply(ctx, initial); err != nil {
		log.Error("apply configuration", "err", err)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case d := <-changes:
				if err := node.apply(ctx, d); err != nil {
					log.Error("apply changed configuration", "err", err)
				}
			}
		}
	}()
	if ready != nil {
		go func() {
			select {
			case <-ctx.Done():
			case <-speaker.Synced():
				ready(ctx)
			}
		}()
	}

	pumpDone := make(chan struct{})
	go func() {
		defer close(pumpDone)
		pumpRoutes(ctx, speaker.Updates(), speaker.Synced(), rec, log)
	}()

	status := &statusServer{cfg: cfg, speaker: speaker, routes: rec, policy: extras.policy, started: time.Now(), services: node.serviceRoutes}
	// (status reads cfg for the node's identity only; peers come from the
	// speaker.)
	lis, err := api.Listen(cfg.GRPCSocket)
	if err != nil {
		speaker.Stop(grEnabled)
		rec.Close()
		return fmt.Errorf("status API: %w", err)
	}
	grpcServer := grpc.NewServer()
	api.RegisterStatusServer(grpcServer, status)
	go func() {
		if err := grpcServer.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			log.Error("status API stopped", "err", err)
		}
	}()
	var httpServer *http.Server
	if cfg.MetricsAddress != "" {
		reg := extras.registry
		if reg == nil {
			reg = prometheus.NewRegistry()
		}
		httpServer = serveMetrics(cfg.MetricsAddress, status, reg, log)
	}
	log.Info("podrouted running", "node", cfg.NodeName, "asn", cfg.ASN, "router_id", cfg.RouterID,
		"pod_cidrs", cfg.PodCIDRs, "peers", len(initial.Peers), "adopted_routes", adopted,
		"graceful_restart", grEnabled, "socket", cfg.GRPCSocket, "version", version)

	<-ctx.Done()
	keep := grEnabled && !leaving()
	log.Info("stopping", "graceful_restart", grEnabled, "keep_forwarding_state", keep)
	grpcServer.Stop()
	if httpServer != nil {
		_ = httpServer.Close()
	}
	// Keeping state (graceful restart, not leaving): the sessions are
	// dropped without NOTIFICATION and the kernel routes stay, so neither
	// peers nor this node forget a route while the next instance starts.
	// Otherwise peers are told and our routes are removed.
	speaker.Stop(keep)
	<-pumpDone
	if !keep {
		if err := rec.RemoveAll(); err != nil {
			log.Warn("remove routes on stop", "err", err)
		}
	}
	rec.Close()
	// With keep, the speaker is left as it is: the process exits and the
	// kernel closes the BGP connections without a NOTIFICATION.
	return nil
}

func peersFromConfig(cfg *config.Config) []bgp.Peer {
	grGlobal := cfg.GracefulRestart.IsEnabled()
	out := make([]bgp.Peer, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		out = append(out, bgp.Peer{
			Address:           p.Addr(),
			ASN:               p.ASN,
			Description:       p.Description,
			LocalAddress:      p.LocalAddr(),
			Port:              uint16(p.Port),
			Passive:           p.Passive,
			HoldTime:          p.HoldTime.Duration,
			KeepaliveInterval: p.KeepaliveInterval.Duration,
			ConnectRetry:      p.ConnectRetry.Duration,
			MultihopTTL:       p.MultihopTTL,
			Password:          p.Password,
			MaxPrefixes:       p.MaxPrefixes,
			GracefulRestart:   p.GREnabled(grGlobal),
		})
	}
	return out
}

// routeSink is what pumpRoutes needs of the reconciler.
type routeSink interface {
	Update(set []routes.Route, del []netip.Prefix) error
	MarkSynced()
}

// pumpRoutes feeds best-path changes to the reconciler, one batch per
// kernel write. Batches are already coalesced per prefix upstream (the
// speaker keeps changes in a set while a write is in progress), so there
// is nothing to merge here. When the speaker reports the table learned,
// everything handed over before that is applied first, then the
// reconciler sweeps stale routes, so no re-learned route is ever removed.
func pumpRoutes(ctx context.Context, updates <-chan []bgp.RouteUpdate, synced <-chan struct{}, rec routeSink, log *slog.Logger) {
	var set []routes.Route
	var del []netip.Prefix
	apply := func(batch []bgp.RouteUpdate) {
		set, del = set[:0], del[:0]
		for _, u := range batch {
			if len(u.NextHops) > 0 {
				set = append(set, routes.Route{Prefix: u.Prefix, NextHops: u.NextHops})
			} else {
				del = append(del, u.Prefix)
			}
		}
		if err := rec.Update(set, del); err != nil {
			log.Warn("some learned routes were not usable", "err", err)
		}
		if cap(set) > 1<<16 {
			set, del = nil, nil // a full-table load: do not keep its buffers
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-updates:
			apply(b)
		case <-synced:
			synced = nil
			for drained := false; !drained; {
				select {
				case b := <-updates:
					apply(b)
				default:
					drained = true
				}
			}
			rec.MarkSynced()
		}
	}
}
