//go:build tools

// Package tools pins the Kubernetes control-plane binaries that the testbed
// runs (kube-apiserver, kube-controller-manager, kubectl) so that `go mod tidy`
// keeps them in this module's go.sum. It is a separate module, kept out of the
// main go.mod, because k8s.io/kubernetes is not meant to be imported as a
// library: its own go.mod replaces the k8s.io staging modules with local paths,
// which this module re-points at the published v0.36.0 releases.
//
// Build with `make k8s-tools` (see k8s.mk at the repository root).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
