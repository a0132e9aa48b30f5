// Package bird drives BIRD 2 (Debian's bird2) as a lab router: one bird
// process per network namespace with its own bird.conf, control socket,
// pid file and log in a directory the caller gives. It renders bird.conf
// from a RouterSpec (Config), starts, stops, kills and restarts the daemon
// by the PID it started (Start, Router), and reads its state through
// `birdc -v -s SOCKET` (Protocols, Routes, RIB), parsing BIRD's text
// replies by their reply codes, since BIRD has no JSON. router.go lists
// the quirks of Debian's BIRD 2.0.12 that shaped it.
//
// The end-to-end tests use it as a top-of-rack router beside FRR, and the
// BGP benchmark as a receiver to measure podrouted against.
//
// It is plain (non-test) code, like testbed/frr; it must not import the
// testing package.
//
// What it must not touch: BIRD instances it did not start (it signals only
// the process it started, by PID), the machine's own BIRD service, its
// /etc/bird/bird.conf and its control socket, and the machine's own
// network namespace. It knows nothing about topologies, podrouted or
// Kubernetes.
package bird
