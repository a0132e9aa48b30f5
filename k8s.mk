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
	echo "k8s-tools: building $(K8S_COMMANDS) $(K8S_VERSION) into $$bin (about 9 min on 2 cores from cold)"; \
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
