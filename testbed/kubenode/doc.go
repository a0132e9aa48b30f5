// Package kubenode runs a real Kubernetes node inside one of the lab's
// network namespaces: containerd (Debian's 1.6) with its own root, state and
// socket, the lab's images imported into it (package images), kubelet and
// kube-proxy v1.36.0; and, for the control-plane namespace, kube-scheduler.
// It also carries the CoreDNS manifests for the cluster DNS.
//
// How a node is entered (the recipe of shared/real-nodes.md): a holder
// process is started with `nsenter --net=NETNS unshare --mount --uts
// --propagation slave`, sets the node's hostname (hostNetwork pods share the
// node's UTS namespace, and e2e expects them to answer with the node's
// name), makes the node's private mounts and then sleeps; containerd,
// kubelet and kube-proxy are started with `nsenter -t HOLDER -m -n -u`, so
// all three share one private mount namespace (kubelet's volume mounts must
// be visible to containerd) and the containers' mounts never reach the
// machine's mount table. `ip netns exec` is not used because it
// remounts /sys and hides the cgroup hierarchies. The private mounts: a
// sysfs of the node's network namespace with the machine's cgroup
// hierarchies moved back under it; tmpfs on /run (pod network namespaces,
// shim sockets, xtables lock) and /var/log (kubelet's /var/log/containers),
// with the machine's directories the node was given that these would hide
// (a lab state directory under /run) bound back through a descriptor opened
// before; and the six kernel tunables kubelet would set machine-wide
// (vm.overcommit_memory, vm.panic_on_oom, kernel.panic,
// kernel.panic_on_oops, kernel.keys.root_maxkeys, kernel.keys.root_maxbytes)
// shadowed by files that already hold the values kubelet wants, so kubelet
// changes nothing. containerd runs with restrict_oom_score_adj because this
// kind of machine lacks CAP_SYS_RESOURCE.
//
// What it owns, recorded in DIR/state.json before each is made so that
// Cleanup(DIR) can undo a crashed run: the processes it started (stopped by
// PID after checking /proc/PID/cmdline for a marker under DIR), the
// containerd shims (found by their -address, the node's socket), every
// process in its cgroups or in its private mount namespace, its cgroup root
// (one directory per v1 hierarchy plus the unified one, removed depth-first),
// /var/lib/cni if it had to create it (libcni's cache directory must exist
// to be mounted over; a marker file inside says the nodes made it, and the
// last node to stop removes it when it holds nothing else), and DIR
// (removed except logs/).
//
// What it must not touch: the machine's own network namespace, mount table
// and sysctls, any process, cgroup or containerd it did not start, the
// network namespace it is given (the caller made it and deletes it).
//
// # Wiring it into the lab
//
// What the control plane (testbed/k8s, k8sharness.Options) must be started
// with once real kubelets exist, as TestTwoRealNodes does:
//
//   - ExtraAPIServerArgs: --kubelet-preferred-address-types=InternalIP,Hostname,
//     or exec, logs and port-forward try to resolve the node name and fail.
//   - ControllerManager.Controllers: ["*"]. The default three are not enough
//     for pods: endpointslice(-mirroring), replicaset, deployment, daemonset,
//     garbage collector, root-ca-certificate-publisher (without the
//     kube-root-ca.crt ConfigMap no pod can mount its projected token),
//     node-lifecycle (taints a node whose kubelet stopped), ttl, job...
//     Start's health wait only checks names ending in "-controller", so "*"
//     is not waited for; list them explicitly to keep the wait.
//   - NodeNames: every node, so each kubelet gets its static
//     system:node:NAME token (Config.Token = NodeToken(name)).
//   - Tokens: one for user system:kube-proxy (bound to the
//     system:node-proxier ClusterRole by the default RBAC), as
//     Config.ProxyToken.
//   - BindAddress: the control plane's fabric address, not loopback: with a
//     loopback address the harness turns the endpoint reconciler off, and
//     pods cannot reach the kubernetes Service (10.96.0.1).
//   - ControllerManager.ClusterCIDRs equal to Config.ClusterCIDR (both
//     default 10.244.0.0/16); ServiceClusterIPRanges holding the cluster
//     DNS IP (default 10.96.0.0/16 holds 10.96.0.10).
//
// testbed/lab's Kubernetes mode does all of this for the leaf-spine lab,
// with podrouted carrying the routes (lab/realnodes.go).
//
// Then StartScheduler in the control plane's namespace with the admin
// kubeconfig, Start for each node (in parallel: about 8 s each, most of it
// the image import), and ApplyCoreDNS. Each node's namespace needs a route
// covering the Service range (a default route): a locally sent packet to a
// ClusterIP is routed before kube-proxy's DNAT. The node becomes Ready when
// a conflist is in CNIConfDir, with cniVersion "1.0.0" or lower for
// Debian's containerd 1.6 (it rejects "1.1.0"; podrouted writes 1.0.0 by
// default), and CNIBinDir must hold podroute-cni, loopback (containerd 1.6
// sets up lo with it) and the chained portmap and bandwidth (Debian's
// containernetworking-plugins, /usr/lib/cni).
package kubenode
