package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Defaults of the conflist podrouted writes.
const (
	DefaultNetworkName = "podroute"
	// DefaultCNIVersion is 1.0.0, not the newest (1.1.0): containerd 1.6
	// and 1.7 (libcni 1.1) refuse a 1.1.0 conflist's results with
	// "unsupported CNI result version", and every runtime of the last years
	// reads 1.0.0. 1.1.0 adds STATUS and GC, which only containerd 2 asks.
	DefaultCNIVersion   = "1.0.0"
	DefaultConfListFile = "10-podroute.conflist"
)

// SupportedVersions are the CNI spec versions podroute-cni speaks, oldest
// first: what its VERSION command answers, and what a conflist may say.
// It prints every result in the version the network config asks for.
var SupportedVersions = []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// ChainPlugin is a plugin that may follow podroute-cni in the conflist.
type ChainPlugin struct {
	Type string
	// Capabilities are the runtime capabilities it takes (the runtime
	// passes their arguments only to plugins that declare them).
	Capabilities map[string]bool
}

// ChainPlugins are the plugins podrouted knows how to chain, from
// containernetworking-plugins (Debian's or any build in CNI_PATH).
var ChainPlugins = []ChainPlugin{
	// hostPort in a pod spec.
	{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
	// kubernetes.io/ingress-bandwidth and egress-bandwidth annotations.
	{Type: "bandwidth", Capabilities: map[string]bool{"bandwidth": true}},
}

// DefaultChain is the chain when none is configured.
func DefaultChain() []string { return []string{"portmap", "bandwidth"} }

// ChainPluginTypes are the types of ChainPlugins, in order.
func ChainPluginTypes() []string {
	out := make([]string, len(ChainPlugins))
	for i, p := range ChainPlugins {
		out[i] = p.Type
	}
	return out
}

func chainPlugin(typ string) (ChainPlugin, bool) {
	for _, p := range ChainPlugins {
		if p.Type == typ {
			return p, true
		}
	}
	return ChainPlugin{}, false
}

// ConfList is what podrouted knows when it writes the CNI config: the node's
// pod CIDRs and the plugin's options.
type ConfList struct {
	Name        string   // network name (default DefaultNetworkName)
	CNIVersion  string   // one of SupportedVersions; default DefaultCNIVersion
	PodCIDRs    []string // required: this node's pod CIDRs
	MTU         int      // 0: the plugin uses the uplink's MTU
	DataDir     string   // IPAM store; "" for ipam.DefaultDir
	ReservedIPs []string
	// Chain lists the plugins after podroute-cni, by type, in order, each
	// one of ChainPlugins: nil means DefaultChain(), empty means none.
	Chain []string
}

// Bytes renders the conflist, after checking it the way the plugin will.
// Every plugin in it carries the list's cniVersion: the runtime hands each
// plugin the list's version anyway, and a reader of the file sees at once
// which version each plugin is asked to speak.
func (c ConfList) Bytes() ([]byte, error) {
	name := c.Name
	if name == "" {
		name = DefaultNetworkName
	}
	version := c.CNIVersion
	if version == "" {
		version = DefaultCNIVersion
	}
	if !slices.Contains(SupportedVersions, version) {
		return nil, fmt.Errorf("CNI config: cniVersion %q: podroute-cni speaks %s", version, strings.Join(SupportedVersions, ", "))
	}
	chain := c.Chain
	if chain == nil {
		chain = DefaultChain()
	}
	plugin := map[string]any{
		"type":       PluginType,
		"cniVersion": version,
		"podCIDRs":   c.PodCIDRs,
	}
	if c.MTU != 0 {
		plugin["mtu"] = c.MTU
	}
	if c.DataDir != "" {
		plugin["dataDir"] = c.DataDir
	}
	if len(c.ReservedIPs) > 0 {
		plugin["reservedIPs"] = c.ReservedIPs
	}
	// Validate exactly what the plugin will read, so a bad CIDR is caught
	// by the daemon and not by kubelet at the first pod.
	probe := map[string]any{"name": name}
	for k, v := range plugin {
		probe[k] = v
	}
	pb, err := json.Marshal(probe)
	if err != nil {
		return nil, err
	}
	if _, err := ParseNetConf(pb); err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	plugins := []any{plugin}
	seen := map[string]bool{}
	for _, typ := range chain {
		p, ok := chainPlugin(typ)
		if !ok {
			return nil, fmt.Errorf("CNI config: chained plugin %q: podrouted knows %s", typ, strings.Join(ChainPluginTypes(), ", "))
		}
		if seen[typ] {
			return nil, fmt.Errorf("CNI config: chained plugin %q is listed twice", typ)
		}
		seen[typ] = true
		plugins = append(plugins, map[string]any{"type": p.Type, "cniVersion": version, "capabilities": p.Capabilities})
	}
	b, err := json.MarshalIndent(map[string]any{
		"cniVersion": version,
		"name":       name,
		"plugins":    plugins,
	}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// WriteConfList writes the conflist as dir/fileName atomically: kubelet
// polls the directory and must never read half a file. The content goes to
// a temporary file in the same directory (hidden and without a .conflist
// suffix, so libcni ignores it), is synced, and is renamed into place; then
// the directory is synced. An identical file is left alone, so its mtime
// does not make kubelet reload for nothing.
func WriteConfList(dir, fileName string, c ConfList) error {
	if fileName == "" {
		fileName = DefaultConfListFile
	}
	if strings.ContainsRune(fileName, '/') || !strings.HasSuffix(fileName, ".conflist") {
		return fmt.Errorf("CNI config file name %q: want a plain name ending in .conflist, e.g. %s", fileName, DefaultConfListFile)
	}
	b, err := c.Bytes()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("CNI config directory: %w", err)
	}
	final := filepath.Join(dir, fileName)
	if old, err := os.ReadFile(final); err == nil && bytes.Equal(old, b) {
		return nil
	}
	f, err := os.CreateTemp(dir, "."+fileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("CNI config: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	cherr := f.Chmod(0o644) // CreateTemp makes 0600; the runtime may not run as root
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, cherr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("CNI config: writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("CNI config: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("CNI config: sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("CNI config: sync %s: %w", dir, err)
	}
	return nil
}
