// Package bgpbench holds BenchmarkBGPToKernel: the time from an eBGP
// session reaching Established until all N IPv4 /24s an FRR injector sends
// are in the receiver's kernel, for podrouted, BIRD 2 and FRR taking turns
// in interleaved rounds of one run, with CPU seconds, peak RSS and
// single-prefix latency, and one table per size with podrouted's ratio to
// BIRD (design.md, "Performance targets"; issue 9); BenchmarkBGPFlood:
// 200k one-prefix UPDATEs from a raw peer, to all in the kernel and, with
// a limit of 10,000, the teardown at the limit beside an untouched
// session, podrouted beside BIRD 2; and BenchmarkStatusLatency: `podroute
// status`, `routes --summary` and a /metrics scrape at 10k and 100k routes
// (issue 9). `make bench` runs them, as root.
//
//	bench_test.go         BenchmarkBGPToKernel, its lab and the measurements
//	bench_summary_test.go its tables: medians across rounds, ratios, targets
//	flood_test.go         BenchmarkBGPFlood
//	status_test.go        BenchmarkStatusLatency
//	main_test.go          removes the binaries testenv.Binaries built
//	bgpwire_test.go       BGP messages read off the wire with kernel timestamps
//	routewatch_test.go    kernel routes counted from netlink notifications
//	memory_test.go        the anonymous peak RSS, sampled (VmHWM counts the binary too)
//	pollsocket_test.go    the non-blocking namespace socket both read through
//
// This package has no non-test code; it keeps the benchmark's observers
// out of the end-to-end tests' binary. What it must not touch: the
// machine's own namespace (everything runs in namespaces it creates and
// removes) and any process it did not start.
package bgpbench
