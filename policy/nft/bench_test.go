package nft

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"sigs.k8s.io/knftables"

	"github.com/podroute/podroute/policy"
)

// BenchmarkPolicy measures, on one node with 1,000 local pods (plus 1,000
// remote peers) and 200 policies, programmed into a namespace standing for
// the node:
//   - the time from a Pod or NetworkPolicy change (computed in-process) to
//     its rules in the kernel, median and p99 over 200 changes, with the
//     kernel transaction alone beside it;
//   - the first full sync, and a restart's read-back and diff;
//   - the Go heap the inputs and computed state hold, and the ruleset size;
//   - pod-to-pod TCP throughput between two real pods with no policy and
//     with 100 policies on each side, interleaved in the same run.
//
// Run: go test -run '^$' -bench Policy -benchtime 1x ./policy/nft/ (root).
func BenchmarkPolicy(b *testing.B) {
	skipUnlessRoot(b)
	for i := 0; i < b.N; i++ {
		benchmarkPolicy(b)
	}
}

const (
	benchLocal      = 1000
	benchRemote     = 1000
	benchNamespaces = 20
	benchPolicies   = 200 // 10 per namespace
	benchChanges    = 200
)

func benchPod(i int, local bool) *corev1.Pod {
	node, base := "node", 64
	if !local {
		node, base = "remote", 65
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("bench-%d", i%benchNamespaces), Name: fmt.Sprintf("%s-%d", node, i),
			// app independent of the namespace: every app in every namespace.
			Labels: map[string]string{"app": fmt.Sprintf("a%d", (i/benchNamespaces)%10), "tier": fmt.Sprintf("t%d", i%5)},
		},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: int32(8000 + i%7)}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{
			{IP: netip.AddrFrom4([4]byte{10, byte(base), byte(i / 250), byte(i%250 + 1)}).String()},
			{IP: fmt.Sprintf("fd00:%d::%x", base, i+1)}}},
	}
}

// benchPolicy j of namespace ns: selects app a<j>; ingress from app
// a<j+1> of its namespace on TCP 8080-8090 and from namespaces team t<j%4>
// on the named port "http"; every other policy also isolates egress: to app
// a<j+2> on "dns" and to 10/8 except the local pods' /16 on TCP 443.
func benchPolicy(ns, j, port int) *networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	p := intstr.FromInt32(int32(port))
	end := int32(port + 10)
	http, dns, https := intstr.FromString("http"), intstr.FromString("dns"), intstr.FromInt32(443)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("bench-%d", ns), Name: fmt.Sprintf("pol-%d", j)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", j)}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", (j+1)%10)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p, EndPort: &end}}},
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", j%4)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &http}}},
			},
		},
	}
	if j%2 == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
			{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%d", (j+2)%10)}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}}},
			{To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.64.0.0/16"}}}},
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &https}}},
		}
	}
	return np
}

func benchInput() policy.Input {
	in := policy.Input{NodeName: "node"}
	for i := 0; i < benchNamespaces; i++ {
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("bench-%d", i), Labels: map[string]string{"team": fmt.Sprintf("t%d", i%4)}}})
	}
	for i := 0; i < benchLocal; i++ {
		in.Pods = append(in.Pods, benchPod(i, true))
	}
	for i := 0; i < benchRemote; i++ {
		in.Pods = append(in.Pods, benchPod(i, false))
	}
	for ns := 0; ns < benchNamespaces; ns++ {
		for j := 0; j < benchPolicies/benchNamespaces; j++ {
			in.Policies = append(in.Policies, benchPolicy(ns, j, 8080))
		}
	}
	return in
}

type latencies struct {
	name         string
	total, write []time.Duration
	ops          []int
}

