// Package cluster is podroute's Kubernetes side. It watches Nodes and
// podroute's custom resources (BGPPeer, BGPConfiguration) with client-go
// shared informers and turns them into this node's desired BGP state: its
// pod CIDRs, the peers it should have (node-to-node mesh or route
// reflectors, plus BGPPeers that select it) and the import policy inputs.
//
// Services: once BGPConfiguration names service ranges (or LoadBalancer
// pools), it also watches Services and EndpointSlices, stripped by
// StripServiceObjects to what advertisement reads, and
// ComputeServiceAdvertisements (a pure function) decides which Service
// prefixes this node originates: aggregate ranges from every node; per
// address, every node for traffic policy Cluster and only nodes with a
// ready endpoint for Local; nothing outside a configured range, nothing
// for a Service that opts out. Every informer event recomputes the whole
// desired state after a short settle (100 ms), so an endpoint going
// not-ready withdraws its node's /32 well within a second. Allocation of
// LoadBalancer addresses is not here but in the leader-elected controller
// of package lbipam, which shares the Service informer (Watcher.Services).
//
// Bad input on one object (an unparsable annotation, an ASN of 0, a peer
// address that is not an IP, a missing Secret, a service range that is not
// a CIDR) is reported as a Kubernetes Event on that object and in the log,
// and that object is skipped; the rest still applies. A Service's problems
// are only logged here: every node would report the same one, so lbipam's
// single leader puts them on the Service.
//
// It knows nothing about the kernel or GoBGP's internals: it hands plain
// bgp.Peer, bgp.Policy and bgp.Advertisement values to the daemon, which
// applies them.
package cluster
