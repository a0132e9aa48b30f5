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
//	              podroute-cni, Kubernetes mode (a real cluster: control
//	              plane, real nodes, CoreDNS, real Pods), observation,
//	              memory, faults
//	containerlab  the same topologies as containerlab files (generator
//	              and the generated files side by side)
//	k8s           a real control plane (etcd, kube-apiserver,
//	              kube-controller-manager) for tests and Kubernetes mode
//	kubenode      a real Kubernetes node in a namespace (containerd,
//	              kubelet, kube-proxy), kube-scheduler, CoreDNS manifests
//	images        the container images real nodes and e2e specs use,
//	              built without a registry and imported into containerd
//	k8se2e        Kubernetes' own e2e.test against the real-node lab:
//	              suites, the skip list, JUnit counts, the report
//	testenv       helpers for tests that build lab parts by hand
//	bgppeer       a scriptable raw BGP peer for tests: any bytes, well-formed
//	              or not, after a real OPEN/KEEPALIVE exchange; records the
//	              NOTIFICATIONs it gets back
//	e2e           end-to-end tests: the routing core, the built-in
//	              topologies, the real-node lab with the sig-network
//	              Conformance specs, podroute-cni, hostile peers
//	kubetest      Kubernetes-mode tests against a hand-built lab
//	bgpbench      the BGP-to-kernel benchmark (podrouted beside BIRD)
//	tools         a separate Go module that builds the Kubernetes binaries,
//	              e2e.test, ginkgo, agnhost and (tools/coredns) CoreDNS
//
// Imports go one way: netns <- frr <- topology <- lab <- k8s <- k8se2e,
// images <- kubenode <- lab, and the test packages on top; bird needs only
// netns; bgppeer stands alone (it knows no namespaces). cmd/podroute-lab
// is a thin CLI over lab, topology, k8se2e and containerlab.
//
// What every package here must not touch: the machine's own (root) network
// namespace, and any process, namespace, FRR or BIRD instance it did not
// create.
// Every address, route and link lives inside a namespace the lab created,
// and every name carries a run ID so that two labs or test runs never
// collide.
package testbed
