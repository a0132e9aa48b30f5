// Package bgp is podroute's BGP speaker: a GoBGP server running in this
// process, configured from desired state.
//
// It owns the BGP side only: global settings, the peer set (applied by
// diff, so that changing one peer never resets another), the prefixes this
// node originates, the import and export policies that keep peers from
// hijacking or flooding the node, and the stream of best-path changes
// turned into RouteUpdates (prefix to next hops, ECMP included).
//
// It knows nothing about the kernel (package routes consumes its updates)
// and nothing about Kubernetes (callers hand it plain values).
package bgp
