package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/podroute/podroute/policy/controller"
	"github.com/podroute/podroute/policy/nft"

	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/cluster/lbipam"
	"github.com/podroute/podroute/config"
)

// kubernetesOptions are the flags of Kubernetes mode.
type kubernetesOptions struct {
	kubeconfig string // empty: in-cluster
	namespace  string // podrouted's own, for BGPPeer password Secrets
}

// runKubernetes runs the daemon with its desired state from the API
// server: it waits for the local Node (and its pod CIDR), fills the node's
// identity into cfg, then follows every change.
func runKubernetes(ctx context.Context, cfg *config.Config, ko kubernetesOptions, log *slog.Logger, leaving func() bool) error {
	if cfg.NodeName == "" {
		return errors.New("kubernetes mode needs the node name: set NODE_NAME (downward API) or --node-name")
	}
	rest, err := clientcmd.BuildConfigFromFlags("", ko.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubernetes client config (--kubeconfig %q; empty means in-cluster): %w", ko.kubeconfig, err)
	}
	rest.UserAgent = "podrouted/" + version
	// client-go logs through klog; route it into the daemon's JSON log.
	klog.SetSlogLogger(log.With("source", "client-go"))
	if len(cfg.ServicePrefixes) > 0 {
		log.Warn("servicePrefixes in the configuration file are for static mode and ignored in Kubernetes mode; set service ranges in BGPConfiguration default (spec.serviceClusterIPs, ...)")
		cfg.ServicePrefixes = nil
	}
	w, err := cluster.NewWatcher(rest, cfg.NodeName, ko.namespace, log)
	if err != nil {
		return err
	}
	svcCtl, svcDone, err := startServiceController(ctx, rest, w, cfg.NodeName, ko.namespace, log)
	if err != nil {
		return err
	}
	defer func() {
		// A leader releases its Lease on the way out, so that another
		// node takes over at once rather than after the Lease expires.
		select {
		case <-svcDone:
		case <-time.After(5 * time.Second):
		}
	}()
	// A mailbox of one: only the newest desired state matters.
	latest := make(chan cluster.Desired, 1)
	go func() {
		if err := w.Run(ctx, func(d cluster.Desired) {
			select {
			case <-latest:
			default:
			}
			latest <- d
		}); err != nil && ctx.Err() == nil {
			log.Error("kubernetes watcher stopped", "err", err)
		}
	}()

	first, err := waitForNode(ctx, latest, cfg.NodeName, log)
	if err != nil {
		return err
	}
	svcCtl.SetConfig(first.Services, first.LoadBalancer)
	cfg.RouterID = first.RouterID.String()
	cfg.ASN = first.ASN
	cfg.PodCIDRs = nil
	for _, p := range first.PodCIDRs {
		cfg.PodCIDRs = append(cfg.PodCIDRs, p.String())
	}
	cfg.PodPools = nil
	for _, p := range first.Policy.PodPools {
		cfg.PodPools = append(cfg.PodPools, p.String())
	}
	cfg.ImportDefaultRoute = first.Policy.ImportDefaultRoute
	if first.RouteProtocol != 0 {
		cfg.RouteProtocol = first.RouteProtocol
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("configuration from Kubernetes is not usable: %w", err)
	}

	changes := make(chan desiredNode)
	// marked is set once the node's network was marked available; a Node
	// object deleted and registered again (kubelet does that) is a new
	// object without that condition, so it is marked again.
	var marked atomic.Bool
	ready := func(ctx context.Context) {
		for attempt := 0; ; attempt++ {
			err := w.MarkNetworkAvailable(ctx)
			if err == nil {
				marked.Store(true)
				log.Info("node network marked available (NetworkUnavailable=False)", "node", cfg.NodeName)
				return
			}
			log.Warn("cannot mark the node's network available yet; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(min(time.Duration(attempt+1)*2*time.Second, 30*time.Second)):
			}
		}
	}
	go func() {
		gone := false
		for {
			select {
			case <-ctx.Done():
				return
			case d := <-latest:
				if !d.Found {
					log.Warn("the local Node object is gone; keeping the last known state", "node", cfg.NodeName)
					gone = true
					continue
				}
				if gone && marked.Load() {
					go ready(ctx)
				}
				gone = false
				if d.ASN != first.ASN || d.RouterID != first.RouterID || (d.RouteProtocol != 0 && d.RouteProtocol != first.RouteProtocol) {
					log.Warn("AS number, router ID or route protocol changed in Kubernetes; restart podrouted to apply them (everything else applies now)",
						"asn", d.ASN, "router_id", d.RouterID, "route_protocol", d.RouteProtocol)
				}
				svcCtl.SetConfig(d.Services, d.LoadBalancer)
				select {
				case changes <- desiredFromCluster(d):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	extras, err := startPolicy(ctx, cfg, rest, log)
	if err != nil {
		return err
	}
	return runDaemon(ctx, cfg, log, leaving, desiredFromCluster(first), changes, ready, extras)
}

// startServiceController starts the leader-elected Service controller
// (LoadBalancer address allocation, Events on bad Service input). It
// campaigns only once BGPConfiguration has service ranges or pools, and
// it shares the watcher's Service informer.
func startServiceController(ctx context.Context, rest *rest.Config, w *cluster.Watcher, node, namespace string, log *slog.Logger) (*lbipam.Controller, <-chan struct{}, error) {
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes client for the Service controller: %w", err)
	}
	c, err := lbipam.New(lbipam.Options{Client: client, Services: w.Services(), Namespace: namespace, Identity: node, Log: log})
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("Service controller stopped", "err", err)
		}
	}()
	return c, done, nil
}

// startPolicy starts NetworkPolicy enforcement unless the config turns it
// off. Missing nft is an error, not a warning: a cluster that believes its
// policies hold must not run unprotected without being told.
func startPolicy(ctx context.Context, cfg *config.Config, rest *rest.Config, log *slog.Logger) (daemonExtras, error) {
	extras := daemonExtras{registry: prometheus.NewRegistry()}
	if !cfg.NetworkPolicyEnabled() {
		log.Warn("NetworkPolicy enforcement is off (networkPolicy: false): every NetworkPolicy is ignored on this node")
		return extras, nil
	}
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return extras, fmt.Errorf("kubernetes client for NetworkPolicy: %w", err)
	}
	kernel, err := nft.New(nft.Options{})
	if err != nil {
		return extras, fmt.Errorf("NetworkPolicy needs nftables (the nft binary, Debian package nftables) or networkPolicy: false in the config: %w", err)
	}
	pc, err := controller.New(controller.Options{NodeName: cfg.NodeName, Client: client, Kernel: kernel, Log: log, Registry: extras.registry})
	if err != nil {
		return extras, err
	}
	go func() {
		if err := pc.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("NetworkPolicy controller stopped; rules already in the kernel stay", "err", err)
		}
	}()
	extras.policy = pc
	return extras, nil
}

