package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/config"
)

// cniWriter writes the CNI network configuration for podroute-cni. The
// plugin needs nothing else from the daemon: the pod CIDRs travel in it.
type cniWriter struct {
	dir     string // empty: write nothing
	mtu     int
	ipamDir string
	version string   // cniVersion
	chain   []string // cniChain: nil means cni.DefaultChain(), empty none
	log     *slog.Logger
}

// newCNIWriter takes the conflist settings from the config file; they are
// fixed for the life of the process in both modes.
func newCNIWriter(cfg *config.Config, log *slog.Logger) cniWriter {
	return cniWriter{dir: cfg.CNIConfDir, mtu: cfg.CNIMTU, ipamDir: cfg.IPAMDir, version: cfg.CNIVersion, chain: cfg.CNIChain, log: log}
}

func (w cniWriter) write(podCIDRs []netip.Prefix) error {
	if w.dir == "" || len(podCIDRs) == 0 {
		return nil
	}
	conf := cni.ConfList{MTU: w.mtu, DataDir: w.ipamDir, CNIVersion: w.version, Chain: w.chain}
	for _, p := range podCIDRs {
		conf.PodCIDRs = append(conf.PodCIDRs, p.String())
	}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return fmt.Errorf("CNI config dir: %w", err)
	}
	// WriteConfList writes atomically and leaves an identical file alone.
	if err := cni.WriteConfList(w.dir, cni.DefaultConfListFile, conf); err != nil {
		return fmt.Errorf("write CNI config: %w", err)
	}
	return nil
}

// enableForwarding turns on IP forwarding for the families the node has
// pod CIDRs of: a node routes its pods' traffic. Already on is the common
// case; a failure is logged, since pods then cannot reach other nodes.
func enableForwarding(podCIDRs []netip.Prefix, log *slog.Logger) {
	knobs := map[bool]string{true: "/proc/sys/net/ipv4/ip_forward", false: "/proc/sys/net/ipv6/conf/all/forwarding"}
	for _, p := range podCIDRs {
		path := knobs[p.Addr().Is4()]
		cur, err := os.ReadFile(path)
		if err == nil && len(cur) > 0 && cur[0] == '1' {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			log.Error("cannot enable IP forwarding; pods will not reach other nodes", "sysctl", path, "err", err)
			continue
		}
		log.Info("enabled IP forwarding", "sysctl", path)
	}
}
