// Package netns is the lab's plumbing: named network namespaces, veth
// links and bridges between them, addresses and routes inside them,
// long-running processes started in them and stopped by PID, run IDs that
// keep two labs apart, and the Cleanup stack that tears all of it down.
// Every other lab package (frr, lab, the Kubernetes harness) and the tests
// build on it.
//
// It is plain (non-test) code so that cmd/podroute-lab can use it as well as
// the tests; it must not import the testing package (testbed/testenv ties a
// Cleanup to a test).
//
// What it must not touch: the machine's own (root) network namespace. Every
// address, route and link it creates lives inside a namespace that the
// caller created with Create, and every name carries a run ID (NewRunID) so
// that two labs or test runs never collide. It only ever signals processes
// it started itself, by PID, or recorded ones whose command line it checked
// first (StopPID). It knows nothing about FRR, podrouted or topologies.
package netns
