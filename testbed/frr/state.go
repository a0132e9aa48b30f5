package frr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/podroute/podroute/testbed/netns"
)

// Vtysh runs show (or other) commands through vtysh and returns stdout.
func (f *Router) Vtysh(cmds ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), vtyshTimeout)
	defer cancel()
	args := []string{"-N", f.Name}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "vtysh", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("vtysh -N %s %q: %w: %s %s", f.Name, cmds, err,
			strings.TrimSpace(stdout.String()), vtyshNoise.ReplaceAllString(stderr.String(), ""))
	}
	return stdout.Bytes(), nil
}

// vtyshNoise matches the harmless missing-vtysh.conf warning (see above).
var vtyshNoise = regexp.MustCompile(`(?m)^% Can't open configuration file \S*vtysh\.conf.*\n?`)

// VtyshJSON runs one `... json` command and decodes its output into v.
func (f *Router) VtyshJSON(cmd string, v any) error {
	out, err := f.Vtysh(cmd)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, v); err != nil {
		const max = 300
		if len(out) > max {
			out = out[:max]
		}
		return fmt.Errorf("vtysh -N %s %q: decoding JSON: %w (output starts %q)", f.Name, cmd, err, out)
	}
	return nil
}

// NeighborState is what a test wants to know about one BGP session.
type NeighborState struct {
	State            string // "Established", "Active", "Connect", "Idle", ...
	RemoteAS         uint32
	PrefixesReceived int            // accepted prefixes, all address families
	PrefixesByFamily map[string]int // e.g. "ipv4Unicast" -> accepted prefixes
	TimesEstablished int            // connectionsEstablished: grows on every session reset
	TimesDropped     int            // connectionsDropped
}

// BGPNeighbors returns every configured neighbour by peer address, from
// `show bgp neighbors json`.
func (f *Router) BGPNeighbors() (map[string]NeighborState, error) {
	var raw map[string]json.RawMessage
	if err := f.VtyshJSON("show bgp neighbors json", &raw); err != nil {
		return nil, err
	}
	neighbors := map[string]NeighborState{}
	for addr, msg := range raw {
		var n struct {
			BGPState          string      `json:"bgpState"`
			RemoteAS          json.Number `json:"remoteAs"`
			Established       int         `json:"connectionsEstablished"`
			Dropped           int         `json:"connectionsDropped"`
			AddressFamilyInfo map[string]struct {
				Accepted int `json:"acceptedPrefixCounter"`
			} `json:"addressFamilyInfo"`
		}
		// Skip non-neighbour keys such as {"warning": "..."}.
		if json.Unmarshal(msg, &n) != nil || n.BGPState == "" {
			continue
		}
		asn, _ := strconv.ParseUint(n.RemoteAS.String(), 10, 32)
		state := NeighborState{State: n.BGPState, RemoteAS: uint32(asn),
			TimesEstablished: n.Established, TimesDropped: n.Dropped, PrefixesByFamily: map[string]int{}}
		for family, info := range n.AddressFamilyInfo {
			state.PrefixesByFamily[family] = info.Accepted
			state.PrefixesReceived += info.Accepted
		}
		neighbors[addr] = state
	}
	return neighbors, nil
}

type bgpTableJSON struct {
	Warning string `json:"warning"`
	Routes  map[string][]struct {
		Valid    bool `json:"valid"`
		Nexthops []struct {
			IP string `json:"ip"`
		} `json:"nexthops"`
	} `json:"routes"`
}

// RIB returns the BGP table for family "ipv4" or "ipv6": prefix -> next hops
// of its valid paths ("0.0.0.0"/"::" for locally originated ones; IPv6 paths
// list the global and the link-local next hop).
func (f *Router) RIB(family string) (map[string][]string, error) {
	if _, err := netns.FamilyFlag(family); err != nil {
		return nil, err
	}
	var table bgpTableJSON
	if err := f.VtyshJSON("show bgp "+family+" unicast json", &table); err != nil {
		return nil, err
	}
	if table.Warning != "" {
		return nil, fmt.Errorf("frr %s: %s", f.Name, table.Warning)
	}
	rib := map[string][]string{}
	for prefix, paths := range table.Routes {
		seen := map[string]bool{}
		for _, p := range paths {
			for _, nh := range p.Nexthops {
				if p.Valid && !seen[nh.IP] {
					seen[nh.IP] = true
					rib[prefix] = append(rib[prefix], nh.IP)
				}
			}
		}
	}
	return rib, nil
}

// ZebraRoute is one route in zebra's RIB.
type ZebraRoute struct {
	Protocol  string         `json:"protocol"` // "bgp", "connected", "kernel", ...
	Selected  bool           `json:"selected"`
	Installed bool           `json:"installed"` // in the kernel FIB
	NextHops  []ZebraNexthop `json:"nexthops"`
}

// ZebraNexthop is one next hop of a ZebraRoute.
type ZebraNexthop struct {
	IP        string `json:"ip"`
	Interface string `json:"interfaceName"`
	FIB       bool   `json:"fib"`
}

// Routes returns zebra's RIB for family "ipv4" or "ipv6" (`show ip route
// json` / `show ipv6 route json`): prefix -> routes.
func (f *Router) Routes(family string) (map[string][]ZebraRoute, error) {
	cmd := map[string]string{"ipv4": "show ip route json", "ipv6": "show ipv6 route json"}[family]
	if cmd == "" {
		return nil, fmt.Errorf("address family %q: want ipv4 or ipv6", family)
	}
	routes := map[string][]ZebraRoute{}
	if err := f.VtyshJSON(cmd, &routes); err != nil {
		return nil, err
	}
	return routes, nil
}
