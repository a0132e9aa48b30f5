package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Defaults of the conflist podrouted writes.
const (
	DefaultNetworkName  = "podroute"
	DefaultCNIVersion   = "1.1.0"
	DefaultConfListFile = "10-podroute.conflist"
)

// ConfList is what podrouted knows when it writes the CNI config: the node's
// pod CIDRs and the plugin's options. Chained plugins (portmap for hostPort,
// bandwidth for the bandwidth annotations) come from Debian's
// containernetworking-plugins or any other reference build in CNI_PATH.
type ConfList struct {
	Name        string   // network name (default DefaultNetworkName)
	CNIVersion  string   // default DefaultCNIVersion
	PodCIDRs    []string // required: this node's pod CIDRs
	MTU         int      // 0: the plugin uses the uplink's MTU
	DataDir     string   // IPAM store; "" for ipam.DefaultDir
	ReservedIPs []string
	NoPortmap   bool // leave portmap out of the chain
	NoBandwidth bool // leave bandwidth out of the chain
}

// Bytes renders the conflist, after checking it the way the plugin will.
func (c ConfList) Bytes() ([]byte, error) {
	name := c.Name
	if name == "" {
		name = DefaultNetworkName
	}
	version := c.CNIVersion
	if version == "" {
		version = DefaultCNIVersion
	}
	plugin := map[string]any{
		"type":     PluginType,
		"podCIDRs": c.PodCIDRs,
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
	probe := map[string]any{"cniVersion": version, "name": name}
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
	if !c.NoPortmap {
		plugins = append(plugins, map[string]any{
			"type": "portmap", "capabilities": map[string]bool{"portMappings": true},
		})
	}
	if !c.NoBandwidth {
		plugins = append(plugins, map[string]any{
			"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true},
		})
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
