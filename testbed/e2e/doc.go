// Package e2e holds podroute's end-to-end tests: the binaries built from
// cmd/ (podrouted, podroute, podroute-cni) run for real in network
// namespaces, against real FRR and BIRD routers, as root.
//
//	core_lab_test.go        two podrouted nodes and one FRR router wired by
//	                        hand: reachability, restart, withdrawal, hijack
//	                        and max-prefix defences
//	bird_lab_test.go        the same lab with BIRD 2 as the ToR: routes
//	                        both ways, pod ping over IPv4 and IPv6
//	md5_test.go             TCP MD5 in both directions against FRR and
//	                        BIRD: right, wrong and missing passwords
//	e2e_test.go             the built-in topologies brought up with lab.Up,
//	                        as `podroute-lab up` does, and the failures a
//	                        routed pod network must survive (figures logged
//	                        as "E2E figure:")
//	e2e_kubernetes_test.go  the same lab in Kubernetes mode (needs
//	                        `make k8s-tools`)
//	cni_test.go             podroute-cni called as kubelet's runtime calls
//	                        it, and BenchmarkCNIAddDel
//	hostile_lab_test.go     one podrouted node between FRR and a raw BGP
//	                        peer (testbed/bgppeer) that misbehaves
//	malformed_test.go       malformed messages from a configured peer
//	maxprefix_flood_test.go a peer that floods past its limit and comes
//	                        straight back, again and again
//	wirefuzz_test.go        mutated UPDATEs from many peers at once
//
// These tests span several packages (netns, frr, bird, lab, k8s) and exercise
// the product rather than any one of them, so they have a package of their
// own. This package has no non-test code. `make test` greps their output
// for the figures they measure by file name (see the Makefile), so rename
// these files together with that pattern.
package e2e
