// Package routes keeps the kernel's routing table in line with the routes
// podroute wants: learned pod CIDRs (one or more next hops, ECMP as one
// multipath route) and a blackhole for each of this node's own pod CIDRs.
//
// It owns exactly the routes that carry its route protocol number in its
// table, and never changes or deletes a route with any other protocol. It
// works by diff: desired routes against the kernel's, applied with netlink.
// Bulk changes are written as pipelined batches on one netlink socket (no
// dump and no round trip per route); a single change goes out at once.
//
// Routes of its protocol found in the kernel at start (left by a previous
// run) are adopted and kept until MarkSynced says the table has been
// re-learned, so a daemon restart drops no traffic. Drift repairs itself:
// route, link and address events from netlink and a periodic full resync
// re-install what someone removed.
//
// Learned routes whose next hop no peer may set (an address of this node,
// or one inside this node's own pod CIDRs) lose that next hop, and are
// refused when none is left; Snapshot says why (nexthop.go).
//
// The package knows nothing about BGP or Kubernetes.
package routes
