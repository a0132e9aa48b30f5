// Package cluster is podroute's Kubernetes side. It watches Nodes and
// podroute's custom resources (BGPPeer, BGPConfiguration) with client-go
// shared informers and turns them into this node's desired BGP state: its
// pod CIDRs, the peers it should have (node-to-node mesh or route
// reflectors, plus BGPPeers that select it) and the import policy inputs.
//
// Bad input on one object (an unparsable annotation, an ASN of 0, a peer
// address that is not an IP, a missing Secret) is reported as a Kubernetes
// Event on that object and in the log, and that object is skipped; the rest
// still applies.
//
// It knows nothing about the kernel or GoBGP's internals: it hands plain
// bgp.Peer and bgp.Policy values to the daemon, which applies them.
package cluster
