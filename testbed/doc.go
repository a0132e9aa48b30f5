// Package testbed holds no code: it is the folder of podroute's lab, a small
// data centre of Linux network namespaces on one machine, split by job:
//
//	netns         namespaces, veth links and bridges, processes stopped by
//	              PID, run IDs and the Cleanup stack (the plumbing)
//	frr           the FRR router driver: frr.conf, daemons, JSON state
//	bird          the BIRD 2 router driver: bird.conf, one process per
//	              namespace, state parsed from birdc's replies
//	topology      the topology model and its address plan (pure data)
//	lab           the lab itself: up, attach, down, state, pods through
//	              podroute-cni, Kubernetes mode, observation, faults
//	containerlab  the same topologies as containerlab files (generator
//	              and the generated files side by side)
//	k8s           a real control plane (etcd, kube-apiserver,
//	              kube-controller-manager) for tests and Kubernetes mode
//	testenv       helpers for tests that build lab parts by hand
//	bgppeer       a scriptable raw BGP peer for tests: any bytes, well-formed
//	              or not, after a real OPEN/KEEPALIVE exchange; records the
//	              NOTIFICATIONs it gets back
//	e2e           end-to-end tests: the routing core, the built-in
//	              topologies, Kubernetes mode, podroute-cni, hostile peers
//	kubetest      Kubernetes-mode tests against a hand-built lab
//	bgpbench      the BGP-to-kernel benchmark (podrouted beside BIRD)
//	tools         a separate Go module that builds the Kubernetes binaries
//
// Imports go one way: netns <- frr <- topology <- lab <- k8s, and the test
// packages on top; bird needs only netns; bgppeer stands alone (it knows no
// namespaces). cmd/podroute-lab is a thin CLI over lab, topology and
// containerlab.
//
// What every package here must not touch: the machine's own (root) network
// namespace, and any process, namespace, FRR or BIRD instance it did not
// create.
// Every address, route and link lives inside a namespace the lab created,
// and every name carries a run ID so that two labs or test runs never
// collide.
package testbed
