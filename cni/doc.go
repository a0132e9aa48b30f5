// Package cni wires a pod's network interface into the node for the
// podroute-cni plugin, and reads and writes the plugin's network config.
//
// What it owns: the veth pair between the node and the pod (host side named
// from a hash of the attachment, see HostVethName), the pod's /32 and /128
// addresses, the pod's routes through the link-local gateway, the node's host
// routes to the pod, the per-interface sysctls, the MTU, the CHECK that all
// of these are still as ADD made them, and the CNI config files (NetConf on
// stdin, WriteConfList for the conflist podrouted writes).
//
// The gateway: every pod routes through 169.254.1.1 and fe80::1, and the node
// owns both addresses on each host-side veth (169.254.1.1/32 scope link and
// fe80::1/64, without duplicate address detection). The node then answers ARP
// and neighbour solicitations for the gateway as plain local addresses. Proxy
// ARP alone (Calico's way) answers only when the node has a route to
// 169.254.1.1 out of another interface, which a node without a default route
// (a lab node, or a node whose only routes are BGP's) does not have.
//
// What it must not touch: addresses (ipam decides them), BGP, and any link,
// address or route other than the pod's veth pair and the routes through it.
// Every namespace hop goes through containernetworking's ns package with the
// OS thread locked, and netlink dumps go through netlinksafe, which retries
// when the kernel interrupts a dump.
package cni
