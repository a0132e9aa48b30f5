# podroute: build, test, lab. Targets that touch namespaces need root.

GO          ?= go
BIN         := bin
GOTESTFLAGS ?=
# Debian packages the tests and the lab use; installed when missing.
DEB_PACKAGES := frr bird2 iproute2 iputils-ping tcpdump procps containernetworking-plugins nftables

.PHONY: all build deps test unit bench lab lab-kubernetes lab-status lab-down vet clean

# k8s-tools: kube-apiserver, kube-controller-manager and kubectl built
# once from k8s.io/kubernetes for the Kubernetes-mode tests and lab.
include k8s.mk

all: build

# build also builds the gobgp CLI at the GoBGP version podrouted embeds
# (a `tool` of go.mod): Debian's gobgp 3.x cannot talk to a v4 server
# ("unknown service apipb.GobgpApi").
build:
	$(GO) build -o $(BIN)/ ./cmd/... github.com/osrg/gobgp/v4/cmd/gobgp

# deps installs the Debian packages the tests need, only those missing.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "need root to install:$$missing (run: sudo make deps)"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# test runs every test: unit tests and the privileged namespace, FRR,
# Kubernetes and end-to-end tests (run as root, as CI does). The full
# verbose output goes to $(TEST_LOG); the terminal gets each test's result
# and the figures the integration tests measure (restart loss, withdrawal
# and recovery times, the real-node lab's start-up, memory and the
# sig-network Conformance result, ...), and on failure the whole output of
# each failed test and the end of the log.
# It first builds (once, then cached under ~/.cache/podroute) the
# Kubernetes binaries, the node binaries, e2e.test with ginkgo and the
# container images the real-node tests use. The real-node tests run after
# the others, one package at a time: four kubelets, a control plane and
# ginkgo's processes would otherwise share two cores with the
# timing-sensitive namespace tests.
TEST_LOG ?= test-output.log
REALNODE_TESTS := ^(TestE2EKubernetes|TestE2EKubernetesDualStack|TestTwoRealNodes)$$
test: deps k8s-tools k8s-node-tools e2e-tools images vet
	@echo "$(GO) test -count=1 -timeout 45m -v $(GOTESTFLAGS) -skip '$(REALNODE_TESTS)' ./...   (full output: $(TEST_LOG))"
	@echo "$(GO) test -count=1 -timeout 45m -v -p 1 $(GOTESTFLAGS) -run '$(REALNODE_TESTS)' ./testbed/kubenode ./testbed/e2e"
	@{ $(GO) test -count=1 -timeout 45m -v $(GOTESTFLAGS) -skip '$(REALNODE_TESTS)' ./...; s1=$$?; \
	   $(GO) test -count=1 -timeout 45m -v -p 1 $(GOTESTFLAGS) -run '$(REALNODE_TESTS)' ./testbed/kubenode ./testbed/e2e; s2=$$?; \
	   [ $$s1 -eq 0 ] && [ $$s2 -eq 0 ]; } > $(TEST_LOG) 2>&1; status=$$?; \
	grep -E '^ *--- (PASS|FAIL|SKIP)|^(ok|FAIL|panic:)|^ +(core_lab|bird_lab|md5|restart|malformed|maxprefix_flood|wirefuzz|nexthop|e2e|e2e_kubernetes|e2e_services|kubernetes|services|cni|node)_test\.go:[0-9]+: ' $(TEST_LOG) \
		| grep -v -e 'log (tail)' -e 'log (last' ; \
	if [ $$status -ne 0 ]; then \
		for t in $$(sed -n 's/^--- FAIL: \([^ ]*\) .*/\1/p' $(TEST_LOG) | sort -u); do \
			echo "=== tests failed; the output of $$t (its last 250 lines):"; \
			awk -v t="$$t" '$$0 == "=== RUN   " t {on=1} on {print} on && index($$0, "--- FAIL: " t " ") == 1 {on=0}' $(TEST_LOG) | tail -n 250; \
		done; \
		echo "=== tests failed; the end of $(TEST_LOG):"; tail -n 100 $(TEST_LOG); \
	fi; \
	exit $$status

# unit runs only what needs neither root nor FRR.
unit:
	$(GO) test -count=1 -short ./...

# bench prints route-install throughput beside `ip -batch`, then the time
# from BGP Established to N routes in the kernel (an FRR injector sending
# 10k and 100k IPv4 /24s) for podrouted, BIRD 2 and FRR taking turns in
# interleaved rounds, with CPU seconds, peak RSS and single-prefix latency,
# one table per size with podrouted's ratio to BIRD (root); a flood of
# 200k one-prefix UPDATEs from a raw peer to podrouted beside BIRD 2, and
# the same past a limit of 10,000 beside a good session; `podroute
# status`, `routes --summary` and a /metrics scrape at 10k and 100k routes;
# then NetworkPolicy: change-to-kernel latency with 1,000 pods and 200
# policies, ruleset size, pod-to-pod throughput with and without policies.
# Each step prints how long it took, and the end the total (253 s in a
# run on the shared 2-vCPU machine at a load average of 3).
bench: deps
	@start=$$(date +%s); \
	step() { s=$$(date +%s); echo "$$*"; "$$@"; rc=$$?; echo "($$(( $$(date +%s) - s )) s)"; return $$rc; }; \
	step $(GO) test -run XXX -bench Install -benchtime 1x -count=1 ./routes/ && \
	step $(GO) test -run '^$$' -bench BGPToKernel -benchtime 1x -count=1 -timeout 30m ./testbed/bgpbench/ && \
	step $(GO) test -run '^$$' -bench BGPFlood -benchtime 1x -count=1 -timeout 20m ./testbed/bgpbench/ && \
	step $(GO) test -run '^$$' -bench StatusLatency -benchtime 1x -count=1 ./testbed/bgpbench/ && \
	step $(GO) test -run '^$$' -bench Policy -benchtime 1x -count=1 ./policy/nft/; \
	rc=$$?; echo "make bench took $$(( $$(date +%s) - start )) s"; exit $$rc

# lab builds the leafspine lab (FRR routers, podrouted nodes, pods in
# network namespaces), waits for it to converge and prints the BGP sessions
# and the pod-to-pod reachability matrix. Root needed.
TOPOLOGY ?= leafspine
lab: build
	$(BIN)/podroute-lab up --topology $(TOPOLOGY)

# lab-kubernetes is the same fabric as a real cluster: a control plane
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) in a
# namespace of the lab, and in every node namespace containerd, kubelet and
# kube-proxy beside podrouted, with CoreDNS and the lab's pods as real Pods.
# The first run builds the Kubernetes binaries, e2e tools and images (about
# 20 minutes on 2 cores, then cached); the lab comes up in about 25 s.
lab-kubernetes: build k8s-tools k8s-node-tools images
	$(BIN)/podroute-lab up --kubernetes --topology $(TOPOLOGY)

lab-status:
	$(BIN)/podroute-lab status

lab-down:
	$(BIN)/podroute-lab down

clean:
	rm -rf $(BIN)
