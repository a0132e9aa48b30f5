package e2e

// The lab in Kubernetes mode (go test ./testbed/e2e -run TestE2EKubernetes,
// as root, after `make k8s-tools k8s-node-tools e2e-tools images`): the
// leaf-spine fabric with FRR, a real control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler) and a real node in every node
// namespace (containerd, kubelet, kube-proxy) beside podrouted, which
// carries the routes between nodes and racks over BGP. It checks what a
// cluster user relies on: kubelet's CNI calls give pods podroute addresses,
// pods in different racks reach each other, a ClusterIP Service reaches
// them, a deleted Pod's address is released; then Kubernetes' own 47
// [sig-network] [Conformance] specs run against the lab (k8se2e, as `make
// e2e SUITE=conformance` does), and the teardown leaves nothing.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/ipam"
	"github.com/podroute/podroute/testbed/images"
	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/k8se2e"
	"github.com/podroute/podroute/testbed/kubenode"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
	"github.com/podroute/podroute/testbed/topology"
)

// conformanceSpecs is how many [sig-network] [Conformance] specs e2e.test
// v1.36.0 has.
const conformanceSpecs = 47

// TestE2EKubernetes brings leafspine up as a real cluster, as `podroute-lab
// up --kubernetes` does, checks pods, Services and IPAM on it, runs the
// sig-network Conformance specs (skipped with -short or
// PODROUTE_E2E_CONFORMANCE=0) and checks the teardown.
func TestE2EKubernetes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	running, dir, teardown := upRealNodeLab(t, ctx, "leafspine")
	topo := running.Plan.Topology
	run := running.RunID()
	t.Logf("E2E figure: real-node leafspine (4 kubelet nodes, control plane, 4 FRR routers) up in %s", running.Startup)

	// Pod CIDRs are nodeipam's, and podrouted announces exactly those.
	st, err := lab.ReadState(dir)
	if err != nil || st == nil || st.Kubernetes == nil {
		t.Fatalf("lab state: %+v %v", st, err)
	}
	for _, n := range running.Plan.Nodes {
		if got := st.PodCIDRs[n.Name]; len(got) != 1 || got[0] != n.PodCIDRs[0].String() || !netip.MustParsePrefix(topo.PodPool4).Contains(n.PodCIDRs[0].Addr()) {
			t.Errorf("node %s: pod CIDRs %v in the state, %v in the plan; want one from nodeipam inside %s", n.Name, got, n.PodCIDRs, topo.PodPool4)
		}
	}

	// kubelet registered each Node: InternalIP is the fabric address,
	// the rack label came with the registration, and podrouted marked the
	// network available.
	nodes, err := running.KubeNodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, np := range running.Plan.Nodes {
		n, ok := nodes[np.Name]
		if !ok {
			t.Errorf("no Node %s", np.Name)
			continue
		}
		var internal string
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal != np.Addresses()[0].String() || n.Status.NodeInfo.KubeletVersion != k8sharness.Version || n.Labels[lab.KubeRackLabel] == "" {
			t.Errorf("Node %s: InternalIP %s (want %s), kubelet %s, rack label %q", np.Name, internal, np.Addresses()[0], n.Status.NodeInfo.KubeletVersion, n.Labels[lab.KubeRackLabel])
		}
		var ready, network bool
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			network = network || (c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse && c.Reason == "PodrouteIsUp")
		}
		if !ready || !network {
			t.Errorf("Node %s: Ready %v, NetworkUnavailable=False (PodrouteIsUp) %v; conditions %+v", np.Name, ready, network, n.Status.Conditions)
		}
	}

	// Every pod reaches every other across nodes and racks (real Pods,
	// addresses from kubelet's CNI ADD through containerd, routes from
	// podrouted over BGP).
	m := running.PingMatrix(ctx)
	var b strings.Builder
	m.Print(&b)
	t.Logf("reachability:\n%s", b.String())
	if !m.AllOK() {
		var s strings.Builder
		running.PrintSessions(ctx, &s)
		t.Fatalf("%d pod pairs unreachable; sessions:\n%s", m.Failures(), s.String())
	}
	for _, np := range running.Plan.Nodes {
		routes, err := running.NS(np.Name).KernelRoutes("ipv4")
		if err != nil {
			t.Fatal(err)
		}
		for _, other := range running.Plan.Nodes {
			if other == np {
				continue
			}
			found := false
			for _, r := range routes {
				found = found || (r.Dst == other.PodCIDRs[0].String() && r.Protocol == fmt.Sprint(topology.RouteProtocol))
			}
			if !found {
				t.Errorf("node %s has no podroute (proto %d) route to %s's pod CIDR %s", np.Name, topology.RouteProtocol, other.Name, other.PodCIDRs[0])
			}
		}
	}

	// Two pods in different racks: addresses from their node's pod CIDR,
	// recorded in that node's podroute IPAM store; HTTP both ways.
	pods := map[string]topology.PodPlan{}
	for _, p := range running.Pods() {
		pods[p.Name] = p
	}
	a, z := pods["node-1-p1"], pods["node-3-p1"] // rack-1, rack-2
	for _, p := range []topology.PodPlan{a, z} {
		np := running.Node(p.Node)
		if len(p.Addrs) != 1 || !np.PodCIDRs[0].Contains(p.Addrs[0]) || !allocated(running.IPAMDir(p.Node), p.Addrs[0]) {
			t.Fatalf("pod %s on %s: addresses %v, want one from %s recorded in %s", p.Name, p.Node, p.Addrs, np.PodCIDRs[0], running.IPAMDir(p.Node))
		}
	}
	podRun := func(pod string, argv ...string) (string, error) {
		c, err := running.Command(ctx, pod, argv...)
		if err != nil {
			return "", err
		}
		out, err := c.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	for _, pair := range [][2]topology.PodPlan{{a, z}, {z, a}} {
		url := fmt.Sprintf("http://%s:8080/hostname", pair[1].Addrs[0])
		got, err := podRun(pair[0].Name, "curl", "-sS", "--max-time", "5", url)
		if err != nil || got != pair[1].Name {
			t.Errorf("pod %s (%s) -> %s: %q, %v; want %q", pair[0].Name, pair[0].Node, url, got, err, pair[1].Name)
		}
	}
	t.Logf("E2E figure: pods %s (%s, %s, rack-1) and %s (%s, %s, rack-2) have podroute-cni addresses and reach each other over HTTP",
		a.Name, a.Node, a.Addrs[0], z.Name, z.Node, z.Addrs[0])

	// The ClusterIP Service in front of the lab's pods (kube-proxy) reaches
	// pods of both racks from a pod.
	svcIP, err := running.Kubectl(ctx, "get", "service", "-n", lab.KubePodNamespace, lab.KubePodService, "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	testutil.Eventually(t, time.Minute, "the ClusterIP Service reaching pods in both racks", func() error {
		got, err := podRun(a.Name, "curl", "-sS", "--max-time", "3", "http://"+string(svcIP)+"/hostname")
		if err == nil {
			seen[got] = true
		}
		if !(seen["node-1-p1"] || seen["node-1-p2"] || seen["node-2-p1"] || seen["node-2-p2"]) ||
			!(seen["node-3-p1"] || seen["node-3-p2"] || seen["node-4-p1"] || seen["node-4-p2"]) {
			return fmt.Errorf("backends seen %v (last %q, %v)", seen, got, err)
		}
		return nil
	})
	t.Logf("E2E figure: ClusterIP %s (kube-proxy %s mode) from pod %s reached %d of 8 pods, in both racks", svcIP, kubenode.DefaultProxyMode, a.Name, len(seen))

	// A deleted Pod's address goes back to podroute's IPAM, and its host
	// route leaves the node.
	gone := pods["node-3-p2"]
	delStart := time.Now()
	if _, err := running.Kubectl(ctx, "delete", "pod", "-n", lab.KubePodNamespace, gone.Name, "--wait=false"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 2*time.Minute, "pod "+gone.Name+"'s address released", func() error {
		if allocated(running.IPAMDir(gone.Node), gone.Addrs[0]) {
			return fmt.Errorf("%s still allocated in %s", gone.Addrs[0], running.IPAMDir(gone.Node))
		}
		routes, err := running.NS(gone.Node).KernelRoutes("ipv4")
		if err != nil {
			return err
		}
		for _, r := range routes {
			if r.Dst == gone.Addrs[0].String() || r.Dst == gone.Addrs[0].String()+"/32" {
				return fmt.Errorf("host route %s still on %s", r.Dst, gone.Node)
			}
		}
		return nil
	})
	t.Logf("E2E figure: pod %s deleted; %s released in %s's IPAM store and its host route gone %.1fs later",
		gone.Name, gone.Addrs[0], gone.Node, time.Since(delStart).Seconds())

	var mb strings.Builder
	running.Memory().Print(&mb)
	for _, line := range strings.Split(strings.TrimRight(mb.String(), "\n"), "\n") {
		t.Logf("E2E figure: memory (RSS) with the lab's 8 pods and CoreDNS: %s", line)
	}

	t.Run("services_from_outside", func(t *testing.T) { servicesFromOutside(t, ctx, running) })

	t.Run("conformance", func(t *testing.T) {
		if os.Getenv("PODROUTE_E2E_CONFORMANCE") == "0" {
			t.Skip("PODROUTE_E2E_CONFORMANCE=0")
		}
		report := os.Getenv("PODROUTE_E2E_REPORT_DIR")
		if report == "" {
			report = filepath.Join(os.TempDir(), "podroute-e2e-reports", run+"-"+time.Now().Format("20060102-150405"))
		}
		var log syncBuffer
		res, err := k8se2e.RunOnLab(ctx, running, k8se2e.Options{Suites: []string{"conformance"}, ReportDir: report, Out: &log})
		if res == nil {
			t.Fatalf("e2e run: %v\n%s", err, log.String())
		}
		var rb strings.Builder
		res.Print(&rb)
		for _, line := range strings.Split(strings.TrimSpace(rb.String()), "\n") {
			t.Logf("E2E figure: %s", line)
		}
		if err != nil {
			t.Errorf("e2e run: %v", err)
		}
		if res.Total.Failed > 0 || res.Total.Passed < conformanceSpecs {
			t.Errorf("sig-network Conformance on real nodes: %s (want %d passed, 0 failed); ginkgo's output is in %s", res.Total, conformanceSpecs, report)
		}
	})

	start := time.Now()
	teardown()
	t.Logf("E2E figure: real-node lab teardown took %.1fs", time.Since(start).Seconds())
}

