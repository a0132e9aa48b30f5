// Package ipam hands out pod addresses from this node's pod CIDRs (at most
// one per address family) and remembers who holds which, in a small store on
// disk that survives crashes and concurrent plugin processes.
//
// Every CNI invocation is a separate short-lived process, and kubelet runs
// many of them at once, so the store is the only shared memory: each change
// is one transaction under an exclusive flock(2) on DIR/lock that reads
// DIR/allocations.json, changes it in memory and replaces it atomically
// (write a temporary file, fsync it, rename it over the old one, fsync the
// directory). A process killed at any instant therefore leaves either the
// old file or the new one, never half of one, and an address recorded as
// held stays held until it is released: no address is handed out twice.
// Readers that only look (the podroute CLI) read the file without the lock,
// since a rename never exposes a partial file.
//
// Allocation is keyed by the CNI attachment, (container ID, interface name),
// so an ADD that is repeated gets the same addresses. A round-robin cursor per
// CIDR means a freed address is not handed out again until the rest of the
// pool has been used, which keeps a stale ARP/ND entry or a late packet for a
// deleted pod from reaching its successor.
//
// What it must not touch: the network. ipam knows nothing of interfaces,
// routes, BGP or Kubernetes; it only does bookkeeping.
package ipam
