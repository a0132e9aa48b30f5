package k8se2e

import (
	"fmt"
	"strings"
	"syscall"
)

// Suite is a named selection of upstream e2e specs.
type Suite struct {
	Name string
	// Focus selects specs by their full text (ginkgo --focus).
	Focus string
	// Leave is what the suite leaves out by definition: disruptive or
	// serial specs, and specs that belong to another suite. It never names
	// a spec because it fails: specs this machine cannot run are in Skips,
	// with a reason each.
	Leave string
	// Procs is the default number of ginkgo processes.
	Procs int
	// FromOutside runs e2e.test in the lab's outside client (behind a
	// spine, an address outside the nodes' networks) instead of the
	// control plane's namespace: the LoadBalancer specs reach Services
	// through the routers as a user would, and the source-address checks
	// of externalTrafficPolicy: Local take any address in a node's /16
	// (as the control plane's is in the lab) for a rewritten one.
	FromOutside bool
	About       string
}

// notParallel are the upstream labels of specs that must not run beside
// others ([Serial]: they change cluster-wide state; [Disruptive]: they
// restart or break components) or that upstream itself does not trust
// ([Flaky]).
const notParallel = `\[Serial\]|\[Disruptive\]|\[Flaky\]`

// Suites are the selections `make e2e SUITE=...` and `podroute-lab e2e
// --suite` know.
var Suites = []Suite{
	{
		Name:  "network",
		Focus: `\[sig-network\]`,
		// NetworkPolicy and LoadBalancer specs have suites of their own.
		Leave: notParallel + `|Netpol|NetworkPolicy|\[Feature:LoadBalancer\]`,
		Procs: 3,
		About: "every non-disruptive, non-serial [sig-network] spec but NetworkPolicy and LoadBalancers: the 47 Conformance specs, the Networking granular checks, Services, DNS, EndpointSlices, kube-proxy, HostPort, Ingress API, ...",
	},
	{
		Name:  "conformance",
		Focus: `\[sig-network\].*\[Conformance\]`,
		Leave: notParallel,
		Procs: 3,
		About: "the 47 [sig-network] [Conformance] specs (what make test runs)",
	},
	{
		Name:  "netpol",
		Focus: `Netpol|NetworkPolicy`,
		Leave: notParallel,
		Procs: 3,
		About: "Kubernetes' NetworkPolicy suite (test/e2e/network/netpol): 50 specs, 15-20 min with 3 processes",
	},
	{
		Name:        "services",
		Focus:       `\[sig-network\].*(LoadBalancer|ExternalIP)`,
		Leave:       notParallel,
		Procs:       2,
		FromOutside: true,
		About:       "the LoadBalancer and ExternalIP specs, against podroute's LoadBalancer addresses and Service advertisements, from a client behind a spine",
	},
}

// SuiteNamed returns the suite called name.
func SuiteNamed(name string) (Suite, error) {
	for _, s := range Suites {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range Suites {
		names = append(names, s.Name)
	}
	return Suite{}, fmt.Errorf("no e2e suite %q; have %s", name, strings.Join(names, ", "))
}

// Skip is an entry of the skip list.
type Skip struct {
	// Pattern matches the specs' full text (ginkgo --skip).
	Pattern string
	// Reason says why they cannot run on this machine or in this lab,
	// whatever podroute does.
	Reason string
	// Applies, if set, says whether the entry holds on this machine.
	Applies func() bool `json:"-"`
}

// Skips is the one skip list: specs that cannot run here. Every suite
// leaves them out. A spec podroute fails does not belong here; it is a bug
// to fix (or, while it lasts, a failure in the report).
var Skips = []Skip{
	{
		Pattern: `SCTP`,
		Reason:  "the kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails with EPROTONOSUPPORT, and no module can be loaded)",
		Applies: noSCTP,
	},
	{
		Pattern: `\[Feature:Networking-IPv4\]|\[Feature:Networking-IPv6\]|\[Feature:Networking-DNS\]`,
		Reason:  "they reach the Internet (8.8.8.8, 2001:4860:4860::8888, kubernetes.io): the lab has no route out of the machine, by design",
	},
	{
		Pattern: `\[Feature:IPv6DualStack\]`,
		Reason:  "the real-node lab (leafspine) is single-stack IPv4: no node has an IPv6 InternalIP and the Service range is IPv4 only",
	},
	{
		Pattern: `\[Feature:Networking-Performance\]`,
		Reason:  "a throughput benchmark (iperf2 between every pair of nodes, minutes per pair on 2 cores), not a functional check; podroute's throughput is measured by make bench",
	},
	{
		Pattern: `should be able to switch session affinity for LoadBalancer service with Local traffic policy`,
		Reason: "with externalTrafficPolicy Local each node forwards only to its own endpoint, and the fabric's ECMP routers send one client to one node " +
			"(they hash on addresses, which is what keeps ClientIP affinity across nodes, as the other affinity specs check): with one endpoint per node " +
			"the client meets the same endpoint whatever the affinity, so 'affinity off' cannot be seen without a load balancer that is itself one box (a cloud LB)",
	},
	{
		Pattern: `\[Feature:KubeProxyNFAcct\]`,
		Reason:  "counts packets with nfacct, which kube-proxy uses only in iptables mode; the lab's kube-proxy runs in nftables mode",
	},
}

// SkipPattern is the alternation of the entries of Skips that apply here.
func SkipPattern() string {
	var p []string
	for _, s := range ActiveSkips() {
		p = append(p, s.Pattern)
	}
	return strings.Join(p, "|")
}

// ActiveSkips are the entries of Skips that apply on this machine.
func ActiveSkips() []Skip {
	var out []Skip
	for _, s := range Skips {
		if s.Applies == nil || s.Applies() {
			out = append(out, s)
		}
	}
	return out
}

// noSCTP reports whether the kernel refuses SCTP sockets.
func noSCTP() bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, syscall.IPPROTO_SCTP)
	if err != nil {
		return true
	}
	syscall.Close(fd)
	return false
}

// SkipText describes the skip list for a report.
func SkipText() string {
	var b strings.Builder
	for _, s := range ActiveSkips() {
		fmt.Fprintf(&b, "  skip %s: %s\n", s.Pattern, s.Reason)
	}
	return b.String()
}
