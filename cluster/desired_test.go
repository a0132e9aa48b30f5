package cluster

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podroute/podroute/bgp"
)

func node(name, ip, cidr string, labels, ann map[string]string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann},
		Spec:       corev1.NodeSpec{PodCIDRs: []string{cidr}},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: name}}},
	}
}

func parseAll(t *testing.T, nodes ...*corev1.Node) []NodeInfo {
	t.Helper()
	var out []NodeInfo
	for _, n := range nodes {
		info, problems := ParseNode(n)
		if len(problems) > 0 {
			t.Logf("node %s problems: %v", n.Name, problems)
		}
		out = append(out, info)
	}
	return out
}

func peerAddrs(ps []bgp.Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Address.String())
	}
	return out
}

func TestComputeFullMesh(t *testing.T) {
	nodes := parseAll(t,
		node("a", "10.0.0.1", "10.244.1.0/24", nil, nil),
		node("b", "10.0.0.2", "10.244.2.0/24", nil, nil),
		node("c", "10.0.0.3", "10.244.3.0/24", nil, nil))
	d, problems := Compute(Inputs{LocalNode: "a", Nodes: nodes})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	if !d.Found || d.RouterID.String() != "10.0.0.1" || d.ASN != DefaultClusterASN {
		t.Fatalf("found %v router ID %s ASN %d", d.Found, d.RouterID, d.ASN)
	}
	if got := strings.Join(peerAddrs(d.Peers), ","); got != "10.0.0.2,10.0.0.3" {
		t.Errorf("mesh peers %s, want the two others", got)
	}
	for _, p := range d.Peers {
		if p.ASN != DefaultClusterASN || p.RouteReflectorClient {
			t.Errorf("peer %+v: want plain iBGP", p)
		}
	}
	if len(d.Policy.PodPools) != 3 || d.Policy.Transit {
		t.Errorf("policy %+v: want the three pod CIDRs as pools, no transit", d.Policy)
	}
	if len(d.PodCIDRs) != 1 || d.PodCIDRs[0] != netip.MustParsePrefix("10.244.1.0/24") {
		t.Errorf("pod CIDRs %v", d.PodCIDRs)
	}
}

func TestComputeRouteReflectors(t *testing.T) {
	rr := map[string]string{AnnotationRouteReflector: "244.0.0.1"}
	nodes := parseAll(t,
		node("a", "10.0.0.1", "10.244.1.0/24", nil, nil),
		node("b", "10.0.0.2", "10.244.2.0/24", nil, nil),
		node("r", "10.0.0.9", "10.244.9.0/24", nil, rr))
	client, _ := Compute(Inputs{LocalNode: "a", Nodes: nodes})
	if got := strings.Join(peerAddrs(client.Peers), ","); got != "10.0.0.9" {
		t.Errorf("client peers %s, want only the reflector", got)
	}
	refl, _ := Compute(Inputs{LocalNode: "r", Nodes: nodes})
	if got := strings.Join(peerAddrs(refl.Peers), ","); got != "10.0.0.1,10.0.0.2" {
		t.Errorf("reflector peers %s, want every other node", got)
	}
	for _, p := range refl.Peers {
		if !p.RouteReflectorClient || p.RouteReflectorClusterID != "244.0.0.1" {
			t.Errorf("reflector's peer %s not a client with cluster ID: %+v", p.Address, p)
		}
	}
	if !refl.Policy.Transit {
		t.Error("a reflector must pass routes on (transit)")
	}
}

