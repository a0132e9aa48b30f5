// Package k8sharness runs a real, minimal Kubernetes control plane for
// podroute's integration tests and the lab's Kubernetes mode: etcd from
// Debian's etcd-server package, kube-apiserver (and optionally
// kube-controller-manager, for Node pod CIDR allocation) built from
// k8s.io/kubernetes v1.36.0 by `make k8s-tools` (see k8s.mk and
// testbed/tools), and kubectl from the same build.
//
// What it owns: the processes it starts (stopped by PID, SIGTERM then
// SIGKILL), a working directory with etcd's data, a throw-away PKI (CA,
// serving certificate, service-account signing key, all generated in Go), a
// static token file and kubeconfigs. It listens only on the bind address it is
// given (loopback by default) or inside the network namespace it is given, on
// ports it checked were free.
//
// What it must not touch: any system etcd (a distro service keeps running on
// its own ports and data dir), the machine's kubeconfig, and any process it
// did not start. It must not import the testing package (cmd/podroute-lab
// uses it too); tests register Stop with t.Cleanup themselves.
package k8sharness
