# k8s.mk: the real Kubernetes control plane used by testbed/k8s and the lab's
# Kubernetes mode. Included from the Makefile.
#
#   make k8s-tools    build kube-apiserver, kube-controller-manager and kubectl
#                     (k8s.io/kubernetes v1.36.0, from the separate module in
#                     testbed/tools) into $(PODROUTE_K8S_BIN), once, and make
#                     sure Debian's etcd-server (etcd 3.4) is installed.
#
# How long: a cold build (empty Go build cache for k8s.io/kubernetes; modules
# already downloaded, which takes ~10 s more) of the three binaries took
# 8 min 46 s on 2 vCPUs (shared with other work at the time). With a warm Go build cache
# (e.g. after PODROUTE_K8S_BIN changed) it takes ~30 s. When the binaries are
# already in $(PODROUTE_K8S_BIN) and report $(K8S_VERSION) the target does
# nothing (0.2 s). Binaries are stripped (-s -w, -trimpath): kube-apiserver
# 101 MiB, kube-controller-manager 91 MiB, kubectl 73 MiB.
#
# The tests find the binaries through PODROUTE_K8S_BIN (same default as here)
# and skip, naming this target, when they are missing.

GO               ?= go
K8S_VERSION      := v1.36.0
PODROUTE_K8S_BIN ?= $(HOME)/.cache/podroute/k8s-$(K8S_VERSION)
export PODROUTE_K8S_BIN

K8S_TOOLS_MOD := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))/testbed/tools
K8S_COMMANDS  := kube-apiserver kube-controller-manager kubectl
# What hack/lib/version.sh would stamp; without it `--version` says v0.0.0-master.
K8S_VERSION_PKGS := k8s.io/client-go/pkg/version k8s.io/component-base/version
K8S_LDFLAGS := -s -w $(foreach p,$(K8S_VERSION_PKGS),\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=36 \
	-X $(p).gitTreeState=clean)

.PHONY: k8s-tools k8s-etcd k8s-tools-clean

