// Command podroute is the operator CLI for podrouted, the node daemon. It
// reads the daemon's status API over the local unix socket and prints it the
// way `calicoctl node status` does: the node, its BGP sessions, the prefixes
// it originates and the routes it keeps in the kernel.
//
// The CLI only reads. It knows the daemon through package api alone and must
// not import the daemon's packages (bgp, routes, cluster) to compute anything
// itself: what it shows is what the daemon reported.
//
// main.go only wires signals and the exit code; root.go holds the global
// flags and the one place that talks to the socket; commands.go has one small
// function per command; render.go turns responses into tables and JSON, and
// is where the output format is tested.
package main
