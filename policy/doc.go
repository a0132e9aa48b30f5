// Package policy turns Kubernetes NetworkPolicy (networking.k8s.io/v1) into
// what this node must enforce for its own pods.
//
// What it owns: the rule computation, a pure function (Compute) from Pods,
// Namespaces and NetworkPolicies to, per local pod, the policies that isolate
// it in each direction, and per policy its compiled rules (peer addresses as
// canonical prefixes, ports by number, named ports resolved to addresses and
// numbers). Local pods are the ones whose spec.nodeName is this node, that
// are not on the host network, not terminated, and have addresses.
//
// Its sub-packages do the rest: policy/nft writes the result into the
// node's kernel (its own nftables table only), policy/controller feeds
// Compute from client-go informers and runs the kernel side.
//
// A policy podroute cannot express (an unparsable selector, a protocol other
// than TCP, UDP and SCTP, an invalid port or CIDR) is reported in
// Result.Problems, naming the object and why, and is narrowed, never
// widened: a bad peer or port matches nothing, and a bad podSelector selects
// every pod of its namespace with no rules, so that the mistake isolates
// pods instead of opening them.
//
// What it must not touch: anything. It does no I/O, knows nothing about
// nftables, routes or BGP, and never mutates its inputs.
package policy
