package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/podroute/podroute/ipam"
)

// PluginType is the "type" of podroute-cni in a network config: the name of
// the binary in CNI_PATH.
const PluginType = "podroute-cni"

// MTU limits: the IPv4 minimum of RFC 791 and the IPv6 minimum of RFC 8200.
const (
	minMTUv4 = 68
	minMTUv6 = 1280
	maxMTU   = 65535
)

// NetConf is podroute-cni's network config, as the runtime passes it on
// stdin. podrouted writes it (see ConfList); the fields beyond the standard
// ones are podroute's.
type NetConf struct {
	types.PluginConf

	// PodCIDRs are this node's pod CIDRs, at most one per family. Required:
	// the plugin never asks the Kubernetes API.
	PodCIDRs []string `json:"podCIDRs"`
	// MTU of both veth ends; 0 takes the MTU of the node's uplink.
	MTU int `json:"mtu,omitempty"`
	// DataDir holds the IPAM store (default ipam.DefaultDir).
	DataDir string `json:"dataDir,omitempty"`
	// ReservedIPs are pod CIDR addresses never to hand out (for example one
	// a router on the node's LAN already uses).
	ReservedIPs []string `json:"reservedIPs,omitempty"`
	// RuntimeConfig carries the "ips" capability: addresses the runtime
	// asks for, with or without a prefix length.
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitempty"`

	// Parsed forms, filled by ParseNetConf.
	Pools    []netip.Prefix `json:"-"`
	Reserved []netip.Addr   `json:"-"`
}

// Error codes beyond the spec's well-known ones (the spec leaves 100 and up to
// plugins).
const (
	// ErrPoolExhausted: no free address in a pod CIDR.
	ErrPoolExhausted uint = 100
	// ErrPluginNotAvailable is the spec 1.1 code for a STATUS that finds
	// the plugin unable to serve ADD.
	ErrPluginNotAvailable uint = 50
)

// ParseNetConf decodes and validates the network config. Every error is a
// *types.Error whose message names the field, the value and what is
// allowed: kubelet shows it to the person whose pod did not start.
func ParseNetConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, decodeError(err)
	}
	if conf.PodCIDRs == nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			`network config: "podCIDRs" is missing: podrouted writes this node's pod CIDRs there, e.g. "podCIDRs": ["10.244.1.0/24", "fd00:244:0:1::/64"]`, "")
	}
	pools, err := ipam.ParseCIDRs(`network config "podCIDRs"`, conf.PodCIDRs)
	if err != nil {
		return nil, types.NewError(types.ErrInvalidNetworkConfig, err.Error(), "")
	}
	conf.Pools = pools
	if err := conf.checkMTU(); err != nil {
		return nil, err
	}
	if conf.DataDir == "" {
		conf.DataDir = ipam.DefaultDir
	} else if !filepath.IsAbs(conf.DataDir) {
		return nil, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf(`network config "dataDir" %q: want an absolute path (default %s)`, conf.DataDir, ipam.DefaultDir), "")
	}
	for i, s := range conf.ReservedIPs {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf(`network config "reservedIPs"[%d] %q is not an IP address`, i, s), "")
		}
		if !inPools(pools, a) {
			return nil, types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf(`network config "reservedIPs"[%d] %s is outside the pod CIDRs %v`, i, a, pools), "")
		}
		conf.Reserved = append(conf.Reserved, a)
	}
	return conf, nil
}

func (c *NetConf) checkMTU() error {
	if c.MTU == 0 {
		return nil
	}
	min := minMTUv4
	for _, p := range c.Pools {
		if p.Addr().Is6() {
			min = minMTUv6
		}
	}
	if c.MTU < min || c.MTU > maxMTU {
		return types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf(`network config "mtu" %d: want %d..%d (IPv6 needs at least %d), or leave it out to use the node's uplink MTU`, c.MTU, min, maxMTU, minMTUv6), "")
	}
	return nil
}

func inPools(pools []netip.Prefix, a netip.Addr) bool {
	for _, p := range pools {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// decodeError turns a JSON error into a CNI error that names the field and
// the JSON type it wanted.
func decodeError(err error) *types.Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := typeErr.Field
		if field == "" {
			field = "(top level)"
		}
		return types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("network config field %q: want %s, got a JSON %s", field, jsonKind(typeErr.Type), typeErr.Value), "")
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("network config is not valid JSON (at byte %d): %v", syntaxErr.Offset, err), "")
	}
	return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network config: %v", err), "")
}

func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// RequestedIPs returns the addresses the runtime asks for, from the "ips"
// capability (runtimeConfig.ips) and from CNI_ARGS "IP=a,b" (host-local's
// convention), each checked against the pod CIDRs.
func (c *NetConf) RequestedIPs(cniArgs string) ([]netip.Addr, error) {
	type source struct{ what, value string }
	var wanted []source
	for i, s := range c.RuntimeConfig.IPs {
		wanted = append(wanted, source{fmt.Sprintf("runtimeConfig.ips[%d]", i), s})
	}
	if cniArgs != "" {
		for _, kv := range strings.Split(cniArgs, ";") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, types.NewError(types.ErrInvalidEnvironmentVariables,
					fmt.Sprintf("CNI_ARGS %q: %q is not KEY=VALUE", cniArgs, kv), "")
			}
			if k != "IP" {
				continue // K8S_POD_NAME and friends are for other plugins
			}
			for _, ip := range strings.Split(v, ",") {
				wanted = append(wanted, source{"CNI_ARGS IP", ip})
			}
		}
	}
	var out []netip.Addr
	families := map[bool]string{}
	for _, w := range wanted {
		s := strings.TrimSpace(w.value)
		a, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return nil, types.NewError(types.ErrInvalidNetworkConfig,
					fmt.Sprintf("requested IP %q (%s) is not an IP address", w.value, w.what), "")
			}
			a = p.Addr()
		}
		if !inPools(c.Pools, a) {
			return nil, types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("requested IP %s (%s) is outside this node's pod CIDRs %v", a, w.what, c.Pools), "")
		}
		if prev, dup := families[a.Is4()]; dup {
			return nil, types.NewError(types.ErrInvalidNetworkConfig,
				fmt.Sprintf("requested IPs %s and %s are both %s: a pod gets one address per family", prev, a, familyOf(a)), "")
		}
		families[a.Is4()] = a.String()
		out = append(out, a)
	}
	return out, nil
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
