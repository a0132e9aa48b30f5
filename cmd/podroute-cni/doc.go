// Command podroute-cni is podroute's CNI plugin: kubelet (through the
// container runtime) runs it for every pod with CNI_COMMAND set to ADD, DEL,
// CHECK, STATUS, GC or VERSION and the network config on stdin (CNI spec
// 1.1.0, also 0.3.1, 0.4.0 and 1.0.0: cni.SupportedVersions). ADD prints
// its result in the version the network config names, because a runtime
// refuses a result of another version (containerd 1.6 and 1.7 know nothing
// newer than 1.0.0).
//
// ADD takes addresses from the node's IPAM store (package ipam) and wires
// the pod (package cni); if it fails at any step, printing its result
// included, it releases the addresses and removes the links it made, and
// prints one document, the error. It refuses a CNI_NETNS that is its own
// network namespace (the node's) before doing anything. DEL is idempotent. GC releases everything not in
// cni.dev/valid-attachments. The plugin never talks to the Kubernetes API or
// to podrouted: the pod CIDRs come in the network config podrouted writes.
//
// main.go only hands the commands to skel; plugin.go has one function per
// command; fault.go is a test-only crash hook.
package main