// waitForNode waits for a desired state in which the local Node exists with
// a router ID and at least one pod CIDR, saying what it waits for.
func waitForNode(ctx context.Context, latest <-chan cluster.Desired, node string, log *slog.Logger) (cluster.Desired, error) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	why := "the API server"
	for {
		select {
		case <-ctx.Done():
			return cluster.Desired{}, ctx.Err()
		case <-tick.C:
			log.Info("waiting", "for", why, "node", node)
		case d := <-latest:
			switch {
			case !d.Found:
				why = "the Node object " + node
			case !d.RouterID.IsValid():
				why = "an IPv4 InternalIP on Node " + node + " (the BGP router ID)"
			case len(d.PodCIDRs) == 0:
				why = "spec.podCIDRs on Node " + node + " (assigned by kube-controller-manager --allocate-node-cidrs)"
			default:
				return d, nil
			}
			log.Info("waiting", "for", why, "node", node)
		}
	}
}

func desiredFromCluster(d cluster.Desired) desiredNode {
	return desiredNode{PodCIDRs: d.PodCIDRs, Peers: d.Peers, Policy: d.Policy,
		Advertisements: d.Advertisements, Services: d.ServiceRoutes}
}

// podNamespace is podrouted's namespace: POD_NAMESPACE from the downward
// API, else podroute-system.
func podNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "podroute-system"
}
