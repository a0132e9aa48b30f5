// Package testbed builds the podroute lab out of Linux network namespaces on
// one machine: namespaces, veth links and bridges between them, FRR routers
// (zebra + bgpd, one instance per namespace) and long-running processes such
// as podrouted, plus the bookkeeping that tears all of it down again.
//
// It is plain (non-test) code so that cmd/podroute-lab can use it as well as
// the integration tests; it must not import the testing package. Tests wrap a
// Cleanup with t.Cleanup themselves.
//
// What it must not touch: the machine's own (root) network namespace. Every
// address, route and link this package creates lives inside a namespace that
// the caller created through CreateNetns, and every name carries a run ID
// (NewRunID) so that two labs or test runs never collide. It only ever
// signals processes it started itself, by PID, after checking they are ours.
package testbed
