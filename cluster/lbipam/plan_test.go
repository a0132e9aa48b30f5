package lbipam

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podroute/podroute/cluster"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func lbCfg(pools ...cluster.Pool) cluster.LoadBalancerConfig {
	return cluster.LoadBalancerConfig{Class: cluster.DefaultLoadBalancerClass, AllocateClassless: true, Pools: pools}
}

func pool(name string, cidrs ...string) cluster.Pool {
	p := cluster.Pool{Name: name}
	for _, c := range cidrs {
		p.Prefixes = append(p.Prefixes, netip.MustParsePrefix(c))
	}
	return p
}

// lb is a classless LoadBalancer Service created i seconds after t0.
func lb(name string, i int, ingress ...string) cluster.ServiceInfo {
	s := cluster.ServiceInfo{Namespace: "ns", Name: name, Type: corev1.ServiceTypeLoadBalancer, Created: t0.Add(time.Duration(i) * time.Second)}
	for _, a := range ingress {
		s.IngressIPs = append(s.IngressIPs, netip.MustParseAddr(a))
	}
	return s
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// summary is one line per decision: "name [addrs] change problems".
func summary(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		line := fmt.Sprintf("%s %v %v", d.Service.Name, d.Addrs, d.Change)
		for _, p := range d.Problems {
			line += " " + p.Reason
		}
		out = append(out, line)
	}
	return out
}

func wantPlan(t *testing.T, what string, got []Decision, want ...string) {
	t.Helper()
	if s := summary(got); !slices.Equal(s, want) {
		t.Errorf("%s:\n got %s\nwant %s", what, strings.Join(s, "\n     "), strings.Join(want, "\n     "))
	}
}

func TestPlan(t *testing.T) {
	small := pool("small", "198.51.100.0/31")
	for _, tc := range []struct {
		name string
		cfg  cluster.LoadBalancerConfig
		svcs []cluster.ServiceInfo
		want []string
	}{
		{"first free address, oldest Service first",
			lbCfg(small), []cluster.ServiceInfo{lb("b", 2), lb("a", 1)},
			[]string{"a [198.51.100.0] true", "b [198.51.100.1] true"}},
		{"existing allocations are kept as they are (a restart changes nothing)",
			lbCfg(small), []cluster.ServiceInfo{lb("a", 1, "198.51.100.1"), lb("b", 2, "198.51.100.0")},
			[]string{"a [198.51.100.1] false", "b [198.51.100.0] false"}},
		{"exhaustion: the third Service gets nothing and a problem",
			lbCfg(small), []cluster.ServiceInfo{lb("a", 1), lb("b", 2), lb("c", 3)},
			[]string{"a [198.51.100.0] true", "b [198.51.100.1] true", "c [] false PoolExhausted"}},
		{"release: an address whose Service is gone is free again",
			lbCfg(small), []cluster.ServiceInfo{lb("b", 2, "198.51.100.1"), lb("c", 3)},
			[]string{"b [198.51.100.1] false", "c [198.51.100.0] true"}},
		{"a Service that is no longer a LoadBalancer holds nothing, whatever its stale status",
			lbCfg(small), []cluster.ServiceInfo{func() cluster.ServiceInfo {
				s := lb("was", 1, "198.51.100.0")
				s.Type = corev1.ServiceTypeClusterIP
				return s
			}(), lb("new", 2)},
			[]string{"new [198.51.100.0] true"}},
		{"the same address in two statuses: the older Service keeps it, the younger gets another",
			lbCfg(small), []cluster.ServiceInfo{lb("young", 2, "198.51.100.0"), lb("old", 1, "198.51.100.0")},
			[]string{"old [198.51.100.0] false", "young [198.51.100.1] true"}},
		{"an address outside every pool is replaced",
			lbCfg(small), []cluster.ServiceInfo{lb("a", 1, "203.0.113.9")},
			[]string{"a [198.51.100.0] true"}},
		{"two addresses of one family: one is dropped",
			lbCfg(small), []cluster.ServiceInfo{lb("a", 1, "198.51.100.1", "198.51.100.0")},
			[]string{"a [198.51.100.1] true"}},
		{"another implementation's Service is not served, but its address is not handed out",
			lbCfg(small), []cluster.ServiceInfo{func() cluster.ServiceInfo {
				s := lb("theirs", 1, "198.51.100.0")
				s.Class = "example.com/other"
				return s
			}(), lb("ours", 2)},
			[]string{"ours [198.51.100.1] true"}},
		{"podroute's class is served; classless too unless allocateClassless is off",
			cluster.LoadBalancerConfig{Class: cluster.DefaultLoadBalancerClass, Pools: []cluster.Pool{small}},
			[]cluster.ServiceInfo{lb("classless", 1), func() cluster.ServiceInfo {
				s := lb("classy", 2)
				s.Class = cluster.DefaultLoadBalancerClass
				return s
			}()},
			[]string{"classy [198.51.100.0] true"}},
		{"an external IP inside a pool is taken",
			lbCfg(small), []cluster.ServiceInfo{func() cluster.ServiceInfo {
				s := lb("ext", 1)
				s.Type, s.ExternalIPs = corev1.ServiceTypeClusterIP, addrs("198.51.100.0")
				return s
			}(), lb("a", 2)},
			[]string{"a [198.51.100.1] true"}},
	} {
		wantPlan(t, tc.name, Plan(tc.cfg, tc.svcs), tc.want...)
	}
}

