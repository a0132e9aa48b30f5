package frr

import (
	"fmt"
	"strings"
)

// RouterSpec describes one BGP router for Config.
type RouterSpec struct {
	Name            string // hostname
	ASN             uint32
	RouterID        string
	Neighbors       []Neighbor
	Networks        []string // prefixes to originate, IPv4 or IPv6
	GracefulRestart bool     // FRR is a graceful-restart helper without it too
	// PeerGroups accept sessions from any address in a range (dynamic
	// neighbours), so a node added to a rack needs no router change.
	PeerGroups []PeerGroup
	// RedistributeConnected advertises the router's connected networks (a
	// ToR's LAN subnets and links) in both address families, so that the
	// underlay is routed end to end.
	RedistributeConnected bool
	// MultipathRelax lets equal-length AS paths through different
	// neighbour ASes share a prefix (ECMP): each lab node has its own AS,
	// and a Service address advertised by several nodes must be spread
	// over all of them.
	MultipathRelax bool
	// UpdateAtOnce sets `coalesce-time 0`: FRR otherwise holds the first
	// UPDATE to a peer that comes up for its update-group coalesce time
	// (measured: about 1.1 s), so that peers coming up together share one
	// update group. A ToR whose node sessions come back one at a time
	// (a link flap, a restart) loses that second on each.
	UpdateAtOnce bool
	Extra        string // raw lines appended at the end (may re-enter "router bgp ASN")
}

// PeerGroup is a peer group with a listen range: FRR accepts any
// speaker from Range whose AS is RemoteAS ("external": any other AS).
type PeerGroup struct {
	Name      string
	Range     string // e.g. 10.10.1.0/24; the family picks the address family
	RemoteAS  string // "external", "internal" or a number
	Hold      int
	Keepalive int
}

// Neighbor is one BGP neighbour of a RouterSpec.
type Neighbor struct {
	Address   string
	ASN       uint32
	Password  string // TCP MD5
	Hold      int    // seconds; 0 with Keepalive 0 keeps the datacenter defaults (9s/3s)
	Keepalive int    // seconds; 0 means Hold/3
	Multihop  int    // ebgp-multihop TTL; 0 means directly connected
	Passive   bool   // wait for the neighbour to connect; never connect out
}

// Config renders an integrated frr.conf. The datacenter profile has short
// timers; import-check is off so `network` originates prefixes that no
// interface or static route backs; no policy is required for eBGP.
//
// IPv4 neighbours carry IPv4 unicast and IPv6 neighbours IPv6 unicast: FRR
// would otherwise also activate IPv4 unicast on IPv6 sessions (bgp default
// ipv4-unicast), advertising IPv4 prefixes with IPv6 next hops.
func Config(r RouterSpec) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("frr defaults datacenter")
	if r.Name != "" {
		line("hostname %s", r.Name)
	}
	line("!")
	line("router bgp %d", r.ASN)
	if r.RouterID != "" {
		line(" bgp router-id %s", r.RouterID)
	}
	line(" no bgp ebgp-requires-policy")
	line(" no bgp network import-check")
	if r.MultipathRelax {
		line(" bgp bestpath as-path multipath-relax")
	}
	if r.UpdateAtOnce {
		line(" coalesce-time 0")
	}
	if r.GracefulRestart {
		line(" bgp graceful-restart")
	}
	for _, g := range r.PeerGroups {
		line(" neighbor %s peer-group", g.Name)
		line(" neighbor %s remote-as %s", g.Name, g.RemoteAS)
		if keepalive, hold := (Neighbor{Hold: g.Hold, Keepalive: g.Keepalive}).timers(); hold > 0 {
			line(" neighbor %s timers %d %d", g.Name, keepalive, hold)
		}
		line(" bgp listen range %s peer-group %s", g.Range, g.Name)
	}
	for _, n := range r.Neighbors {
		line(" neighbor %s remote-as %d", n.Address, n.ASN)
		if n.Password != "" {
			line(" neighbor %s password %s", n.Address, n.Password)
		}
		if keepalive, hold := n.timers(); hold > 0 {
			line(" neighbor %s timers %d %d", n.Address, keepalive, hold)
		}
		if n.Multihop > 0 {
			line(" neighbor %s ebgp-multihop %d", n.Address, n.Multihop)
		}
		if n.Passive {
			line(" neighbor %s passive", n.Address)
		}
	}
	for _, family := range []string{"ipv4", "ipv6"} {
		isV6 := family == "ipv6"
		line(" !")
		line(" address-family %s unicast", family)
		for _, prefix := range r.Networks {
			if strings.Contains(prefix, ":") == isV6 {
				line("  network %s", prefix)
			}
		}
		if r.RedistributeConnected {
			line("  redistribute connected")
		}
		for _, g := range r.PeerGroups {
			switch gV6 := strings.Contains(g.Range, ":"); {
			case gV6 == isV6:
				line("  neighbor %s activate", g.Name)
			case gV6 && !isV6:
				line("  no neighbor %s activate", g.Name)
			}
		}
		for _, n := range r.Neighbors {
			switch nV6 := strings.Contains(n.Address, ":"); {
			case nV6 == isV6:
				line("  neighbor %s activate", n.Address)
			case nV6 && !isV6:
				line("  no neighbor %s activate", n.Address)
			}
		}
		line(" exit-address-family")
	}
	line("exit")
	if r.Extra != "" {
		line("!")
		line("%s", strings.TrimRight(r.Extra, "\n"))
	}
	return b.String()
}

// timers returns keepalive and hold time, filling in whichever is missing
// with the usual 1:3 ratio; hold 0 means "keep FRR's defaults".
func (n Neighbor) timers() (keepalive, hold int) {
	keepalive, hold = n.Keepalive, n.Hold
	switch {
	case hold == 0 && keepalive == 0:
		return 0, 0
	case hold == 0:
		hold = 3 * keepalive
	case keepalive == 0:
		keepalive = max(hold/3, 1)
	}
	return keepalive, hold
}
