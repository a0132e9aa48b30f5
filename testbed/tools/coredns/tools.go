//go:build tools

// Package tools pins CoreDNS, the lab's cluster DNS (a Deployment behind the
// kube-dns Service; see testbed/kubenode). It is a module of its own, apart
// from ../go.mod, so that CoreDNS's many dependencies (cloud DNS backends,
// etcd client, ...) never move the versions the Kubernetes binaries are built
// with. Build with `make e2e-tools` (k8s.mk).
package tools

import _ "github.com/coredns/coredns"