func TestPlanFamilies(t *testing.T) {
	dual := pool("dual", "198.51.100.0/30", "2001:db8:1b::/126")
	v4only := pool("v4", "198.51.100.0/30")
	ds := func(name string, i int, ingress ...string) cluster.ServiceInfo {
		s := lb(name, i, ingress...)
		s.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
		return s
	}
	// One address per family, in the order of ipFamilies.
	wantPlan(t, "dual-stack", Plan(lbCfg(dual), []cluster.ServiceInfo{ds("a", 1)}),
		"a [2001:db8:1b:: 198.51.100.0] true")
	// A family no pool has: the other family still gets its address.
	got := Plan(lbCfg(v4only), []cluster.ServiceInfo{ds("a", 1)})
	wantPlan(t, "dual-stack without an IPv6 pool", got, "a [198.51.100.0] true NoPoolForFamily")
	if !strings.Contains(got[0].Problems[0].Message, "no pool this Service may use has IPv6 addresses (pool v4 (none of that family))") {
		t.Errorf("message %q", got[0].Problems[0].Message)
	}
	// An address of a family the Service does not have is dropped.
	single := lb("a", 1, "2001:db8:1b::1", "198.51.100.2")
	wantPlan(t, "single-stack with a stray IPv6 address", Plan(lbCfg(dual), []cluster.ServiceInfo{single}), "a [198.51.100.2] true")
	// An existing dual-stack allocation is kept.
	wantPlan(t, "kept", Plan(lbCfg(dual), []cluster.ServiceInfo{ds("a", 1, "2001:db8:1b::3", "198.51.100.3")}),
		"a [2001:db8:1b::3 198.51.100.3] false")
}

func TestPlanRequests(t *testing.T) {
	cfg := lbCfg(pool("a", "198.51.100.0/29"), pool("b", "198.51.100.8/29"))
	req := func(name string, i int, want string, ingress ...string) cluster.ServiceInfo {
		s := lb(name, i, ingress...)
		s.RequestedIPs = addrs(strings.Split(want, ",")...)
		return s
	}
	// Two Services ask for one address: the older gets it, the other a
	// problem naming who has it.
	got := Plan(cfg, []cluster.ServiceInfo{req("second", 2, "198.51.100.10"), req("first", 1, "198.51.100.10")})
	wantPlan(t, "two requests for one address", got, "first [198.51.100.10] true", "second [] false AddressInUse")
	if m := got[1].Problems[0].Message; !strings.Contains(m, "198.51.100.10 is already allocated to Service ns/first") {
		t.Errorf("AddressInUse message %q", m)
	}
	// Once the first holds it in its status, a restart keeps it there.
	wantPlan(t, "after the first was written", Plan(cfg, []cluster.ServiceInfo{req("second", 2, "198.51.100.10"), req("first", 1, "198.51.100.10", "198.51.100.10")}),
		"first [198.51.100.10] false", "second [] false AddressInUse")
	// The holder goes: the other gets it.
	wantPlan(t, "the holder deleted", Plan(cfg, []cluster.ServiceInfo{req("second", 2, "198.51.100.10")}), "second [198.51.100.10] true")
	// A request outside every pool, or of a family the Service lacks.
	got = Plan(cfg, []cluster.ServiceInfo{req("out", 1, "203.0.113.1"), req("v6", 2, "2001:db8::1")})
	wantPlan(t, "requests that cannot be met", got, "out [] false AddressNotInPool", "v6 [198.51.100.0] true RequestedFamilyNotServed")
	// A Service that changes its request moves to the new address and
	// frees the old one.
	wantPlan(t, "changed request", Plan(cfg, []cluster.ServiceInfo{req("a", 1, "198.51.100.9", "198.51.100.1"), lb("b", 2)}),
		"a [198.51.100.9] true", "b [198.51.100.0] true")
	// A pool named by annotation: only that pool; an unknown one is a problem.
	inB := lb("inb", 1)
	inB.Pool = "b"
	nowhere := lb("nowhere", 2)
	nowhere.Pool = "c"
	wrong := req("wrong", 3, "198.51.100.1")
	wrong.Pool = "b"
	got = Plan(cfg, []cluster.ServiceInfo{inB, nowhere, wrong})
	wantPlan(t, "pool annotation", got, "inb [198.51.100.8] true", "nowhere [] false UnknownPool", "wrong [] false AddressNotInPool")
	// A Service holding an address of another pool than the one it names
	// moves.
	moved := lb("moved", 1, "198.51.100.1")
	moved.Pool = "b"
	wantPlan(t, "pool annotation added", Plan(cfg, []cluster.ServiceInfo{moved}), "moved [198.51.100.8] true")
}

