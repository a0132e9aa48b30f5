package topology

import (
	"fmt"
	"os"
	"regexp"
	"sort"

	"sigs.k8s.io/yaml"
)

// Topology describes a lab: routers, nodes, how they are wired and the
// pod address plan. One value drives both the namespace lab (lab.Up) and
// the containerlab files (containerlab.Files), so the two never drift.
//
// Sessions are derived from the wiring, as in a real fabric: a Link
// between two speakers is one BGP session (eBGP when their ASNs differ);
// a node on a LAN with a Gateway peers with that router; nodes on a LAN
// with Mesh peer with each other (iBGP full mesh when they share an ASN).
type Topology struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// IPv6 adds IPv6 addresses, IPv6 pod CIDRs and IPv6 sessions
	// (dual stack).
	IPv6 bool `json:"ipv6,omitempty"`
	// PodPool4 and PodPool6 are the cluster's pod pools; node i (from 1)
	// gets the i-th /24 (IPv4) and /64 (IPv6) of them.
	PodPool4 string   `json:"podPool4"`
	PodPool6 string   `json:"podPool6,omitempty"`
	Routers  []Router `json:"routers,omitempty"`
	Nodes    []Node   `json:"nodes"`
	Links    []Link   `json:"links,omitempty"`
	LANs     []LAN    `json:"lans,omitempty"`
	// HoldTime is the BGP hold time, in seconds, of every session (keepalive
	// a third of it). Short, so failures show within seconds.
	HoldTime int `json:"holdTime,omitempty"`
}

// Router is an FRR router (spine or top-of-rack).
type Router struct {
	Name string `json:"name"`
	ASN  uint32 `json:"asn"`
	Role string `json:"role,omitempty"` // "spine", "leaf": for display
}

// Node is a Kubernetes node running podrouted, with Pods pods behind it.
type Node struct {
	Name string `json:"name"`
	ASN  uint32 `json:"asn"`
	Pods int    `json:"pods"`
	Rack string `json:"rack,omitempty"` // for display
}

// Link is a point-to-point link between two routers or a router and a
// node, numbered from 172.30.0.0/16 (and fd00:30::/48) as /30 (/64).
type Link struct {
	A string `json:"a"`
	B string `json:"b"`
}

