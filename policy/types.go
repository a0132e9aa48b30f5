package policy

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Input is everything Compute reads: the cluster's Pods (peers can be
// anywhere), Namespaces (for namespaceSelector) and NetworkPolicies, and
// the name of this node (whose pods are enforced here).
type Input struct {
	NodeName   string
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
	Policies   []*networkingv1.NetworkPolicy
}

// Key names a namespaced object, as "namespace/name".
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Direction is ingress (traffic to a local pod) or egress (from it).
type Direction int

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Protocol is a transport protocol a NetworkPolicy can name.
type Protocol string

const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// Protocols lists the protocols in the order rules are written.
var Protocols = []Protocol{TCP, UDP, SCTP}

// Result is what this node enforces.
type Result struct {
	// Pods are the local pods: on this node, not host-network, not
	// terminated, with addresses. Pods no policy selects are here too
	// (Ingress and Egress empty), so status can show them.
	Pods map[Key]*LocalPod
	// Policies are the compiled policies that select at least one local
	// pod; the others cost this node nothing.
	Policies map[Key]*Compiled
	// Problems are the parts of policies podroute could not express; each
	// was narrowed (matches nothing), never widened.
	Problems []Problem
}

// LocalPod is a pod this node enforces policy for.
type LocalPod struct {
	Key   Key
	Addrs []netip.Addr // IPv4 first
	// Ingress and Egress list, sorted, the policies that isolate the pod in
	// that direction; empty means not isolated (everything allowed). A pod
	// that is isolated is allowed exactly the union of those policies'
	// rules for that direction.
	Ingress, Egress []Key
}

// Compiled is one NetworkPolicy reduced to addresses and numbers.
type Compiled struct {
	Key Key
	// Ingress and Egress hold the rules for each direction the policy's
	// policyTypes name (after defaulting); a direction it does not name is
	// nil and the policy does not isolate pods for it. A named direction
	// with no rules isolates and allows nothing.
	Ingress, Egress []Rule
	HasIngress      bool
	HasEgress       bool
	// Selects are the local pods the policy selects, sorted.
	Selects []Key
}

// Rules returns the rules for d.
func (c *Compiled) Rules(d Direction) []Rule {
	if d == Egress {
		return c.Egress
	}
	return c.Ingress
}

// Applies reports whether the policy isolates pods in direction d.
func (c *Compiled) Applies(d Direction) bool {
	if d == Egress {
		return c.HasEgress
	}
	return c.HasIngress
}

// Rule is one ingress or egress rule of a policy. Its shape (which of the
// fields below are in use) depends only on the policy's spec, never on
// pods, so a pod coming or going changes only addresses in Peers and Named:
// the kernel side then updates set elements, not rules.
type Rule struct {
	// AnyPeer: the rule has no from/to, so every address is a peer.
	AnyPeer bool
	// Peers are the peer addresses (pods the selectors match, ipBlocks
	// minus their excepts) as the fewest non-overlapping prefixes, IPv4
	// first. Unused when AnyPeer.
	Peers []netip.Prefix
	// PeerID names the peer definition (selectors as the API reads them,
	// ipBlocks as addresses): rules with the same PeerID, in any policy,
	// have the same Peers, so the kernel keeps one set for all of them.
	// Empty when AnyPeer.
	PeerID string
	// AnyPort: the rule lists no ports, so every protocol and port is
	// allowed (ICMP too).
	AnyPort bool
	// Ports are the numeric ports, by protocol, sorted.
	Ports []PortRange
	// HasNamed: the rule lists ports by name. Named then holds them
	// resolved: for ingress, per local pod the policy selects (the
	// destination's container ports); for egress, per peer pod (the
	// destination's container ports), so Named already restricts the peer.
	HasNamed bool
	Named    []NamedPort
	// NamedID is, for egress, like PeerID for Named (same peers and
	// names, same Named); empty for ingress, whose Named depend on the
	// policy's own pods.
	NamedID string
}

// PortRange is First..Last of one protocol; 0..65535 is the whole protocol
// (a policy port with a protocol and no port).
type PortRange struct {
	Proto       Protocol
	First, Last uint16
}

// AllPorts reports whether r is the whole protocol.
func (r PortRange) AllPorts() bool { return r.First == 0 && r.Last == 65535 }

func (r PortRange) String() string {
	switch {
	case r.AllPorts():
		return string(r.Proto)
	case r.First == r.Last:
		return fmt.Sprintf("%s/%d", r.Proto, r.First)
	}
	return fmt.Sprintf("%s/%d-%d", r.Proto, r.First, r.Last)
}

// NamedPort is a named port resolved for one pod address: traffic to Addr
// on Proto/Port.
type NamedPort struct {
	Addr  netip.Addr
	Proto Protocol
	Port  uint16
}

// Problem is a part of an object podroute could not express.
type Problem struct {
	Kind   string // "NetworkPolicy" (or "Pod")
	Object Key
	Reason string // a CamelCase reason, as Kubernetes Events have
	// Message says what was wrong and what podroute did instead.
	Message string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s %s: %s: %s", p.Kind, p.Object, p.Reason, p.Message)
}
