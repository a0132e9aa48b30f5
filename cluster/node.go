package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// NodeInfo is what podroute needs of a Node, parsed and checked.
type NodeInfo struct {
	Name        string
	Labels      map[string]string
	PodCIDRs    []netip.Prefix
	InternalIPs []netip.Addr // IPv4 first
	// ASN is the node's own AS from its annotation, 0 for the cluster's.
	ASN uint32
	// RRClusterID is set when the node is a route reflector.
	RRClusterID string
}

// RouteReflector reports whether the node reflects routes.
func (n NodeInfo) RouteReflector() bool { return n.RRClusterID != "" }

// Addr returns the node's InternalIP of the family of v6.
func (n NodeInfo) Addr(v6 bool) (netip.Addr, bool) {
	for _, a := range n.InternalIPs {
		if a.Is6() == v6 {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// ParseNode reads a Node. Problems with its annotations are returned and
// those annotations ignored (the node still takes part with defaults);
// a malformed pod CIDR is skipped the same way.
func ParseNode(n *corev1.Node) (NodeInfo, []error) {
	info := NodeInfo{Name: n.Name, Labels: n.Labels}
	var problems []error
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil || p != p.Masked() {
			problems = append(problems, fmt.Errorf("spec.podCIDRs: %q is not a network CIDR", c))
			continue
		}
		info.PodCIDRs = append(info.PodCIDRs, p)
	}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			info.InternalIPs = append(info.InternalIPs, ip.Unmap())
		}
	}
	sort.SliceStable(info.InternalIPs, func(i, j int) bool { return info.InternalIPs[i].Is4() && !info.InternalIPs[j].Is4() })
	if v, ok := n.Annotations[AnnotationASN]; ok {
		asn, err := strconv.ParseUint(v, 10, 32)
		if err != nil || asn == 0 || asn == 23456 || asn == 4294967295 {
			problems = append(problems, fmt.Errorf("annotation %s: %q is not an AS number (1..4294967294, not 23456); using the cluster's AS", AnnotationASN, v))
		} else {
			info.ASN = uint32(asn)
		}
	}
	if v, ok := n.Annotations[AnnotationRouteReflector]; ok {
		id, err := netip.ParseAddr(v)
		if err != nil || !id.Is4() {
			problems = append(problems, fmt.Errorf("annotation %s: %q is not a cluster ID in IPv4 form (e.g. 244.0.0.1); the node is not a route reflector", AnnotationRouteReflector, v))
		} else {
			info.RRClusterID = id.String()
		}
	}
	return info, problems
}
