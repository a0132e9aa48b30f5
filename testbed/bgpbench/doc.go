// Package bgpbench holds BenchmarkBGPToKernel: the time from an eBGP
// session reaching Established until all N routes an FRR router sends are
// in the receiver's kernel, for podrouted beside BIRD 2 in the same run,
// with peak RSS and single-prefix latency (design.md, "Performance
// targets"). `make bench` runs it, as root.
//
//	bench_test.go       the benchmark, its lab and the measurements
//	bgpwire_test.go     BGP messages read off the wire with kernel timestamps
//	routewatch_test.go  kernel routes counted from netlink notifications
//	pollsocket_test.go  the non-blocking namespace socket both read through
//
// This package has no non-test code; it keeps the benchmark's observers
// out of the end-to-end tests' binary. What it must not touch: the
// machine's own namespace (everything runs in namespaces it creates and
// removes) and any process it did not start.
package bgpbench
