// Package k8se2e runs Kubernetes' own end-to-end tests (the upstream
// e2e.test v1.36.0, through the ginkgo CLI) against the lab's real-node
// Kubernetes mode: the leaf-spine fabric with FRR, podrouted carrying the
// routes over BGP, and containerd, kubelet and kube-proxy in every node.
// It is the one implementation behind `make e2e`, `podroute-lab e2e` and
// the Conformance test of `make test` (testbed/e2e).
//
// What it owns: the suites (named focus expressions: network, conformance,
// netpol, services), the one skip list (Skips: only specs this machine or
// lab cannot run, each with its reason, never a spec because podroute
// fails it), the run (ginkgo from inside the control plane's network
// namespace with the admin kubeconfig, a JUnit report per suite under a
// directory the caller names), the counts read back from the JUnit report,
// and the report: ginkgo's summary, time, the memory of every node and of
// the control plane, and the closing line "N passed, M failed".
//
// What it must not touch: anything but the lab it brings up (Run) or is
// given (RunOnLab); the lab package does all the building and tearing
// down.
package k8se2e
