// Package frr drives the lab's routers: real FRR (Debian's zebra and bgpd),
// one instance per network namespace with its own pathspace. It renders
// their frr.conf from a RouterSpec (Config), starts, stops and restarts the
// daemons (Start, Router), and reads their state through vtysh's JSON
// output (BGPNeighbors, RIB, Routes). router.go lists the quirks of
// Debian's FRR 8.4 that shaped it.
//
// It is plain (non-test) code: the lab, cmd/podroute-lab, the containerlab
// generator and the tests all use it. It must not import the testing
// package.
//
// What it must not touch: FRR instances it did not start (daemons are
// signalled only by the PID in their own pid file, after checking their
// command line names this instance), the machine's own FRR service and
// /etc/frr. Everything an instance needs lives in its directory and in
// RunDir/NAME. It knows nothing about topologies, podrouted or Kubernetes.
package frr