func TestPlanExhaustionMessage(t *testing.T) {
	cfg := lbCfg(pool("tiny", "198.51.100.0/31", "2001:db8::/127"))
	got := Plan(cfg, []cluster.ServiceInfo{lb("a", 1), lb("b", 2), lb("c", 3)})
	m := got[2].Problems[0].Message
	if want := "no free IPv4 address: pool tiny 198.51.100.0/31 (2 of 2 in use)"; !strings.HasPrefix(m, want) {
		t.Errorf("exhaustion message %q, want it to start %q", m, want)
	}
	// Large IPv6 pools are counted without overflow, and never exhausted
	// by a walk of the whole pool (the first free one is found at once).
	big := lbCfg(pool("big", "2001:db8::/64"))
	s := lb("a", 1)
	s.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	wantPlan(t, "/64 pool", Plan(big, []cluster.ServiceInfo{s}), "a [2001:db8::] true")
}

// Many Services and a large pool: each pass stays cheap, and every
// address is handed out once.
func TestPlanManyServicesUnique(t *testing.T) {
	cfg := lbCfg(pool("p", "10.200.0.0/20"))
	var svcs []cluster.ServiceInfo
	for i := range 3000 {
		svcs = append(svcs, lb(fmt.Sprintf("s%04d", i), i))
	}
	begin := time.Now()
	ds := Plan(cfg, svcs)
	took := time.Since(begin)
	seen := map[netip.Addr]string{}
	for _, d := range ds {
		if len(d.Addrs) != 1 {
			t.Fatalf("%s got %v", d.Service.Name, d.Addrs)
		}
		if o, dup := seen[d.Addrs[0]]; dup {
			t.Fatalf("%s handed to %s and %s", d.Addrs[0], o, d.Service.Name)
		}
		seen[d.Addrs[0]] = d.Service.Name
	}
	t.Logf("3000 Services allocated from a /20 in one pass: %v", took.Round(time.Millisecond))
}

// The cleanup finalizer: added to every Service the allocator serves that
// lacks it, removed from one being deleted or no longer a LoadBalancer,
// left alone on another class's Service; a Service being deleted keeps its
// address taken until it is gone.
func TestPlanFinalizer(t *testing.T) {
	cfg := lbCfg(pool("small", "198.51.100.0/31"))
	with := func(s cluster.ServiceInfo) cluster.ServiceInfo { s.HasCleanupFinalizer = true; return s }
	deleting := func(s cluster.ServiceInfo) cluster.ServiceInfo { s.Deleting = true; return s }
	clusterIP := with(lb("was-lb", 0))
	clusterIP.Type = corev1.ServiceTypeClusterIP
	otherClass := with(lb("other-class", 0))
	otherClass.Class = "example.com/cloud"
	got := Plan(cfg, []cluster.ServiceInfo{
		lb("new", 3),
		with(lb("kept", 2, "198.51.100.1")),
		deleting(with(lb("gone", 1, "198.51.100.0"))),
		clusterIP,
		otherClass,
		deleting(otherClass),
	})
	var lines []string
	for _, d := range got {
		lines = append(lines, fmt.Sprintf("%s %v %v %v", d.Service.Name, d.Addrs, d.Change, d.Finalizer)+strings.Join(reasons(d), ""))
	}
	want := []string{
		// "gone" still holds .0 and "kept" holds .1: nothing is left for "new".
		"was-lb [] false 2",
		"gone [198.51.100.0] false 2",
		"kept [198.51.100.1] false 0",
		"new [] false 1 PoolExhausted",
	}
	if !slices.Equal(lines, want) {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(lines, "\n  "), strings.Join(want, "\n  "))
	}
}

func reasons(d Decision) []string {
	var out []string
	for _, p := range d.Problems {
		out = append(out, " "+p.Reason)
	}
	return out
}
