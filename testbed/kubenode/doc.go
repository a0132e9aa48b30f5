// Package kubenode runs a real Kubernetes node inside one of the lab's
// network namespaces: containerd (Debian's 1.6) with its own root, state and
// socket, the lab's images imported into it (package images), kubelet and
// kube-proxy v1.36.0; and, for the control-plane namespace, kube-scheduler.
// It also carries the CoreDNS manifests for the cluster DNS.
//
// How a node is entered (the recipe of shared/real-nodes.md): a holder
// process is started with `nsenter --net=NETNS unshare --mount
// --propagation slave`, makes the node's private mounts and then sleeps;
// containerd, kubelet and kube-proxy are started with `nsenter -t HOLDER -m
// -n`, so all three share one private mount namespace (kubelet's volume
// mounts must be visible to containerd) and the containers' mounts never
// reach the machine's mount table. `ip netns exec` is not used because it
// remounts /sys and hides the cgroup hierarchies. The private mounts: a
// sysfs of the node's network namespace with the machine's cgroup
// hierarchies moved back under it; tmpfs on /run (pod network namespaces,
// shim sockets, xtables lock) and /var/log (kubelet's /var/log/containers);
// and the six kernel tunables kubelet would set machine-wide
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
// to be mounted over; removed when empty and no other node runs), and DIR
// (removed except logs/).
//
// What it must not touch: the machine's own network namespace, mount table
// and sysctls, any process, cgroup or containerd it did not start, the
// network namespace it is given (the caller made it and deletes it).
package kubenode
