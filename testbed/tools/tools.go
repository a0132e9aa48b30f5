//go:build tools

// Package tools pins the Kubernetes binaries that the testbed runs so that
// `go mod tidy` keeps them in this module's go.sum:
//
//   - the control plane: kube-apiserver, kube-controller-manager, kubectl
//     (`make k8s-tools`);
//   - real lab nodes: kubelet, kube-proxy, and kube-scheduler for the control
//     plane (`make k8s-node-tools`);
//   - Kubernetes' own end-to-end tests: e2e.test (`go test -c` of
//     k8s.io/kubernetes/test/e2e, whose test file imports the packages listed
//     below), the ginkgo CLI at the version k8s.io/kubernetes pins, and the
//     test images' Go programs agnhost and regression-issue-74839
//     (`make e2e-tools`).
//
// It is a separate module, kept out of the main go.mod, because
// k8s.io/kubernetes is not meant to be imported as a library: its own go.mod
// replaces the k8s.io staging modules with local paths, which this module
// re-points at the published v0.36.0 releases. CoreDNS lives in its own
// module (coredns/) so that its dependencies do not move these.
//
// Build with the targets named above (see k8s.mk at the repository root).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"

	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"

	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/images/agnhost"
	_ "k8s.io/kubernetes/test/images/regression-issue-74839"

	// What k8s.io/kubernetes/test/e2e/e2e_test.go imports, so that
	// `go test -c k8s.io/kubernetes/test/e2e` finds every module sum.
	_ "k8s.io/kubernetes/test/conformance/testdata"
	_ "k8s.io/kubernetes/test/e2e"
	_ "k8s.io/kubernetes/test/e2e/apimachinery"
	_ "k8s.io/kubernetes/test/e2e/apps"
	_ "k8s.io/kubernetes/test/e2e/architecture"
	_ "k8s.io/kubernetes/test/e2e/auth"
	_ "k8s.io/kubernetes/test/e2e/autoscaling"
	_ "k8s.io/kubernetes/test/e2e/cloud"
	_ "k8s.io/kubernetes/test/e2e/common"
	_ "k8s.io/kubernetes/test/e2e/dra"
	_ "k8s.io/kubernetes/test/e2e/feature"
	_ "k8s.io/kubernetes/test/e2e/framework"
	_ "k8s.io/kubernetes/test/e2e/framework/config"
	_ "k8s.io/kubernetes/test/e2e/framework/debug/init"
	_ "k8s.io/kubernetes/test/e2e/framework/metrics/init"
	_ "k8s.io/kubernetes/test/e2e/framework/node/init"
	_ "k8s.io/kubernetes/test/e2e/framework/testfiles"
	_ "k8s.io/kubernetes/test/e2e/instrumentation"
	_ "k8s.io/kubernetes/test/e2e/invariants"
	_ "k8s.io/kubernetes/test/e2e/invariants/logcheck"
	_ "k8s.io/kubernetes/test/e2e/kubectl"
	_ "k8s.io/kubernetes/test/e2e/lifecycle"
	_ "k8s.io/kubernetes/test/e2e/lifecycle/bootstrap"
	_ "k8s.io/kubernetes/test/e2e/network"
	_ "k8s.io/kubernetes/test/e2e/node"
	_ "k8s.io/kubernetes/test/e2e/scheduling"
	_ "k8s.io/kubernetes/test/e2e/storage"
	_ "k8s.io/kubernetes/test/e2e/storage/csimock"
	_ "k8s.io/kubernetes/test/e2e/storage/external"
	_ "k8s.io/kubernetes/test/e2e/testing-manifests"
	_ "k8s.io/kubernetes/test/e2e/windows"
	_ "k8s.io/kubernetes/test/fixtures"
	_ "k8s.io/kubernetes/test/utils/format"
)