func (l *latencies) add(total, write time.Duration, ops int) {
	l.total = append(l.total, total)
	l.write = append(l.write, write)
	l.ops = append(l.ops, ops)
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func medianInt(xs []int) int {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func benchmarkPolicy(b *testing.B) {
	ctx := context.Background()
	// Two real pods for throughput; the 1,000 others exist as objects and
	// addresses only (their packets are not needed to time the rules).
	tputPods := []labPod{
		{ns: "ns-a", name: "sender", local: true, n: 10, labels: map[string]string{"app": "sender"}},
		{ns: "ns-a", name: "receiver", local: true, n: 11, labels: map[string]string{"app": "receiver"}},
	}
	l := newLab(b, tputPods)

	// 1. Throughput with no policy and with 100 on each side, interleaved.
	var tputOpen, tputPolicies []float64
	for round := 0; round < 2; round++ {
		l.sync(input(tputPods))
		tputOpen = append(tputOpen, throughput(b, l, tputPods))
		l.sync(input(tputPods, throughputPolicies(100)...))
		tputPolicies = append(tputPolicies, throughput(b, l, tputPods))
	}
	l.sync(input(tputPods))
	must(b, l.prog.Remove(ctx))

	// 2. The big node.
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	in := benchInput()
	start := time.Now()
	res := policy.Compute(in)
	computeFull := time.Since(start)
	prog, err := New(Options{Enter: l.node.Do})
	must(b, err)
	st, err := prog.Sync(ctx, res)
	must(b, err)
	firstSync := time.Since(start)
	firstOps := st.Ops
	counts := st.Counts
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	heap := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	listing, err := l.node.Exec(ctx, "nft", "list", "table", "inet", DefaultTable)
	must(b, err)

	// 3. 200 changes: a remote pod's labels, a local pod's labels, a
	// policy's ports, in turn.
	remote := &latencies{name: "remote pod labels"}
	local := &latencies{name: "local pod labels"}
	pol := &latencies{name: "policy ports"}
	for k := 0; k < benchChanges; k++ {
		var lat *latencies
		switch k % 3 {
		case 0:
			i := benchLocal + (k*37)%benchRemote
			p := in.Pods[i].DeepCopy()
			p.Labels = map[string]string{"app": fmt.Sprintf("a%d", (k/3)%10), "tier": "t0"}
			in.Pods[i] = p
			lat = remote
		case 1:
			i := (k * 41) % benchLocal
			p := in.Pods[i].DeepCopy()
			p.Labels = map[string]string{"app": fmt.Sprintf("a%d", (k/3+3)%10), "tier": "t1"}
			in.Pods[i] = p
			lat = local
		default:
			i := (k * 13) % len(in.Policies)
			ns, j := i/(benchPolicies/benchNamespaces), i%(benchPolicies/benchNamespaces)
			in.Policies[i] = benchPolicy(ns, j, 8080+(k%5)*100)
			lat = pol
		}
		t0 := time.Now()
		res := policy.Compute(in)
		st, err := prog.Sync(ctx, res)
		must(b, err)
		lat.add(time.Since(t0), st.Took, st.Ops)
		if os.Getenv("BENCH_DEBUG") != "" && st.Took > 300*time.Millisecond {
			fmt.Printf("slow %s: %v, %d ops:\n%s\n", lat.name, st.Took, st.Ops, st.Transaction)
		}
	}

	// The anchor: the same nft binary sending a no-op transaction against
	// this ruleset (fork, exec, cache fill, commit), in the same run.
	var floor []time.Duration
	for k := 0; k < 20; k++ {
		tx := prog.nft.NewTransaction()
		tx.Add(&knftables.Table{})
		t0 := time.Now()
		must(b, l.node.Do(func() error { return prog.nft.Run(ctx, tx) }))
		floor = append(floor, time.Since(t0))
	}
	// 4. A restart: a new Programmer reads the table back and diffs.
	prog2, err := New(Options{Enter: l.node.Do})
	must(b, err)
	t0 := time.Now()
	st, err = prog2.Sync(ctx, policy.Compute(in))
	must(b, err)
	restart := time.Since(t0)
	restartOps := st.Ops
	must(b, prog2.Remove(ctx))

	all := &latencies{name: "all changes"}
	for _, x := range []*latencies{remote, local, pol} {
		all.total = append(all.total, x.total...)
		all.write = append(all.write, x.write...)
		all.ops = append(all.ops, x.ops...)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nNetworkPolicy on one node: %d local pods, %d remote pods, %d policies (%d changes)\n",
		benchLocal, benchRemote, benchPolicies, benchChanges)
	fmt.Fprintf(&sb, "%-20s %10s %10s %12s %12s %8s\n", "change -> kernel", "median", "p99", "nft median", "nft p99", "ops")
	for _, x := range []*latencies{remote, local, pol, all} {
		fmt.Fprintf(&sb, "%-20s %10s %10s %12s %12s %8d\n", x.name,
			ms(pct(x.total, 0.5)), ms(pct(x.total, 0.99)), ms(pct(x.write, 0.5)), ms(pct(x.write, 0.99)), medianInt(x.ops))
	}
	fmt.Fprintf(&sb, "%-20s %10s %10s   (anchor: nft itself, same run)\n", "no-op nft -f", ms(pct(floor, 0.5)), ms(pct(floor, 0.99)))
	fmt.Fprintf(&sb, "full compute %s; first sync (compute + %d ops) %s; restart read-back + diff %s (%d ops)\n",
		ms(computeFull), firstOps, ms(firstSync), ms(restart), restartOps)
	fmt.Fprintf(&sb, "ruleset: %d chains, %d rules, %d sets/maps, %d elements, %d KiB as `nft list`; Go heap for inputs and state %.1f MiB\n",
		counts.Chains, counts.Rules, counts.Sets, counts.Elements, len(listing)/1024, float64(heap)/(1<<20))
	fmt.Fprintf(&sb, "pod-to-pod TCP (Go loop, 1 s each, interleaved): no policy %s Gbit/s; 100 policies per side %s Gbit/s; ratio %.2f\n",
		gbits(tputOpen), gbits(tputPolicies), mean(tputPolicies)/mean(tputOpen))
	fmt.Fprint(os.Stdout, sb.String())
	b.ReportMetric(float64(pct(all.total, 0.5).Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(pct(all.total, 0.99).Microseconds())/1000, "ms-p99")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func gbits(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(parts, "/")
}

// throughputPolicies isolates both pods with n policies each, the last of
// which allows the flow: a new connection walks all of them.
func throughputPolicies(n int) []*networkingv1.NetworkPolicy {
	var out []*networkingv1.NetworkPolicy
	tcp := corev1.ProtocolTCP
	for i := 0; i < n; i++ {
		p := intstr.FromInt32(int32(10000 + i))
		if i == n-1 {
			p = intstr.FromInt32(5201)
		}
		in := netpol("ns-a", fmt.Sprintf("in-%d", i), map[string]string{"app": "receiver"}, ingressOnly...)
		in.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "sender"})},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}}}
		out = append(out, in)
		eg := netpol("ns-a", fmt.Sprintf("out-%d", i), map[string]string{"app": "sender"}, egressOnly...)
		eg.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{
			To:    []networkingv1.NetworkPolicyPeer{podPeer(map[string]string{"app": "receiver"})},
			Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &p}}}}
		out = append(out, eg)
	}
	return out
}

// throughput sends from the first pod to the second's port 5201 for a
// second and returns Gbit/s.
func throughput(b testing.TB, l *lab, pods []labPod) float64 {
	var ln net.Listener
	must(b, l.pods[pods[1].name].Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(pods[1].addr(4), 5201).String())
		return err
	}))
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		n, _ := io.Copy(io.Discard, conn)
		conn.Close()
		got <- n
	}()
	var conn net.Conn
	must(b, l.pods[pods[0].name].Do(func() (err error) {
		d := net.Dialer{Timeout: probeTimeout, LocalAddr: &net.TCPAddr{IP: pods[0].addr(4).AsSlice()}}
		conn, err = d.Dial("tcp", netip.AddrPortFrom(pods[1].addr(4), 5201).String())
		return err
	}))
	buf := make([]byte, 128<<10)
	start := time.Now()
	for time.Since(start) < time.Second {
		if _, err := conn.Write(buf); err != nil {
			b.Fatalf("throughput: %v", err)
		}
	}
	conn.Close()
	n := <-got
	return float64(n) * 8 / time.Since(start).Seconds() / 1e9
}
