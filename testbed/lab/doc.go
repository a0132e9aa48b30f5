// Package lab is the podroute lab that `podroute-lab` and the end-to-end
// tests run: it turns a topology.Plan into namespaces, links, FRR routers
// and nodes running podrouted, plugs pods in with podroute-cni as kubelet
// would, and in Kubernetes mode adds a control plane in a namespace of its
// own and makes every node a real Kubernetes node (containerd, kubelet and
// kube-proxy through testbed/kubenode, beside podrouted), with CoreDNS,
// the lab's pods as real Pods, Service address ranges and LoadBalancer
// pools in BGPConfiguration, and a client outside the cluster behind a
// spine (its own namespace, documentation addresses) that reaches
// Services through the routers as users do. It records everything it creates in
// a state directory so that another process (`podroute-lab status`, `down`,
// `exec`) can attach to the lab or tear it down, also after a crash, and it
// answers questions about a running lab: convergence, BGP sessions, the
// pod-to-pod ping matrix, uplinks, captures.
//
//	lab.go          Up, Attach, Down: building and wiring the lab
//	state.go        state.json, Teardown from it
//	cni.go          pods through podroute-cni
//	kubernetes*.go  Kubernetes mode: its plan and the running control plane
//	realnodes.go    Kubernetes mode's real nodes, CoreDNS and pods
//	memory.go       what the lab's processes hold in memory
//	observe.go      convergence, sessions, reachability
//	ops.go          changes a fault or an operator would make
//	packages.go     the Debian packages the lab needs
//
// It is plain (non-test) code for cmd/podroute-lab and the tests; it must
// not import the testing package. The control-plane harness
// (testbed/k8s) imports it, so the caller hands it a function that starts
// a control plane (KubernetesOptions.Start).
//
// What it must not touch: the machine's own network namespace, and anything
// not recorded in its own state directory. Every namespace, process and FRR
// instance it makes carries the lab's run ID and is recorded before it is
// created; teardown signals only recorded processes whose command line
// still names this lab.
package lab
