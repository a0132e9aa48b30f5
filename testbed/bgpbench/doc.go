// Package bgpbench holds BenchmarkBGPToKernel: the time from an eBGP
// session reaching Established until all N routes an FRR router sends are
// in the receiver's kernel, for podrouted beside BIRD 2 in the same run,
// with peak RSS and single-prefix latency (design.md, "Performance
// targets"); BenchmarkBGPFlood: 200k one-prefix UPDATEs from a raw peer,
// to all in the kernel and, with a limit of 10,000, the teardown at the
// limit beside an untouched session, podrouted beside BIRD 2; and
// BenchmarkStatusLatency: `podroute status`, `routes --summary` and a
// /metrics scrape at 10k and 100k routes (issue 9). `make bench` runs
// them, as root.
//
//	bench_test.go       BenchmarkBGPToKernel, its lab and the measurements
//	flood_test.go       BenchmarkBGPFlood
//	status_test.go      BenchmarkStatusLatency
//	main_test.go        removes the binaries testenv.Binaries built
//	bgpwire_test.go     BGP messages read off the wire with kernel timestamps
//	routewatch_test.go  kernel routes counted from netlink notifications
//	pollsocket_test.go  the non-blocking namespace socket both read through
//
// This package has no non-test code; it keeps the benchmark's observers
// out of the end-to-end tests' binary. What it must not touch: the
// machine's own namespace (everything runs in namespaces it creates and
// removes) and any process it did not start.
package bgpbench
