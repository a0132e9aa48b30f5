// Package nft writes a policy.Result into the node's kernel as nftables
// rules, in podroute's own table (inet podroute-policy) and nowhere else.
//
// What it owns: that one table. It never reads or changes another table
// (kube-proxy's, the host firewall's), and other tables' verdicts are theirs:
// a packet this table accepts can still be dropped elsewhere, and this table
// only ever drops what a policy denies.
//
// Why knftables (sigs.k8s.io/knftables) and not github.com/google/nftables:
// it is what kube-proxy's nftables mode uses, so the rules it writes are the
// same dialect operators already read with `nft list`; every change is one
// `nft -f` transaction, which the kernel commits atomically (all or
// nothing, no half-applied policy); and rules stay readable text instead of
// hand-assembled netlink expressions (payload offsets, concatenation
// registers, interval end flags), where a mistake is silent. The price is
// one fork of nft per change (a few milliseconds, measured by the
// benchmark) and the nft binary (Debian's nftables package) on the node.
//
// Layout (names carry a short hash of namespace/name; comments carry the
// readable names):
//
//	table inet podroute-policy
//	  chain egress   hook forward priority filter     (base; policy accept)
//	      ct state established,related accept
//	      ip saddr vmap @egress4 ; ip6 saddr vmap @egress6
//	  chain ingress  hook forward priority filter+1   (base; policy accept)
//	      ct state established,related accept
//	      ip daddr vmap @ingress4 ; ip6 daddr vmap @ingress6
//	  map egress4/6, ingress4/6    local pod address : goto pod-<h>-out / -in
//	  chain pod-<h>-in/-out        jump pol-<h>-in/-out per selecting policy; drop
//	  chain pol-<h>-in/-out        one rule per rule, family and protocol; accept
//	  set peer-<h>-4/-6            a peer definition's addresses (interval set:
//	                               prefixes and ranges), shared by every rule
//	                               with the same peers, in any policy
//	  set named-<h>-4/-6           egress named ports resolved per peer pod:
//	                               addr . proto . port, shared the same way
//	  set pol-<h>-in<i>-n4/-n6     ingress named ports resolved per local pod
//
// Why there: pod-to-pod traffic on this node and across nodes crosses the
// forward hook (in by one pod's host veth, out by another's or the uplink),
// after kube-proxy's DNAT of Service addresses (prerouting, dstnat = -100),
// so policies see the backend pod, as Kubernetes defines it. Ingress and
// egress are separate base chains so that an egress accept does not skip the
// ingress check: an accept ends only its own base chain, a drop is final.
// Traffic between a pod and its own node (kubelet probes; output and input
// hooks) is not filtered at all, as Kubernetes expects of a CNI. Replies of
// allowed connections pass on conntrack state. A pod no policy isolates in a
// direction has no map entry there: its packets cost one failed lookup.
//
// Incremental: the rules of pol- chains depend only on the policy's spec
// (rule shapes, ports), so a pod that comes, goes or changes labels changes
// set and map elements, and at most its own pod- chain; a policy change
// rewrites its own pol- chain. Sync diffs the desired state against the last
// one it wrote and sends only the difference, as one transaction.
//
// Restarts: the table outlives podrouted. A new Programmer reads the table
// from the kernel (`nft -j list table`) before its first Sync and reconciles
// against it in one transaction: chains whose content digest (kept in every
// rule's comment) differs are flushed and rewritten, sets whose
// elements differ are flushed and refilled, all inside that transaction, so
// no packet ever sees a half-written or empty ruleset.
package nft
