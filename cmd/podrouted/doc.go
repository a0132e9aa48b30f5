// Command podrouted is podroute's node daemon. It reads its configuration
// (static mode: a YAML file plus flag overrides), wires the BGP speaker to
// the kernel route reconciler, and serves the status API for the podroute
// CLI. It holds no routing logic of its own: that lives in packages bgp
// and routes.
package main
