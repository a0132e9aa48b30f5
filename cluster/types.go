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
}

// MeshEnabled reports the node-to-node mesh setting (default on).
func (s BGPConfigurationSpec) MeshEnabled() bool {
	return s.NodeToNodeMesh == nil || *s.NodeToNodeMesh
}