// LAN is a shared L2 segment: a Linux bridge in the Gateway router's
// namespace, or in a switch namespace of its own when there is no gateway.
type LAN struct {
	Name    string   `json:"name"`
	Subnet4 string   `json:"subnet4"`
	Subnet6 string   `json:"subnet6,omitempty"`
	Gateway string   `json:"gateway,omitempty"` // a router, first address of the subnet
	Members []string `json:"members"`           // nodes, addresses from .11 on
	// Mesh makes the members peer with each other.
	Mesh bool `json:"mesh,omitempty"`
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,11}$`)

// Load returns a built-in topology by name, or reads a YAML file.
func Load(nameOrFile string) (*Topology, error) {
	if t, ok := Builtins()[nameOrFile]; ok {
		return t, nil
	}
	data, err := os.ReadFile(nameOrFile)
	if err != nil {
		return nil, fmt.Errorf("topology %q is neither a built-in (%v) nor a readable file: %w", nameOrFile, BuiltinNames(), err)
	}
	var t Topology
	if err := yaml.UnmarshalStrict(data, &t); err != nil {
		return nil, fmt.Errorf("topology file %s: %w", nameOrFile, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("topology file %s: %w", nameOrFile, err)
	}
	return &t, nil
}

// BuiltinNames lists the built-in topologies, sorted.
func BuiltinNames() []string {
	var names []string
	for n := range Builtins() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks names, references and counts.
func (t *Topology) Validate() error {
	if !namePattern.MatchString(t.Name) {
		return fmt.Errorf("name %q: want lower-case letters, digits and '-', at most 12", t.Name)
	}
	if t.PodPool4 == "" {
		return fmt.Errorf("podPool4 is required")
	}
	if t.IPv6 && t.PodPool6 == "" {
		return fmt.Errorf("podPool6 is required with ipv6")
	}
	kind := map[string]string{}
	for _, r := range t.Routers {
		if err := addName(kind, r.Name, "router"); err != nil {
			return err
		}
		if r.ASN == 0 {
			return fmt.Errorf("router %s: asn must not be 0", r.Name)
		}
	}
	if len(t.Nodes) == 0 {
		return fmt.Errorf("at least one node is required")
	}
	for _, n := range t.Nodes {
		if err := addName(kind, n.Name, "node"); err != nil {
			return err
		}
		if n.ASN == 0 {
			return fmt.Errorf("node %s: asn must not be 0", n.Name)
		}
		if n.Pods < 0 || n.Pods > 50 {
			return fmt.Errorf("node %s: pods %d: want 0..50", n.Name, n.Pods)
		}
	}
	for i, l := range t.Links {
		if kind[l.A] == "" || kind[l.B] == "" || l.A == l.B {
			return fmt.Errorf("links[%d]: %s-%s: both ends must be distinct routers or nodes", i, l.A, l.B)
		}
		if kind[l.A] == "node" && kind[l.B] == "node" {
			return fmt.Errorf("links[%d]: %s-%s: connect nodes through a LAN, not a link", i, l.A, l.B)
		}
	}
	for _, lan := range t.LANs {
		if err := addName(kind, lan.Name, "lan"); err != nil {
			return err
		}
		if lan.Subnet4 == "" || (t.IPv6 && lan.Subnet6 == "") {
			return fmt.Errorf("lan %s: subnet4 (and subnet6 with ipv6) required", lan.Name)
		}
		if lan.Gateway != "" && kind[lan.Gateway] != "router" {
			return fmt.Errorf("lan %s: gateway %q is not a router", lan.Name, lan.Gateway)
		}
		for _, m := range lan.Members {
			if kind[m] != "node" {
				return fmt.Errorf("lan %s: member %q is not a node", lan.Name, m)
			}
		}
	}
	return nil
}

func addName(kind map[string]string, name, what string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%s name %q: want lower-case letters, digits and '-', at most 12 (it names interfaces)", what, name)
	}
	if kind[name] != "" {
		return fmt.Errorf("name %q is used twice", name)
	}
	kind[name] = what
	return nil
}

// Builtins returns fresh copies of the built-in topologies.
//
// leafspine: 2 spines (AS 65100, shared as in RFC 7938 so a route never
// comes back to a spine), 2 racks each with a ToR (AS 65101, 65102) and 2
// nodes (one AS per node, 65201..65204: with one AS per rack, a node would
// drop its rack neighbour's routes as an AS-path loop). Nodes sit on a
// per-rack LAN behind their ToR, so traffic between racks crosses ToR,
// spine, ToR.
func Builtins() map[string]*Topology {
	leafspine := func(name string, ipv6 bool) *Topology {
		t := &Topology{
			Name: name, IPv6: ipv6, HoldTime: 3,
			PodPool4: "10.244.0.0/16",
			Routers: []Router{
				{Name: "spine-1", ASN: 65100, Role: "spine"},
				{Name: "spine-2", ASN: 65100, Role: "spine"},
				{Name: "tor-1", ASN: 65101, Role: "leaf"},
				{Name: "tor-2", ASN: 65102, Role: "leaf"},
			},
			Nodes: []Node{
				{Name: "node-1", ASN: 65201, Pods: 2, Rack: "rack-1"},
				{Name: "node-2", ASN: 65202, Pods: 2, Rack: "rack-1"},
				{Name: "node-3", ASN: 65203, Pods: 2, Rack: "rack-2"},
				{Name: "node-4", ASN: 65204, Pods: 2, Rack: "rack-2"},
			},
			Links: []Link{
				{A: "spine-1", B: "tor-1"}, {A: "spine-1", B: "tor-2"},
				{A: "spine-2", B: "tor-1"}, {A: "spine-2", B: "tor-2"},
			},
			LANs: []LAN{
				{Name: "rack-1", Subnet4: "10.10.1.0/24", Gateway: "tor-1", Members: []string{"node-1", "node-2"}},
				{Name: "rack-2", Subnet4: "10.10.2.0/24", Gateway: "tor-2", Members: []string{"node-3", "node-4"}},
			},
		}
		if ipv6 {
			t.PodPool6 = "fd00:244::/48"
			t.LANs[0].Subnet6 = "fd00:10:1::/64"
			t.LANs[1].Subnet6 = "fd00:10:2::/64"
		}
		return t
	}
	ls := leafspine("leafspine", false)
	ls.Description = "2 spines, 2 racks (ToR + 2 nodes each), 2 pods per node, eBGP everywhere"
	ds := leafspine("dualstack", true)
	ds.Description = "leafspine with IPv6 addresses, IPv6 pod CIDRs and IPv6 sessions too"
	flat := &Topology{
		Name: "flat", HoldTime: 3, Description: "3 nodes on one L2 segment, full-mesh iBGP, no routers",
		PodPool4: "10.244.0.0/16",
		Nodes: []Node{
			{Name: "node-1", ASN: 64512, Pods: 2},
			{Name: "node-2", ASN: 64512, Pods: 2},
			{Name: "node-3", ASN: 64512, Pods: 2},
		},
		LANs: []LAN{{Name: "lan", Subnet4: "10.10.0.0/24", Members: []string{"node-1", "node-2", "node-3"}, Mesh: true}},
	}
	return map[string]*Topology{"leafspine": ls, "dualstack": ds, "flat": flat}
}
