// Package controller is NetworkPolicy's Kubernetes side on a node: client-go
// shared informers on Pods, Namespaces and NetworkPolicies feed
// policy.Compute, debounced, and the result goes to the kernel through
// policy/nft. It also reports (Events on the NetworkPolicy, log lines,
// metrics) what a policy asks that podroute cannot express, exports
// Prometheus metrics, and answers Status for `podroute policy`.
//
// Why here and not in package cluster: cluster turns Nodes and podroute's
// CRDs into BGP state and knows nothing about the kernel; this one owns a
// different set of objects and ends in nftables. Keeping it beside policy
// keeps each package to one job and lets podrouted start one without the
// other (policy enforcement can be turned off on its own).
//
// Memory: Pods are watched in every namespace and on every node, because
// peers can be anywhere (a field selector on spec.nodeName would lose them).
// A transform keeps of each Pod only what selectors and named ports need
// (name, namespace, labels, node, host network, phase, addresses,
// container port names and numbers), a few hundred bytes, and of each
// Namespace its name and labels.
//
// What it must not touch: routes, BGP, or any Kubernetes object beyond
// reading those three kinds and creating Events. It never removes the
// nftables table (rules outlive podrouted), and it programs nothing until
// all three caches have synced: a partial view would open what a policy
// not yet seen denies.
package controller

// Wiring into podrouted (Kubernetes mode only; the integrator does this):
//
//	kernel, err := nft.New(nft.Options{})     // fails if nft is missing: say so, exit
//	pc, err := controller.New(controller.Options{
//		NodeName: nodeName,                   // the same name cluster.Watcher uses
//		Client:   kubernetes.NewForConfig(restConfig),
//		Kernel:   kernel,
//		Log:      log,                        // podrouted's *slog.Logger
//		Registry: reg,                        // the registry /metrics serves
//	})
//	go pc.Run(ctx)                            // returns when ctx ends; rules stay
//
// Start it beside cluster.Watcher, not after BGP is up: policy does not
// depend on routes, and pods may start before BGP converges. Do not call
// kernel.Remove on shutdown or on SIGTERM (the table must outlive the
// daemon so that a restart opens nothing); only an uninstall path should.
// The DaemonSet needs CAP_NET_ADMIN in the host network namespace (it has
// it for routes) and the nft binary in the image (Debian's nftables).
//
// RBAC (ClusterRole podrouted, in addition to what it has):
//
//	- apiGroups: [""]                   resources: [pods, namespaces]   verbs: [get, list, watch]
//	- apiGroups: [networking.k8s.io]    resources: [networkpolicies]    verbs: [get, list, watch]
//	- apiGroups: ["", events.k8s.io]    resources: [events]             verbs: [create, patch]   (already there)
//
// `podroute policy`: the status API (api/) gets a Policy RPC whose answer
// is Controller.Status() (per local pod: addresses, the policies isolating
// it per direction, the nftables rules a new connection walks) plus
// Controller.Problems() (what could not be expressed, per policy). Both
// read the last successful sync; neither walks the cluster.
//
// Metrics (on Options.Registry): podroute_policy_sync_duration_seconds
// {result}, podroute_policy_sync_errors_total,
// podroute_policy_sync_operations, podroute_policy_nftables_objects{kind},
// podroute_policy_local_pods{isolated}, podroute_policy_policies,
// podroute_policy_problems.
