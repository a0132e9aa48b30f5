package cluster

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The API group of podroute's custom resources (manifests/crds.yaml).
const (
	Group   = "podroute.io"
	Version = "v1alpha1"
)

// Resources served by the CRDs.
var (
	BGPPeerResource          = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "bgppeers"}
	BGPConfigurationResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "bgpconfigurations"}
)

// Node annotations podroute reads.
const (
	// AnnotationASN gives one node its own AS number instead of the
	// cluster's (eBGP between nodes).
	AnnotationASN = "podroute.io/asn"
	// AnnotationRouteReflector makes the node a route reflector; the value
	// is its cluster ID, in IPv4 dotted-quad form.
	AnnotationRouteReflector = "podroute.io/route-reflector-cluster-id"
)

// Service annotations podroute reads.
const (
	// AnnotationAdvertise "false" keeps every address of the Service out
	// of BGP (in per-address ranges; an aggregate range is advertised as a
	// whole whatever one Service says).
	AnnotationAdvertise = "podroute.io/advertise"
	// AnnotationLoadBalancerIPs asks for specific LoadBalancer addresses,
	// comma-separated, at most one per family ("198.51.100.7,2001:db8::7").
	// It supersedes spec.loadBalancerIP, which is deprecated and holds one
	// address only.
	AnnotationLoadBalancerIPs = "podroute.io/loadBalancerIPs"
	// AnnotationAddressPool restricts allocation to the named pool.
	AnnotationAddressPool = "podroute.io/address-pool"
)

// DefaultLoadBalancerClass is the spec.loadBalancerClass podroute's
// allocator serves unless BGPConfiguration names another.
const DefaultLoadBalancerClass = "podroute.io/bgp"

// BGPConfigurationName is the one BGPConfiguration podroute reads.
const BGPConfigurationName = "default"

// DefaultClusterASN is used when no BGPConfiguration sets one.
const DefaultClusterASN = 64512

// BGPPeer is a BGP peer outside the cluster (typically a ToR) for the
// nodes its selector matches. Cluster-scoped.
type BGPPeer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BGPPeerSpec `json:"spec"`
}

// BGPPeerSpec is what a BGPPeer asks for.
type BGPPeerSpec struct {
	// NodeSelector is a label selector ("rack=rack-1"); empty selects
	// every node.
	NodeSelector string `json:"nodeSelector,omitempty"`
	PeerAddress  string `json:"peerAddress"`
	PeerASN      uint32 `json:"peerASN"`
	// PasswordSecretRef names a key of a Secret in podrouted's namespace
	// holding the TCP MD5 password.
	PasswordSecretRef *SecretKeyRef   `json:"passwordSecretRef,omitempty"`
	HoldTime          metav1.Duration `json:"holdTime,omitzero"`
	KeepaliveInterval metav1.Duration `json:"keepaliveInterval,omitzero"`
	ConnectRetry      metav1.Duration `json:"connectRetry,omitzero"`
	MultihopTTL       uint8           `json:"multihopTTL,omitempty"`
	MaxPrefixes       uint32          `json:"maxPrefixes,omitempty"`
	GracefulRestart   *bool           `json:"gracefulRestart,omitempty"`
}

// SecretKeyRef is one key of a Secret in podrouted's own namespace.
type SecretKeyRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// BGPConfiguration holds cluster-wide settings; podroute reads the one
// named "default". Cluster-scoped.
type BGPConfiguration struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              BGPConfigurationSpec `json:"spec"`
}

// BGPConfigurationSpec is the cluster-wide BGP setup.
type BGPConfigurationSpec struct {
	// ASN is the cluster's AS number (DefaultClusterASN when 0).
	ASN uint32 `json:"asn,omitempty"`
	// NodeToNodeMesh peers every node with every other (iBGP); on by
	// default. Off when nodes peer only with ToRs through BGPPeers.
	NodeToNodeMesh *bool `json:"nodeToNodeMesh,omitempty"`
	// PodPools are the prefixes accepted on import; empty means exactly
	// the nodes' pod CIDRs (and anything inside them).
	PodPools []string `json:"podPools,omitempty"`
	// ImportDefaultRoute accepts a default route from peers.
	ImportDefaultRoute bool `json:"importDefaultRoute,omitempty"`
	// MeshMaxPrefixes limits what one mesh peer may send (10000 when 0).
	MeshMaxPrefixes uint32 `json:"meshMaxPrefixes,omitempty"`
	// RouteProtocol is the kernel route protocol number podroute owns
	// (201 when 0). podrouted reads it when it starts: a change takes
	// effect on the next restart, so that routes of the old number are
	// never orphaned mid-flight.
	RouteProtocol int `json:"routeProtocol,omitempty"`

	// Service address ranges that may be advertised, per kind of address.
	// Nothing outside them is ever advertised; none at all (the default)
	// means no Service address is advertised.
	ServiceClusterIPs      []ServiceRange `json:"serviceClusterIPs,omitempty"`
	ServiceExternalIPs     []ServiceRange `json:"serviceExternalIPs,omitempty"`
	ServiceLoadBalancerIPs []ServiceRange `json:"serviceLoadBalancerIPs,omitempty"`
	// LoadBalancer configures the LoadBalancer address allocator.
	LoadBalancer *LoadBalancerSpec `json:"loadBalancer,omitempty"`
}

// ServiceRange is one range of Service addresses that may be advertised.
type ServiceRange struct {
	CIDR string `json:"cidr"`
	// Advertise is Aggregate (the range as one prefix, from every node)
	// or PerAddress (one /32 or /128 per Service address, from the nodes
	// the Service's traffic policy allows). Default: Aggregate for
	// ClusterIPs, PerAddress for external and LoadBalancer addresses.
	Advertise string `json:"advertise,omitempty"`
	// Communities ("ASN:value") and LargeCommunities
	// ("global:local1:local2") are attached to every prefix of the range.
	Communities      []string `json:"communities,omitempty"`
	LargeCommunities []string `json:"largeCommunities,omitempty"`
}

// LoadBalancerSpec configures LoadBalancer address allocation.
type LoadBalancerSpec struct {
	// Class is the spec.loadBalancerClass served (DefaultLoadBalancerClass
	// when empty).
	Class string `json:"class,omitempty"`
	// AllocateClassless also serves LoadBalancer Services without a
	// loadBalancerClass (default true). Turn it off when another
	// implementation owns those.
	AllocateClassless *bool `json:"allocateClassless,omitempty"`
	// Pools are tried in order.
	Pools []LoadBalancerPool `json:"pools,omitempty"`
}

// LoadBalancerPool is a named set of CIDRs addresses are handed out from.
type LoadBalancerPool struct {
	Name  string   `json:"name"`
	CIDRs []string `json:"cidrs"`
}

// MeshEnabled reports the node-to-node mesh setting (default on).
func (s BGPConfigurationSpec) MeshEnabled() bool {
	return s.NodeToNodeMesh == nil || *s.NodeToNodeMesh
}
