package topology

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/podroute/podroute/testbed/frr"
)

func TestPlanLeafspineAddressesAndSessions(t *testing.T) {
	p, err := NewPlan(Builtins()["leafspine"])
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Routers) != 4 || len(p.Nodes) != 4 || len(p.Wires) != 8 {
		t.Fatalf("routers %d nodes %d wires %d, want 4 4 8", len(p.Routers), len(p.Nodes), len(p.Wires))
	}
	n1 := p.Nodes[0]
	if got := n1.PodCIDRs[0].String(); got != "10.244.1.0/24" {
		t.Errorf("node-1 pod CIDR %s", got)
	}
	if got := n1.Addresses()[0].String(); got != "10.10.1.11" {
		t.Errorf("node-1 address %s, want 10.10.1.11 on rack-1's LAN", got)
	}
	if len(n1.Config.Peers) != 1 || n1.Config.Peers[0].Address != "10.10.1.1" || n1.Config.Peers[0].ASN != 65101 {
		t.Errorf("node-1 peers %+v, want tor-1 at 10.10.1.1 AS 65101", n1.Config.Peers)
	}
	// Every podrouted config the plan writes must pass the daemon's own
	// validation.
	for _, n := range p.Nodes {
		c := *n.Config
		c.ApplyDefaults()
		if err := c.Validate(); err != nil {
			t.Errorf("node %s config invalid: %v", n.Name, err)
		}
		if len(n.PodPlans) != 2 {
			t.Errorf("node %s pods %d", n.Name, len(n.PodPlans))
		}
	}
	tor1 := p.Routers[2]
	conf := frr.Config(tor1.Spec)
	for _, want := range []string{"bgp listen range 10.10.1.0/24 peer-group rack-1-v4", "neighbor 172.30.0.1 remote-as 65100", "neighbor 172.30.0.9 remote-as 65100"} {
		if !strings.Contains(conf, want) {
			t.Errorf("tor-1 frr.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestPlanDualstackAndFlat(t *testing.T) {
	ds, err := NewPlan(Builtins()["dualstack"])
	if err != nil {
		t.Fatal(err)
	}
	n4 := ds.Nodes[3]
	if len(n4.PodCIDRs) != 2 || n4.PodCIDRs[1] != netip.MustParsePrefix("fd00:244:0:4::/64") {
		t.Errorf("node-4 pod CIDRs %v", n4.PodCIDRs)
	}
	if len(n4.Config.Peers) != 2 {
		t.Errorf("node-4 peers %+v, want a v4 and a v6 session", n4.Config.Peers)
	}
	flat, err := NewPlan(Builtins()["flat"])
	if err != nil {
		t.Fatal(err)
	}
	if len(flat.Switches) != 1 || len(flat.Routers) != 0 {
		t.Errorf("flat: switches %v routers %d", flat.Switches, len(flat.Routers))
	}
	for _, n := range flat.Nodes {
		if len(n.Config.Peers) != 2 {
			t.Errorf("flat %s peers %+v, want the 2 others", n.Name, n.Config.Peers)
		}
		for _, pr := range n.Config.Peers {
			if pr.ASN != 64512 {
				t.Errorf("flat %s peer %s AS %d, want iBGP 64512", n.Name, pr.Address, pr.ASN)
			}
		}
	}
}

func TestTopologyValidate(t *testing.T) {
	for name, mutate := range map[string]func(*Topology){
		"duplicate name":    func(t *Topology) { t.Nodes[1].Name = t.Nodes[0].Name },
		"node-node link":    func(t *Topology) { t.Links = append(t.Links, Link{A: "node-1", B: "node-2"}) },
		"unknown lan gw":    func(t *Topology) { t.LANs[0].Gateway = "nope" },
		"long name":         func(t *Topology) { t.Nodes[0].Name = "a-very-long-node-name" },
		"ipv6 without pool": func(t *Topology) { t.IPv6 = true; t.PodPool6 = "" },
	} {
		topo := Builtins()["leafspine"]
		mutate(topo)
		if err := topo.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}
