// Package kubetest holds the integration tests of podroute's Kubernetes
// mode against a real control plane (etcd and kube-apiserver from
// testbed/k8s, built with `make k8s-tools`).
//
// One lab serves every scenario, because starting a control plane costs
// tens of seconds on a 2-core machine:
//
//	                      LAN (bridge br0 in the switch namespace)
//	   ┌──────────────┬──────────────┬──────────────┬──────────────┐
//	control plane   router (FRR)   node-1         node-2         node-3
//	10.80.0.10      10.80.0.1      10.80.0.11     10.80.0.12     10.80.0.13
//	etcd+apiserver  AS 65000       podrouted      podrouted      podrouted
//	                               pod 10.244.1.10 pod 10.244.2.10 pod 10.244.3.10
//
// The nodes run podrouted --kubernetes with a kubeconfig holding the
// podrouted ServiceAccount's token (TokenRequest) after manifests/00-02
// were applied for real, so the tests also prove that RBAC is enough. The
// test creates the Node objects itself (labels, spec.podCIDRs, an
// InternalIP via UpdateStatus), as kubelet and kube-controller-manager
// would. Pods are namespaces wired by hand as in testbed/e2e's core lab: a /32
// behind a veth, 169.254.1.1 on the node side, a default route.
//
// This package has no non-test code: it exists so that these slow,
// root-only tests run on their own (`go test ./testbed/kubetest/`) and
// stay out of testbed/e2e's test binary.
package kubetest
