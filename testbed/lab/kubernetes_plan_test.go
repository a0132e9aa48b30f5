package lab_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/topology"
)

func TestPlanKubernetes(t *testing.T) {
	plan := func(name string) (*topology.Plan, *lab.KubePlan) {
		p, err := topology.NewPlan(topology.Builtins()[name])
		if err != nil {
			t.Fatal(err)
		}
		kp, err := lab.NewKubePlan(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return p, kp
	}
	p, kp := plan("leafspine")
	if got := kp.ControlPlane.Address.String(); got != "10.10.1.100" || kp.ControlPlane.Bridge != "br-rack-1" || kp.ControlPlane.BridgeIn != "tor-1" {
		t.Errorf("control plane at %s on %s in %s, want 10.10.1.100 on br-rack-1 in tor-1", got, kp.ControlPlane.Bridge, kp.ControlPlane.BridgeIn)
	}
	if len(kp.ControlPlane.Gateways) != 1 || kp.ControlPlane.Gateways[0].String() != "10.10.1.1" {
		t.Errorf("control plane gateways %v, want tor-1's 10.10.1.1", kp.ControlPlane.Gateways)
	}
	if s := kp.Configuration.Spec; *s.NodeToNodeMesh || s.ASN != cluster.DefaultClusterASN || len(s.PodPools) != 1 || s.PodPools[0] != "10.244.0.0/16" {
		t.Errorf("leafspine BGPConfiguration %+v, want mesh off, AS %d, pools [10.244.0.0/16]", s, cluster.DefaultClusterASN)
	}
	var peers []string
	for _, bp := range kp.Peers {
		peers = append(peers, fmt.Sprintf("%s %s %s %d %v", bp.Name, bp.Spec.NodeSelector, bp.Spec.PeerAddress, bp.Spec.PeerASN, bp.Spec.HoldTime.Duration))
	}
	if want := []string{
		"rack-1-tor-1 topology.podroute.io/rack=rack-1 10.10.1.1 65101 3s",
		"rack-2-tor-2 topology.podroute.io/rack=rack-2 10.10.2.1 65102 3s",
	}; strings.Join(peers, "\n") != strings.Join(want, "\n") {
		t.Errorf("BGPPeers:\n%s\nwant:\n%s", strings.Join(peers, "\n"), strings.Join(want, "\n"))
	}
	for i, n := range kp.Nodes {
		np := p.Nodes[i]
		if n.Labels[lab.KubeRackLabel] != np.Rack || n.Annotations[cluster.AnnotationASN] != fmt.Sprint(np.ASN) {
			t.Errorf("Node %s labels %v annotations %v, want rack %s and AS %d", n.Name, n.Labels, n.Annotations, np.Rack, np.ASN)
		}
		if a := n.Status.Addresses[0]; a.Type != corev1.NodeInternalIP || a.Address != np.Addresses()[0].String() {
			t.Errorf("Node %s first address %+v, want InternalIP %s", n.Name, a, np.Addresses()[0])
		}
		// The underlay: every node reaches the control plane through its ToR.
		if len(np.Gateways) != 1 {
			t.Errorf("node %s gateways %v, want its ToR", np.Name, np.Gateways)
		}
	}

	// The outside client: behind the first spine, outside the nodes'
	// networks, the spine originating its subnet.
	if c := kp.Client; c == nil || c.Router != "spine-1" || c.Iface.Addrs[0].String() != "203.0.113.2/24" ||
		c.Gateways[0].String() != "203.0.113.1" || !slices.Equal(c.Networks, []string{lab.KubeClientSubnet4}) {
		t.Errorf("leafspine outside client %+v, want 203.0.113.2/24 behind spine-1 (203.0.113.1), network %s", c, lab.KubeClientSubnet4)
	}

	_, kp = plan("dualstack")
	if c := kp.Client; c == nil || len(c.Iface.Addrs) != 2 || len(c.Networks) != 2 {
		t.Errorf("dualstack outside client %+v, want an IPv4 and an IPv6 address and network", c)
	}
	if len(kp.Peers) != 4 || kp.Peers[1].Spec.PeerAddress != "fd00:10:1::1" || len(kp.ClusterCIDRs) != 2 || kp.NodeMask6 != 64 {
		t.Errorf("dualstack: peers %d (second %s), cluster CIDRs %v: want a v4 and a v6 BGPPeer per rack and both pools", len(kp.Peers), kp.Peers[1].Spec.PeerAddress, kp.ClusterCIDRs)
	}
	if got := len(kp.Nodes[0].Status.Addresses); got != 3 {
		t.Errorf("dualstack Node addresses %v, want IPv4, IPv6 InternalIPs and the hostname", kp.Nodes[0].Status.Addresses)
	}

	_, kp = plan("flat")
	if s := kp.Configuration.Spec; !*s.NodeToNodeMesh || s.ASN != 64512 || len(kp.Peers) != 0 || len(kp.ControlPlane.Gateways) != 0 {
		t.Errorf("flat: %+v with %d BGPPeers and gateways %v, want the mesh on in AS 64512, no BGPPeer, no gateway", s, len(kp.Peers), kp.ControlPlane.Gateways)
	}
	if kp.Client != nil {
		t.Errorf("flat: outside client %+v, want none (no spine)", kp.Client)
	}
	for _, n := range kp.Nodes {
		if len(n.Annotations) != 0 {
			t.Errorf("flat Node %s annotations %v, want none (the cluster's AS)", n.Name, n.Annotations)
		}
	}
}
