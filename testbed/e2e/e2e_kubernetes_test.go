package e2e

// The lab in Kubernetes mode (go test ./testbed/e2e -run TestE2EKubernetes,
// as root, with FRR and the control-plane binaries of `make k8s-tools`):
// leafspine with a real etcd, kube-apiserver and kube-controller-manager
// in the lab, podrouted on each node driven by the API server under its
// ServiceAccount's token.

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

	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
	"github.com/podroute/podroute/testbed/topology"
)

// TestE2EKubernetes brings leafspine up in Kubernetes mode, as `podroute-lab
// up --kubernetes` does, and checks reachability, the Nodes' conditions and
// the teardown.
func TestE2EKubernetes(t *testing.T) {
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
	if err := k8sharness.CheckBinaries("", "", true); err != nil {
		t.Skipf("skipping: %v", err)
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var running *lab.Lab
	var run string
	tornDown := false
	teardown := func() {
		if tornDown {
			return
		}
		tornDown = true
		st, _ := lab.ReadState(dir)
		if running != nil {
			if err := running.Down(); err != nil {
				t.Errorf("teardown: %v", err)
			}
		}
		if err := lab.Teardown(dir); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if run != "" {
			if left, err := netns.List(run + "-"); err != nil || len(left) != 0 {
				t.Errorf("namespaces left behind: %v %v", left, err)
			}
		}
		if st != nil {
			for _, p := range st.Processes {
				if alive(p.PID, p.Marker) {
					t.Errorf("process left behind: %s (pid %d)", p.Name, p.PID)
				}
			}
		}
		if left := processesNaming(dir); len(left) > 0 {
			t.Errorf("processes left behind with %s on their command line: %v", dir, left)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
	t.Cleanup(teardown)

	out := &logWriter{t: t}
	topo, err := topology.Load("leafspine")
	if err != nil {
		t.Fatal(err)
	}
	running, err = lab.Up(ctx, topo, lab.Options{
		StateDir: dir, BinDir: binDir, Out: out, ConvergeTimeout: 90 * time.Second,
		Kubernetes: &lab.KubernetesOptions{Start: k8sharness.LabStarter(k8sharness.DefaultBinDir()), ManifestsDir: manifestsDir(t)},
	})
	if err != nil {
		t.Fatalf("lab did not come up in Kubernetes mode: %v", err)
	}
	run = running.RunID()
	t.Logf("E2E figure: Kubernetes-mode start-up of leafspine: %s", running.Startup)

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

	m := running.PingMatrix(ctx)
	var b strings.Builder
	m.Print(&b)
	t.Logf("reachability:\n%s", b.String())
	if !m.AllOK() {
		var s strings.Builder
		running.PrintSessions(ctx, &s)
		t.Fatalf("%d pod pairs unreachable; sessions:\n%s", m.Failures(), s.String())
	}

	conds, err := running.NodeNetworkConditions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range running.Plan.Nodes {
		c, ok := conds[n.Name]
		if !ok || c.Status != corev1.ConditionFalse || c.Reason != "PodrouteIsUp" {
			t.Errorf("Node %s NetworkUnavailable %+v, want False with reason PodrouteIsUp", n.Name, c)
		}
	}

	start := time.Now()
	teardown()
	t.Logf("E2E figure: Kubernetes-mode teardown took %.1fs", time.Since(start).Seconds())
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