k8s-tools: k8s-etcd
	@set -e; bin='$(PODROUTE_K8S_BIN)'; \
	ok=1; for c in $(K8S_COMMANDS); do [ -x "$$bin/$$c" ] || ok=0; done; \
	if [ $$ok = 1 ] && "$$bin/kube-apiserver" --version 2>/dev/null | grep -qx 'Kubernetes $(K8S_VERSION)'; then \
		echo "k8s-tools: $(K8S_COMMANDS) $(K8S_VERSION) already in $$bin"; exit 0; \
	fi; \
	echo "k8s-tools: building $(K8S_COMMANDS) $(K8S_VERSION) into $$bin (4-9 min on 2 cores from cold)"; \
	mkdir -p "$$bin"; tmp=$$(mktemp -d "$$bin/.build.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
	start=$$(date +%s); \
	cd '$(K8S_TOOLS_MOD)' && $(GO) build -trimpath -ldflags '$(K8S_LDFLAGS)' -o "$$tmp/" \
		$(addprefix k8s.io/kubernetes/cmd/,$(K8S_COMMANDS)); \
	for c in $(K8S_COMMANDS); do mv -f "$$tmp/$$c" "$$bin/$$c"; done; \
	echo "k8s-tools: built in $$(( $$(date +%s) - start ))s:"; \
	"$$bin/kube-apiserver" --version; ls -la $(addprefix "$$bin"/,$(K8S_COMMANDS))

# k8s-etcd installs Debian's etcd-server (etcd 3.4.23 on bookworm) when it is
# missing. If the package starts its own system service, that one is left
# alone: the harness runs its own etcd with its own data dir and ports.
k8s-etcd:
	@if ! dpkg-query -W -f='$${Status}' etcd-server 2>/dev/null | grep -q "ok installed"; then \
		echo "installing Debian package etcd-server"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to install etcd-server (run: sudo make k8s-etcd)"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server; \
	fi

k8s-tools-clean:
	rm -f $(addprefix $(PODROUTE_K8S_BIN)/,$(K8S_COMMANDS))

# ---------------------------------------------------------------------------
# Real nodes in the lab and Kubernetes' own e2e tests (issue 10).
#
#   make k8s-node-tools  kubelet, kube-proxy (run in each lab node) and
#                        kube-scheduler (with the control plane), from the same
#                        tools module and version as k8s-tools, into
#                        $(PODROUTE_K8S_BIN); plus the Debian packages a node
#                        runs with (containerd 1.6, runc, the reference CNI
#                        plugins for loopback/portmap/bandwidth, conntrack,
#                        nftables, iptables, ...).
#   make e2e-tools       e2e.test (`go test -c -vet=off k8s.io/kubernetes/test/e2e`),
#                        the ginkgo CLI at the version k8s.io/kubernetes v1.36.0
#                        pins (v2.28.1), the test images' Go programs agnhost
#                        and regression-issue-74839, and CoreDNS $(COREDNS_VERSION)
#                        (its own module, testbed/tools/coredns).
#   make images          every container image the real-node lab and the
#                        sig-network e2e specs use, built without a registry
#                        into ~/.cache/podroute/images (testbed/images).
#
# Each binary is built once and skipped when it is present and reports the
# right version (or, for the ones without a --version, carries a stamp file
# written after a successful build). Measured on 2 vCPUs shared with other
# builds (load 7-12), 2026-12-01, modules already downloaded:
#   k8s-node-tools  cold Go build cache: 393 s for kubelet, kube-proxy and
#                   kube-scheduler; with the cache warm from `make k8s-tools`:
#                   22 s (+5 s installing the Debian packages); nothing to
#                   do: 0.15 s. kubelet 81 MiB, kube-proxy 68 MiB,
#                   kube-scheduler 70 MiB.
#   e2e-tools       after k8s-tools and k8s-node-tools: e2e.test 79-162 s
#                   (warm/cold cache for its own packages; 134 MiB),
#                   agnhost 120-134 s, regression-issue-74839 <1 s, ginkgo
#                   1 s, CoreDNS 116 s (its dependencies compiled cold;
#                   73 MiB): 5 min 29 s in all; nothing to do: 0.05 s.
#   images          first build 2.7 s (with `apt-get download` of
#                   busybox-static and nginx), 0.8 s when every archive is
#                   up to date.
# So a fresh machine spends about 9 min (k8s-tools) + 7 + 6 min on these,
# once; CI on a machine that keeps ~/.cache/podroute spends seconds.

K8S_NODE_COMMANDS := kubelet kube-proxy kube-scheduler
COREDNS_VERSION   := v1.14.7
GINKGO_VERSION    := v2.28.1
COREDNS_MOD       := $(K8S_TOOLS_MOD)/coredns
# Debian packages a real node runs with. containerd has no init script in
# Debian, so installing it starts nothing; the lab runs one containerd per
# node with its own root, state and socket.
K8S_NODE_DEB_PACKAGES := containerd runc containernetworking-plugins conntrack socat ethtool nftables iptables
# Debian packages the images copy binaries from (testbed/images); none of
# them has a service. busybox-static and nginx are not installed but
# unpacked by the image builder with `apt-get download` + `dpkg -x`.
IMAGES_DEB_PACKAGES := bash curl wget netcat-openbsd iproute2 bind9-dnsutils libc-bin iptables conntrack
PODROUTE_IMAGES_DIR ?= $(HOME)/.cache/podroute/images
export PODROUTE_IMAGES_DIR

.PHONY: k8s-node-tools k8s-node-deps e2e-tools images images-deps k8s-node-tools-clean

# deb-install: install the Debian packages in $(1) that are missing, as root,
# without questions (CI has no stdin).
define deb-install
	@missing=""; for p in $(1); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			-o DPkg::Lock::Timeout=300 $$missing </dev/null; \
	fi
endef

k8s-node-deps:
	$(call deb-install,$(K8S_NODE_DEB_PACKAGES))

images-deps:
	$(call deb-install,$(IMAGES_DEB_PACKAGES))

k8s-node-tools: k8s-node-deps
	@set -e; bin='$(PODROUTE_K8S_BIN)'; \
	ok=1; for c in $(K8S_NODE_COMMANDS); do \
		"$$bin/$$c" --version 2>/dev/null | grep -qx 'Kubernetes $(K8S_VERSION)' || ok=0; \
	done; \
	if [ $$ok = 1 ]; then echo "k8s-node-tools: $(K8S_NODE_COMMANDS) $(K8S_VERSION) already in $$bin"; exit 0; fi; \
	echo "k8s-node-tools: building $(K8S_NODE_COMMANDS) $(K8S_VERSION) into $$bin"; \
	mkdir -p "$$bin"; tmp=$$(mktemp -d "$$bin/.build.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
	start=$$(date +%s); \
	cd '$(K8S_TOOLS_MOD)' && $(GO) build -trimpath -ldflags '$(K8S_LDFLAGS)' -o "$$tmp/" \
		$(addprefix k8s.io/kubernetes/cmd/,$(K8S_NODE_COMMANDS)); \
	for c in $(K8S_NODE_COMMANDS); do mv -f "$$tmp/$$c" "$$bin/$$c"; done; \
	echo "k8s-node-tools: built in $$(( $$(date +%s) - start ))s:"; \
	ls -la $(addprefix "$$bin"/,$(K8S_NODE_COMMANDS))

# e2e-tools builds each missing piece on its own, so that a changed
# COREDNS_VERSION rebuilds CoreDNS only. The stamp files say which
# Kubernetes version e2e.test, agnhost and regression-issue-74839 were built
# from (they have no --version of their own that says so).
E2E_STAMP = $(PODROUTE_K8S_BIN)/.stamp-$(1)-$(K8S_VERSION)
e2e-tools:
	@set -e; bin='$(PODROUTE_K8S_BIN)'; mkdir -p "$$bin"; \
	tmp=$$(mktemp -d "$$bin/.build.XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; built=""; \
	if [ -x "$$bin/e2e.test" ] && [ -f '$(call E2E_STAMP,e2e.test)' ]; then :; else \
		echo "e2e-tools: building e2e.test $(K8S_VERSION) (go test -c -vet=off k8s.io/kubernetes/test/e2e)"; start=$$(date +%s); \
		(cd '$(K8S_TOOLS_MOD)' && $(GO) test -c -vet=off -trimpath -ldflags '$(K8S_LDFLAGS)' -o "$$tmp/e2e.test" k8s.io/kubernetes/test/e2e); \
		mv -f "$$tmp/e2e.test" "$$bin/e2e.test"; touch '$(call E2E_STAMP,e2e.test)'; \
		built="$$built e2e.test:$$(( $$(date +%s) - start ))s"; \
	fi; \
	if "$$bin/ginkgo" version 2>/dev/null | grep -q 'Version $(patsubst v%,%,$(GINKGO_VERSION))$$'; then :; else \
		echo "e2e-tools: building ginkgo $(GINKGO_VERSION)"; start=$$(date +%s); \
		(cd '$(K8S_TOOLS_MOD)' && $(GO) build -trimpath -ldflags '-s -w' -o "$$tmp/ginkgo" github.com/onsi/ginkgo/v2/ginkgo); \
		mv -f "$$tmp/ginkgo" "$$bin/ginkgo"; built="$$built ginkgo:$$(( $$(date +%s) - start ))s"; \
	fi; \
	for p in agnhost regression-issue-74839; do \
		if [ -x "$$bin/$$p" ] && [ -f "$$bin/.stamp-$$p-$(K8S_VERSION)" ]; then continue; fi; \
		echo "e2e-tools: building $$p $(K8S_VERSION) (static)"; start=$$(date +%s); \
		(cd '$(K8S_TOOLS_MOD)' && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o "$$tmp/$$p" k8s.io/kubernetes/test/images/$$p); \
		mv -f "$$tmp/$$p" "$$bin/$$p"; touch "$$bin/.stamp-$$p-$(K8S_VERSION)"; \
		built="$$built $$p:$$(( $$(date +%s) - start ))s"; \
	done; \
	if "$$bin/coredns" -version 2>/dev/null | grep -q '^CoreDNS-$(patsubst v%,%,$(COREDNS_VERSION))$$'; then :; else \
		echo "e2e-tools: building CoreDNS $(COREDNS_VERSION) (static)"; start=$$(date +%s); \
		(cd '$(COREDNS_MOD)' && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o "$$tmp/coredns" github.com/coredns/coredns); \
		mv -f "$$tmp/coredns" "$$bin/coredns"; built="$$built coredns:$$(( $$(date +%s) - start ))s"; \
	fi; \
	if [ -n "$$built" ]; then echo "e2e-tools: built$$built"; else echo "e2e-tools: e2e.test ginkgo agnhost regression-issue-74839 coredns already in $$bin"; fi

# images builds (or finds cached) every image archive; see testbed/images.
images: e2e-tools images-deps
	$(GO) run ./testbed/images/cmd/podroute-images build

k8s-node-tools-clean:
	rm -f $(addprefix $(PODROUTE_K8S_BIN)/,$(K8S_NODE_COMMANDS) e2e.test ginkgo agnhost regression-issue-74839 coredns) \
		$(PODROUTE_K8S_BIN)/.stamp-*

# e2e: Kubernetes' own network tests on the real-node lab (issue 10). It
# builds what it needs (cached), brings up the leaf-spine lab in Kubernetes
# mode with real nodes (podroute-lab e2e, testbed/k8se2e), runs the upstream
# e2e.test through ginkgo from the control plane's namespace, prints
# ginkgo's summary, the time, the memory of every node and of the control
# plane, the JUnit report's path and `N passed, M failed`, and tears down.
#   SUITE=network      (default) every non-disruptive, non-serial
#                      [sig-network] spec but NetworkPolicy and LoadBalancers
#   SUITE=conformance  the 47 [sig-network] [Conformance] specs
#   SUITE=netpol       the NetworkPolicy suite (50 specs)
#   SUITE=services     the LoadBalancer and ExternalIP specs
#   SUITE=network,netpol  several, one after the other on the same lab
# The skip list (what this machine cannot run, with reasons) is Skips in
# testbed/k8se2e/suites.go. E2E_PROCS sets ginkgo's processes (0: the
# suite's default), E2E_FOCUS replaces the suite's focus, E2E_REPORT_DIR
# where the reports go (default e2e-report/DATE-TIME).
SUITE          ?= network
E2E_PROCS      ?= 0
E2E_FOCUS      ?=
E2E_REPORT_DIR ?= e2e-report/$(shell date +%Y%m%d-%H%M%S)
E2E_STATE_DIR  ?= /run/podroute-lab-e2e
.PHONY: e2e
e2e: build k8s-tools k8s-node-tools e2e-tools images
	$(BIN)/podroute-lab --state-dir $(E2E_STATE_DIR) e2e --suite '$(SUITE)' --procs $(E2E_PROCS) \
		--report-dir '$(E2E_REPORT_DIR)' $(if $(E2E_FOCUS),--focus '$(E2E_FOCUS)')

# test-nodes runs the real-node check alone (root): a control plane with
# kube-scheduler and two kubelet nodes in namespaces, podroute-cni pods on
# both, pod-to-pod, a ClusterIP Service through kube-proxy, CoreDNS, every
# image, an IPAM release, and a teardown that leaves nothing (one node torn
# down after its owner was killed). About 40 s once everything is built.
.PHONY: test-nodes
test-nodes: k8s-tools k8s-node-tools images
	$(GO) test -count=1 -timeout 20m -v -run 'TestTwoRealNodes' ./testbed/kubenode/
