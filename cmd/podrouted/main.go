package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/podroute/podroute/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// A full table load allocates several times what stays live (GoBGP's
	// API conversions); the default GOGC=100 lets the heap double before
	// collecting. 50 cut the peak RSS of a 100k-route load from about 290
	// to 215 MiB at the same speed (testbed BenchmarkBGPToKernel). An
	// explicit GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("podrouted", flag.ContinueOnError)
	var (
		configPath = fs.String("config", "/etc/podroute/podrouted.yaml", "path of the YAML configuration file")
		o          config.Overrides
		podCIDRs   string
		asn        uint
		check      = fs.Bool("check-config", false, "validate the configuration, print it with defaults applied, and exit")
		kube       = fs.Bool("kubernetes", false, "Kubernetes mode: node identity, pod CIDRs, peers and policy come from the API server (the config file only sets local options)")
		ko         kubernetesOptions
		showVer    = fs.Bool("version", false, "print the version and exit")
	)
	fs.StringVar(&o.NodeName, "node-name", os.Getenv("NODE_NAME"), "node name (overrides nodeName; default $NODE_NAME)")
	fs.StringVar(&o.RouterID, "router-id", "", "BGP router ID, an IPv4 address (overrides routerID)")
	fs.UintVar(&asn, "asn", 0, "local AS number (overrides asn)")
	fs.StringVar(&podCIDRs, "pod-cidrs", "", "comma-separated pod CIDRs of this node (overrides podCIDRs)")
	fs.StringVar(&o.GRPCSocket, "grpc-socket", "", "status API unix socket (overrides grpcSocket)")
	fs.StringVar(&o.LogLevel, "log-level", "", "debug, info, warn or error (overrides logLevel)")
	fs.StringVar(&ko.kubeconfig, "kubeconfig", "", "kubeconfig file for Kubernetes mode (empty: in-cluster service account)")
	fs.StringVar(&ko.namespace, "namespace", podNamespace(), "podrouted's namespace, where BGPPeer password Secrets live (default $POD_NAMESPACE or podroute-system)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVer {
		fmt.Println("podrouted", version)
		return 0
	}
	if asn > 0xffffffff {
		fmt.Fprintf(os.Stderr, "podrouted: --asn %d: must be 1..4294967294\n", asn)
		return 2
	}
	o.ASN = uint32(asn)
	if podCIDRs != "" {
		o.PodCIDRs = strings.Split(podCIDRs, ",")
	}

	cfg, err := config.Read(*configPath)
	switch {
	case err == nil:
	case cfg != nil && !*kube:
		// Values Read left out (wrong type, unknown key): Validate below
		// reports them together with every other problem of the file.
	case cfg == nil && *kube && errors.Is(err, os.ErrNotExist):
		// In Kubernetes mode the file is optional: everything it would
		// hold has a default or comes from the API server.
		cfg = &config.Config{}
	default:
		printConfigError(*configPath, err)
		return 1
	}
	cfg.Override(o)
	if *kube {
		return runWithSignals(cfg.LogLevel, func(ctx context.Context, log *slog.Logger, leaving func() bool) error {
			return runKubernetes(ctx, cfg, ko, log, leaving)
		})
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		printConfigError(*configPath, err)
		return 1
	}
	if *check {
		fmt.Printf("configuration %s is valid\n", *configPath)
		return 0
	}

	return runWithSignals(cfg.LogLevel, func(ctx context.Context, log *slog.Logger, leaving func() bool) error {
		return runDaemon(ctx, cfg, log, leaving, desiredFromConfig(cfg), nil, nil, daemonExtras{})
	})
}

// printConfigError prints a configuration error, one problem per line
// when it is made of field errors (README shows this layout).
func printConfigError(path string, err error) {
	fes := config.FieldErrors(err)
	if len(fes) == 0 {
		fmt.Fprintf(os.Stderr, "podrouted: %v\n", err)
		return
	}
	fmt.Fprintf(os.Stderr, "podrouted: invalid configuration in %s:\n", path)
	for _, fe := range fes {
		fmt.Fprintf(os.Stderr, "  %v\n", fe)
	}
}

// runWithSignals runs the daemon until SIGTERM or SIGINT.
//
// SIGTERM (what Kubernetes and systemd send) stops the daemon so that the
// next instance takes over without a lost packet: with graceful restart
// on, kernel routes stay and peers keep ours. SIGINT means the node
// leaves: peers are told at once and our routes are removed.
func runWithSignals(level string, daemon func(ctx context.Context, log *slog.Logger, leaving func() bool) error) int {
	log := newLogger(level)
	slog.SetDefault(log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var leave atomic.Bool
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-sigs
		leave.Store(sig == syscall.SIGINT)
		log.Info("signal received", "signal", sig.String(), "leave", leave.Load())
		cancel()
	}()
	if err := daemon(ctx, log, leave.Load); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("podrouted stopped with an error", "err", err)
		return 1
	}
	return 0
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	switch level {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