func TestComputeBGPPeers(t *testing.T) {
	off := false
	nodes := parseAll(t,
		node("a", "10.0.0.1", "10.244.1.0/24", map[string]string{"rack": "r1"}, nil),
		node("b", "10.0.0.2", "10.244.2.0/24", map[string]string{"rack": "r2"}, nil))
	mk := func(name, sel, addr string, asn uint32, secret *SecretKeyRef) *BGPPeer {
		return &BGPPeer{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: BGPPeerSpec{NodeSelector: sel, PeerAddress: addr, PeerASN: asn, PasswordSecretRef: secret}}
	}
	secrets := func(name, key string) (string, error) {
		if name == "tor-pw" && key == "password" {
			return "s3cret", nil
		}
		return "", errors.New("secret " + name + " not found")
	}
	in := Inputs{
		LocalNode: "a", Nodes: nodes, Config: BGPConfigurationSpec{NodeToNodeMesh: &off, ASN: 65001},
		Peers: []*BGPPeer{
			mk("tor-r1", "rack=r1", "10.0.0.254", 65100, &SecretKeyRef{Name: "tor-pw", Key: "password"}),
			mk("tor-r2", "rack=r2", "10.0.1.254", 65100, nil),
			mk("bad-addr", "rack=r1", "not-an-ip", 65100, nil),
			mk("bad-asn", "rack=r1", "10.0.0.253", 0, nil),
			mk("no-secret", "rack=r1", "10.0.0.252", 65100, &SecretKeyRef{Name: "missing", Key: "password"}),
			mk("zz-dup", "rack=r1", "10.0.0.254", 65100, nil),
		},
		Secret: secrets,
	}
	d, problems := Compute(in)
	if got := strings.Join(peerAddrs(d.Peers), ","); got != "10.0.0.254" {
		t.Fatalf("peers %s, want only rack r1's ToR", got)
	}
	if d.Peers[0].Password != "s3cret" || d.Peers[0].ASN != 65100 || d.ASN != 65001 {
		t.Errorf("peer %+v, ASN %d", d.Peers[0], d.ASN)
	}
	reasons := map[string]string{}
	for _, p := range problems {
		reasons[p.Name] = p.Reason
	}
	want := map[string]string{"bad-addr": "InvalidPeerAddress", "bad-asn": "InvalidPeerASN", "no-secret": "SecretNotFound", "zz-dup": "DuplicatePeer"}
	for name, reason := range want {
		if reasons[name] != reason {
			t.Errorf("BGPPeer %s: problem %q, want %q (all: %v)", name, reasons[name], reason, problems)
		}
	}
	if len(problems) != len(want) {
		t.Errorf("problems %v, want exactly %d", problems, len(want))
	}
}

func TestParseNodeBadAnnotations(t *testing.T) {
	n := node("a", "10.0.0.1", "10.244.1.0/24", nil, map[string]string{AnnotationASN: "sixty", AnnotationRouteReflector: "nope"})
	info, problems := ParseNode(n)
	if len(problems) != 2 {
		t.Fatalf("problems %v, want one per bad annotation", problems)
	}
	if info.ASN != 0 || info.RouteReflector() || len(info.PodCIDRs) != 1 {
		t.Errorf("bad annotations must be ignored, the rest kept: %+v", info)
	}
	good := node("b", "10.0.0.2", "10.244.2.0/24", nil, map[string]string{AnnotationASN: "65010"})
	info, problems = ParseNode(good)
	if len(problems) != 0 || info.ASN != 65010 {
		t.Errorf("ASN annotation: %+v %v", info, problems)
	}
}

func TestComputeLocalMissing(t *testing.T) {
	d, _ := Compute(Inputs{LocalNode: "x", Nodes: parseAll(t, node("a", "10.0.0.1", "10.244.1.0/24", nil, nil))})
	if d.Found {
		t.Error("local node not in the list must not be Found")
	}
}

// Exactly one side of each node-to-node session dials (the lower address),
// so a re-created session cannot livelock with both sides dialling into
// each other's idle hold.
func TestComputeMeshOneSideDials(t *testing.T) {
	nodes := parseAll(t,
		node("a", "10.0.0.1", "10.244.1.0/24", nil, nil),
		node("b", "10.0.0.2", "10.244.2.0/24", nil, nil),
		node("c", "10.0.0.3", "10.244.3.0/24", nil, nil))
	dials := map[string]bool{}
	for _, local := range []string{"a", "b", "c"} {
		d, _ := Compute(Inputs{LocalNode: local, Nodes: nodes})
		for _, p := range d.Peers {
			dials[d.RouterID.String()+">"+p.Address.String()] = !p.Passive
		}
	}
	for _, pair := range [][2]string{{"10.0.0.1", "10.0.0.2"}, {"10.0.0.1", "10.0.0.3"}, {"10.0.0.2", "10.0.0.3"}} {
		lo, hi := pair[0], pair[1]
		if !dials[lo+">"+hi] || dials[hi+">"+lo] {
			t.Errorf("%s and %s: lower dials %v, higher dials %v; want only the lower", lo, hi, dials[lo+">"+hi], dials[hi+">"+lo])
		}
	}
}