// upRealNodeLab brings topology topoName up as a real cluster (skipping
// the test when root, FRR or the built Kubernetes pieces are missing) and
// registers its teardown, which also checks that nothing is left; calling
// the returned teardown earlier does it at once (once).
func upRealNodeLab(t *testing.T, ctx context.Context, topoName string) (*lab.Lab, string, func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts a control plane and four real kubelet nodes")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces")
	}
	for _, bin := range []string{"/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("skipping: needs FRR (apt-get install frr): %v", err)
		}
	}
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skipf("skipping: needs ping (apt-get install iputils-ping): %v", err)
	}
	var missing []string
	if err := k8sharness.CheckBinaries("", "", true); err != nil {
		missing = append(missing, err.Error())
	}
	if err := kubenode.CheckBinaries(""); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := images.Paths(""); err != nil {
		missing = append(missing, err.Error())
	}
	if err := k8se2e.CheckBinaries(""); err != nil {
		missing = append(missing, err.Error())
	}
	if len(missing) > 0 {
		t.Skipf("skipping the real-node lab: %s (make k8s-tools k8s-node-tools e2e-tools images, which make test runs first)", strings.Join(missing, "; "))
	}
	binDir := testenv.Binaries(t)
	// Not t.TempDir(): FRR (user frr) must traverse the state dir.
	dir, err := os.MkdirTemp("", "podroute-e2e-k8s-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	varLibCNI := testutil.RecordExistence("/var/lib/cni")

	var running *lab.Lab
	var run string
	tornDown := false
	teardown := func() {
		if tornDown {
			return
		}
		tornDown = true
		st, _ := lab.ReadState(dir)
		if t.Failed() && st != nil && st.Kubernetes != nil {
			for _, n := range []string{"node-1", "node-3"} {
				for _, c := range []string{"kubelet", "containerd"} {
					b, _ := os.ReadFile(filepath.Join(st.Kubernetes.NodeBase, n, "logs", c+".log"))
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("%s %s log (tail):\n%s", n, c, strings.Join(lines[max(0, len(lines)-20):], "\n"))
				}
			}
		}
		if running != nil {
			// Down in Kubernetes mode is Teardown from the state file, as
			// `podroute-lab down` after a crash: nothing of this process's
			// memory is used.
			if err := running.Down(); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
		if err := lab.Teardown(dir); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if run != "" {
			checkNothingLeft(t, run, dir, st)
		}
		varLibCNI.Check(t)
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
	t.Cleanup(teardown)

	topo, err := topology.Load(topoName)
	if err != nil {
		t.Fatal(err)
	}
	running, err = lab.Up(ctx, topo, lab.Options{
		StateDir: dir, BinDir: binDir, Out: &logWriter{t: t}, ConvergeTimeout: 2 * time.Minute,
		Kubernetes: k8se2e.LabOptions("", manifestsDir(t)),
	})
	if err != nil {
		t.Fatalf("lab did not come up in Kubernetes mode: %v", err)
	}
	run = running.RunID()
	return running, dir, teardown
}

// checkNothingLeft: no namespace, process, cgroup or mount of the run.
func checkNothingLeft(t *testing.T, run, dir string, st *lab.State) {
	t.Helper()
	if left, err := netns.List(run + "-"); err != nil || len(left) != 0 {
		t.Errorf("namespaces left behind: %v %v", left, err)
	}
	if st != nil {
		for _, p := range st.Processes {
			if alive(p.PID, p.Marker) {
				t.Errorf("process left behind: %s (pid %d)", p.Name, p.PID)
			}
		}
	}
	marks := []string{dir, run}
	if st != nil && st.Kubernetes != nil && st.Kubernetes.NodeBase != "" {
		marks = append(marks, st.Kubernetes.NodeBase)
	}
	for _, m := range marks {
		if left := processesNaming(m); len(left) > 0 {
			t.Errorf("processes left behind with %s on their command line: %v", m, left)
		}
	}
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*/podroute-" + run + "-*"); len(cg) > 0 {
		t.Errorf("cgroups left: %v", cg)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		for _, m := range marks {
			if strings.Contains(line, m) {
				t.Errorf("mount left in the machine's mount table: %s", line)
			}
		}
	}
}

// allocated reports whether a is in the IPAM store in dir.
func allocated(dir string, a netip.Addr) bool {
	st, err := ipam.ReadState(dir)
	return err == nil && st.Holds(a)
}

// syncBuffer collects ginkgo's output (written from the runner's
// goroutines) for a failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.b.String()
	if len(b) > 20000 {
		b = "...\n" + b[len(b)-20000:]
	}
	return b
}

func manifestsDir(t *testing.T) string {
	d, err := filepath.Abs(filepath.Join("..", "..", "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// alive reports whether pid runs with marker on its command line.
func alive(pid int, marker string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.Contains(strings.ReplaceAll(string(data), "\x00", " "), marker)
}

// processesNaming lists running processes whose command line contains s.
func processesNaming(s string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(data), s) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	return out
}

// logWriter sends the lab's progress lines to the test log.
type logWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Logf("lab: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
