package kubenode_test

// Two real nodes (containerd 1.6, kubelet and kube-proxy v1.36.0) in
// network namespaces, with the testbed's control plane plus kube-scheduler
// in a third, static routes standing in for podrouted, podroute-cni as the
// CNI plugin (go test ./testbed/kubenode -run TestTwoRealNodes, as root,
// after `make k8s-tools k8s-node-tools images`).
//
// With PODROUTE_KUBENODE_E2E_FOCUS the test also runs upstream e2e specs
// from the control plane's namespace against the two nodes. Measured
// 2026-12-01 on 2 vCPUs: focus '\[sig-network\].*\[Conformance\]', serial:
// 47 of 47 passed in 7 min 15 s; focus '\[sig-network\]' with
// PODROUTE_KUBENODE_E2E_SKIP='\[Serial\]|\[Slow\]|\[Disruptive\]|\[Flaky\]|\[Feature:|Netpol|NetworkPolicy|LoadBalancer|SCTP|IPv6|DualStack'
// and PODROUTE_KUBENODE_E2E_PROCS=2: 113 of 113 passed in 20 min 14 s.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/ipam"
	"github.com/podroute/podroute/testbed/images"
	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/kubenode"
	"github.com/podroute/podroute/testbed/netns"
)

// The machine-wide settings a node must not change.
var machineSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/netfilter/nf_conntrack_max",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
}

func readSysctls() map[string]string {
	m := map[string]string{}
	for _, k := range machineSysctls {
		b, _ := os.ReadFile("/proc/sys/" + k)
		m[k] = strings.TrimSpace(string(b))
	}
	return m
}

type labNode struct {
	name, ip, netns  string
	dir              string
	confDir, ipamDir string
	podCIDR          netip.Prefix
	// node is set when this test process started the node; a node
	// started by a child process (crash) has only dir and timings.
	node     *kubenode.Node
	crash    func() // SIGKILLs the child that started the node
	timings  kubenode.Timings
	startErr error
}

// crashEnv carries a kubenode.Config (JSON) to TestHelperCrashingNode.
const crashEnv = "PODROUTE_KUBENODE_CRASH_CONFIG"

// TestHelperCrashingNode is not a test: TestTwoRealNodes runs the test
// binary again with crashEnv set, this function starts a node from that
// config, writes its timings next to the config's Dir and blocks until the
// parent kills the process with SIGKILL, leaving the node running without
// its owner, as a crash of `podroute-lab up` would. The parent then tears
// it down with kubenode.Cleanup from the state file alone.
func TestHelperCrashingNode(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("helper process for TestTwoRealNodes")
	}
	var cfg kubenode.Config
	if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Logf = t.Logf
	result := cfg.Dir + ".result"
	n, err := kubenode.Start(context.Background(), cfg)
	if err != nil {
		os.WriteFile(result, []byte(`{"error":`+strconv.Quote(err.Error())+`}`), 0o644)
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]any{"timings": n.Timings()})
	os.WriteFile(result, b, 0o644)
	select {} // until SIGKILL
}

// startCrashingNode starts cfg in a child process (TestHelperCrashingNode)
// and waits for its result.
func startCrashingNode(ctx context.Context, cfg kubenode.Config) (func(), kubenode.Timings, error) {
	var tm kubenode.Timings
	spec, err := json.Marshal(cfg)
	if err != nil {
		return nil, tm, err
	}
	log, err := os.Create(cfg.Dir + ".child.log")
	if err != nil {
		return nil, tm, err
	}
	defer log.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCrashingNode$", "-test.v", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, tm, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	kill := func() {
		cmd.Process.Kill() // our child, by its PID
		<-exited
	}
	result := cfg.Dir + ".result"
	for {
		if b, err := os.ReadFile(result); err == nil && len(b) > 0 {
			var r struct {
				Timings kubenode.Timings
				Error   string
			}
			if err := json.Unmarshal(b, &r); err != nil {
				return kill, tm, err
			}
			if r.Error != "" {
				return kill, tm, errors.New(r.Error)
			}
			return kill, r.Timings, nil
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(cfg.Dir + ".child.log")
			return nil, tm, fmt.Errorf("child exited (%v): %s", err, out)
		case <-ctx.Done():
			return kill, tm, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestTwoRealNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts a control plane and two real kubelet nodes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, cgroups, containerd)")
	}
	var missing []string
	if err := k8sharness.CheckBinaries("", "", true); err != nil {
		missing = append(missing, err.Error())
	}
	if err := kubenode.CheckBinaries(""); err != nil {
		missing = append(missing, err.Error())
	}
	if _, err := os.Stat(filepath.Join(images.DefaultBinDir(), "kube-scheduler")); err != nil {
		missing = append(missing, "kube-scheduler (make k8s-node-tools)")
	}
	archives, err := images.Paths("")
	if err != nil {
		missing = append(missing, err.Error())
	}
	for _, p := range []string{"loopback", "portmap", "bandwidth"} {
		if _, err := os.Stat("/usr/lib/cni/" + p); err != nil {
			missing = append(missing, "/usr/lib/cni/"+p+" (Debian containernetworking-plugins: make deps)")
		}
	}
	if len(missing) > 0 {
		t.Skipf("real-node test skipped; missing: %s. Run `make k8s-tools k8s-node-tools images` (about 15 min on 2 cores the first time, then cached).", strings.Join(missing, "; "))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	begin := time.Now()
	run := netns.NewRunID()
	base := t.TempDir()
	if d := os.Getenv("PODROUTE_KUBENODE_TEST_DIR"); d != "" {
		// Keep the logs (teardown leaves each logs/ directory) for a look.
		base = filepath.Join(d, run)
	}
	sysctlsBefore := readSysctls()
	hostnameBefore, _ := os.Hostname()
	varLibCNI := testutil.RecordExistence("/var/lib/cni")
	var cleanup netns.Cleanup
	nodes := []*labNode{
		{name: "n1", ip: "10.77.0.11", netns: run + "-n1"},
		{name: "n2", ip: "10.77.0.12", netns: run + "-n2"},
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range nodes {
				for _, c := range []string{"kubelet", "containerd", "kube-proxy"} {
					b, _ := os.ReadFile(filepath.Join(n.dir, "logs", c+".log"))
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					if len(lines) > 30 {
						lines = lines[len(lines)-30:]
					}
					t.Logf("%s %s log (tail):\n%s", n.name, c, strings.Join(lines, "\n"))
				}
			}
		}
		start := time.Now()
		if err := cleanup.Run(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		t.Logf("teardown took %v", time.Since(start).Round(time.Millisecond))
		checkNothingLeft(t, run, base, sysctlsBefore, varLibCNI)
		if h, _ := os.Hostname(); h != hostnameBefore {
			t.Errorf("the machine's hostname changed: %q -> %q", hostnameBefore, h)
		}
	})

	// Namespaces: the control plane's with a bridge, each node on a veth
	// into it; a node's default route goes to the control plane (Service
	// IPs need a route before kube-proxy's DNAT; nothing beyond it routes).
	cpNS, err := netns.Create(run + "-cp")
	if err != nil {
		t.Fatal(err)
	}
	cleanup.Add("netns "+cpNS.Name, cpNS.Delete)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("-n", cpNS.Name, "link", "add", "br0", "type", "bridge")
	ip("-n", cpNS.Name, "addr", "add", "10.77.0.1/24", "dev", "br0")
	ip("-n", cpNS.Name, "link", "set", "br0", "up")
	for _, n := range nodes {
		ns, err := netns.Create(n.netns)
		if err != nil {
			t.Fatal(err)
		}
		cleanup.Add("netns "+ns.Name, ns.Delete)
		ip("-n", cpNS.Name, "link", "add", n.name, "type", "veth", "peer", "name", "eth0", "netns", ns.Name)
		ip("-n", cpNS.Name, "link", "set", n.name, "master", "br0", "up")
		ip("-n", ns.Name, "addr", "add", n.ip+"/24", "dev", "eth0")
		ip("-n", ns.Name, "link", "set", "eth0", "up")
		ip("-n", ns.Name, "route", "add", "default", "via", "10.77.0.1")
		n.confDir = filepath.Join(base, "cni-"+n.name, "net.d")
		n.ipamDir = filepath.Join(base, "cni-"+n.name, "ipam")
	}

	// podroute-cni and the reference plugins the conflist chains.
	cniBin := filepath.Join(base, "cni-bin")
	if err := os.MkdirAll(cniBin, 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(cniBin, "podroute-cni"), "github.com/podroute/podroute/cmd/podroute-cni")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building podroute-cni: %v: %s", err, out)
	}
	for _, p := range []string{"loopback", "portmap", "bandwidth"} {
		if err := os.Symlink("/usr/lib/cni/"+p, filepath.Join(cniBin, p)); err != nil {
			t.Fatal(err)
		}
	}

	// The control plane, as the integrator must start it for real nodes.
	proxyToken := "kp-" + run + "-" + fmt.Sprint(time.Now().UnixNano())
	cpStart := time.Now()
	cp, err := k8sharness.Start(ctx, k8sharness.Options{
		Dir: filepath.Join(base, "cp"), Netns: cpNS, BindAddress: "10.77.0.1",
		NodeNames: []string{"n1", "n2"},
		Tokens:    []k8sharness.Token{{Token: proxyToken, User: "system:kube-proxy"}},
		ControllerManager: &k8sharness.ControllerManagerOptions{
			ClusterCIDRs: []string{kubenode.DefaultClusterCIDR}, Controllers: []string{"*"},
		},
		ExtraAPIServerArgs: []string{"--kubelet-preferred-address-types=InternalIP,Hostname"},
		Logf:               t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	cleanup.Add("control plane", cp.Stop)
	sched, err := kubenode.StartScheduler(ctx, kubenode.SchedulerConfig{
		Netns: cpNS.Name, Dir: filepath.Join(base, "scheduler"), Kubeconfig: cp.AdminKubeconfig, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	cleanup.Add("kube-scheduler", sched.Stop)
	cpTook := time.Since(cpStart)
	cs, err := cp.AdminClientset()
	if err != nil {
		t.Fatal(err)
	}

	// Both nodes at once: n1 in this process, torn down with Stop; n2 in
	// a child process that is killed at the end, as if `podroute-lab up`
	// crashed, and torn down with Cleanup from its state file.
	var wg sync.WaitGroup
	for i, n := range nodes {
		tok, _ := cp.NodeToken(n.name)
		n.dir = filepath.Join(base, n.name)
		cfg := kubenode.Config{
			Name: n.name, Netns: n.netns, Dir: n.dir, NodeIP: n.ip,
			APIServer: cp.URL, CACertPEM: cp.CACertPEM(), Token: tok, ProxyToken: proxyToken,
			CNIBinDir: cniBin, CNIConfDir: n.confDir, Images: archives, Logf: t.Logf,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				n.node, n.startErr = kubenode.Start(ctx, cfg)
				if n.node != nil {
					n.timings = n.node.Timings()
				}
				return
			}
			n.crash, n.timings, n.startErr = startCrashingNode(ctx, cfg)
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		switch {
		case n.node != nil:
			cleanup.Add("node "+n.name, n.node.Stop)
		case n.crash != nil:
			cleanup.Add("node "+n.name+" after its owner crashed", func() error {
				n.crash()
				if _, err := os.Stat(filepath.Join(n.dir, kubenode.StateFile)); err != nil {
					if n.startErr != nil {
						return nil // the child's Start cleaned up after itself
					}
					return fmt.Errorf("no state file to clean up from: %w", err)
				}
				return kubenode.Cleanup(n.dir)
			})
		}
	}
	for _, n := range nodes {
		if n.startErr != nil {
			t.Fatalf("node %s: %v", n.name, n.startErr)
		}
	}

	// Pod CIDRs from the controller manager; then what podrouted would do:
	// the conflist (cniVersion 1.0.0, which containerd 1.6 accepts) and
	// the routes to the other node's pods.
	for _, n := range nodes {
		err := poll(ctx, time.Minute, func() error {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if node.Spec.PodCIDR == "" {
				return errors.New("no podCIDR yet")
			}
			n.podCIDR, err = netip.ParsePrefix(node.Spec.PodCIDR)
			return err
		})
		if err != nil {
			t.Fatalf("node %s registered with a pod CIDR: %v", n.name, err)
		}
		if err := cni.WriteConfList(n.confDir, "", cni.ConfList{CNIVersion: "1.0.0", PodCIDRs: []string{n.podCIDR.String()}, DataDir: n.ipamDir}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		ip("-n", cpNS.Name, "route", "add", n.podCIDR.String(), "via", n.ip)
		for _, o := range nodes {
			if o != n {
				ip("-n", n.netns, "route", "add", o.podCIDR.String(), "via", o.ip)
			}
		}
	}
	for _, n := range nodes {
		if err := poll(ctx, 2*time.Minute, func() error { return kubenode.NodeReady(ctx, cs, n.name) }); err != nil {
			t.Fatalf("node %s Ready: %v", n.name, err)
		}
	}
	readyTook := time.Since(begin)
	t.Logf("control plane + scheduler up in %v; both nodes Ready %v after the test began", cpTook.Round(time.Millisecond), readyTook.Round(time.Millisecond))
	for _, n := range nodes {
		tm := n.timings
		t.Logf("node %s: kubenode.Start %v (holder %v, containerd %v, import of %d archives %v, kubelet %v, kube-proxy %v), pod CIDR %s",
			n.name, tm.Total.Round(time.Millisecond), tm.Holder.Round(time.Millisecond), tm.Containerd.Round(time.Millisecond),
			len(archives), tm.Import.Round(time.Millisecond), tm.Kubelet.Round(time.Millisecond), tm.Proxy.Round(time.Millisecond), n.podCIDR)
	}

	// One agnhost netexec pod per node, placed by kube-scheduler.
	const ns = "default"
	pods := map[string]*corev1.Pod{}
	for _, n := range nodes {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "echo-" + n.name, Labels: map[string]string{"app": "echo"}},
			Spec: corev1.PodSpec{
				NodeSelector:                  map[string]string{"kubernetes.io/hostname": n.name},
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{
					Name: "netexec", Image: images.AgnhostImage, ImagePullPolicy: corev1.PullIfNotPresent,
					Args:  []string{"netexec", "--http-port=8080", "--udp-port=-1"},
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}},
			},
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	podStart := time.Now()
	for _, n := range nodes {
		name := "echo-" + n.name
		err := poll(ctx, 2*time.Minute, func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				return fmt.Errorf("phase %s, IP %q, conditions %v", p.Status.Phase, p.Status.PodIP, p.Status.Conditions)
			}
			pods[n.name] = p
			return nil
		})
		if err != nil {
			t.Fatalf("pod %s Running: %v", name, err)
		}
		p := pods[n.name]
		addr := netip.MustParseAddr(p.Status.PodIP)
		if p.Spec.NodeName != n.name || !n.podCIDR.Contains(addr) {
			t.Fatalf("pod %s on %s with %s, want on %s inside %s", name, p.Spec.NodeName, addr, n.name, n.podCIDR)
		}
		if !allocated(t, n.ipamDir, addr) {
			t.Fatalf("pod %s's address %s is not in %s's IPAM store", name, addr, n.name)
		}
		t.Logf("pod %s on %s: %s from podroute-cni (pod CIDR %s)", name, n.name, addr, n.podCIDR)
	}
	t.Logf("both pods Running %v after creation", time.Since(podStart).Round(time.Millisecond))

	podExec := func(pod string, argv ...string) (string, error) {
		out, err := cp.Kubectl(ctx, append([]string{"exec", "-n", ns, pod, "--"}, argv...)...)
		return strings.TrimSpace(string(out)), err
	}
	// Pod to pod across the nodes, both ways (through kubectl exec: API
	// server -> kubelet -> containerd's streaming server).
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			url := fmt.Sprintf("http://%s:8080/hostname", pods[to.name].Status.PodIP)
			out, err := podExec("echo-"+from.name, "curl", "-sS", "--max-time", "5", url)
			if err != nil || out != "echo-"+to.name {
				t.Fatalf("pod on %s -> %s: %q, %v", from.name, url, out, err)
			}
		}
	}
	t.Logf("pod to pod across nodes: ok both ways")

	// A ClusterIP Service in front of both pods, through kube-proxy.
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err = poll(ctx, time.Minute, func() error {
		out, err := podExec("echo-n1", "curl", "-sS", "--max-time", "3", "http://"+svc.Spec.ClusterIP+"/hostname")
		if err == nil {
			seen[out] = true
		}
		if !seen["echo-n1"] || !seen["echo-n2"] {
			return fmt.Errorf("backends seen %v (last: %q, %v)", seen, out, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ClusterIP %s from a pod: %v", svc.Spec.ClusterIP, err)
	}
	out, err := exec2(ctx, "ip", "netns", "exec", nodes[1].netns, "curl", "-sS", "--max-time", "3", "http://"+svc.Spec.ClusterIP+"/hostname")
	if err != nil || !strings.HasPrefix(out, "echo-") {
		t.Fatalf("ClusterIP %s from node n2's namespace: %q, %v", svc.Spec.ClusterIP, out, err)
	}
	t.Logf("ClusterIP %s (kube-proxy %s mode) reaches both pods from a pod, and from a node", svc.Spec.ClusterIP, kubenode.DefaultProxyMode)

	// CoreDNS at the cluster DNS IP: the pod resolves the Service by name.
	if err := kubenode.ApplyCoreDNS(ctx, cs, kubenode.CoreDNSOptions{}); err != nil {
		t.Fatal(err)
	}
	dnsStart := time.Now()
	err = poll(ctx, 2*time.Minute, func() error {
		out, err := podExec("echo-n1", "dig", "+short", "+time=2", "+tries=1", "echo.default.svc.cluster.local")
		if err != nil || out != svc.Spec.ClusterIP {
			return fmt.Errorf("dig: %q, %v", out, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("CoreDNS: %v", err)
	}
	t.Logf("CoreDNS answers echo.default.svc.cluster.local = %s (%v after applying it)", svc.Spec.ClusterIP, time.Since(dnsStart).Round(time.Millisecond))

	// Every other image of the catalog runs and has what the specs use.
	imgStart := time.Now()
	smoke := []struct {
		name, image string
		args        []string
		hostNet     bool
	}{
		{"nginx", images.NginxImage, nil, false},
		{"busybox", images.BusyBoxImage, []string{"sleep", "600"}, false},
		{"glibc", images.GlibcDNSTestingImage, []string{"sleep", "600"}, false},
		{"iptables", images.DistrolessIptablesImage, []string{"sleep", "600"}, true},
		{"boom", images.RegressionIssue74839, nil, false},
	}
	for _, sm := range smoke {
		c := corev1.Container{Name: sm.name, Image: sm.image, ImagePullPolicy: corev1.PullIfNotPresent}
		if sm.args != nil {
			c.Command = sm.args
		}
		if sm.hostNet {
			c.SecurityContext = &corev1.SecurityContext{Privileged: new(bool)}
			*c.SecurityContext.Privileged = true
		}
		if sm.name == "boom" {
			c.Env = []corev1.EnvVar{{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}}}
			c.SecurityContext = &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}}
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sm.name}, Spec: corev1.PodSpec{
			NodeName: "n1", HostNetwork: sm.hostNet, TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{c}}}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	smokeIP := map[string]string{}
	for _, sm := range smoke {
		err := poll(ctx, time.Minute, func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, sm.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("phase %s: %v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			smokeIP[sm.name] = p.Status.PodIP
			return nil
		})
		if err != nil {
			t.Fatalf("pod %s (%s) Running: %v", sm.name, sm.image, err)
		}
	}
	checks := []struct {
		pod  string
		argv []string
		want string
	}{
		{"echo-n1", []string{"curl", "-sS", "--max-time", "5", "http://" + smokeIP["nginx"] + "/"}, "Welcome to nginx"},
		{"busybox", []string{"wget", "-q", "-O", "-", "http://" + pods["n2"].Status.PodIP + ":8080/hostname"}, "echo-n2"},
		{"glibc", []string{"sh", "-c", "getent hosts echo.default.svc.cluster.local; dig +short +time=2 +tries=1 echo.default.svc.cluster.local"}, svc.Spec.ClusterIP},
		{"iptables", []string{"sh", "-c", "which conntrack && conntrack -L >/dev/null 2>&1 && iptables -t nat -S >/dev/null && echo ok"}, "ok"},
		// A hostNetwork pod has its node's hostname.
		{"iptables", []string{"hostname"}, "n1"},
		{"echo-n1", []string{"sh", "-c", "nc -z -w 3 " + smokeIP["boom"] + " 9000 && echo ok"}, "ok"},
		{"echo-n1", []string{"sh", "-c", "nc -u -z -w 1 10.96.0.10 53 && ip -o addr show eth0 >/dev/null && ss -ltn >/dev/null && nslookup -timeout=2 echo.default.svc.cluster.local >/dev/null && wget -q -T 2 -O - http://127.0.0.1:8080/hostname"}, "echo-n1"},
	}
	for _, c := range checks {
		out, err := podExec(c.pod, c.argv...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("in pod %s: %s: %q, %v; want %q in the output", c.pod, strings.Join(c.argv, " "), out, err, c.want)
		}
	}
	t.Logf("images nginx, busybox, glibc-dns-testing, distroless-iptables, regression-issue-74839 run and answer (%v)", time.Since(imgStart).Round(time.Millisecond))

	// Nothing of the nodes (container rootfs, volume tmpfs, netns pins) in
	// the machine's mount table while they run.
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, base) || strings.Contains(line, "/run/netns/cni-") || strings.Contains(line, "/var/lib/cni") {
			t.Errorf("a node's mount is in the machine's mount table: %s", line)
		}
	}

	// Memory of each node with its pods.
	for _, n := range nodes {
		st, err := kubenode.ReadState(n.dir)
		if err != nil {
			t.Fatal(err)
		}
		u := kubenode.StateUsage(st)
		t.Logf("node %s RSS: %.0f MiB total = kubelet %.0f + containerd %.0f + kube-proxy %.0f + %d shims %.0f + %d container processes %.0f",
			n.name, mib(u.Total()), mib(u.Kubelet), mib(u.Containerd), mib(u.KubeProxy), u.ShimCount, mib(u.Shims), u.ContainerProcs, mib(u.Containers))
	}
	t.Logf("kube-scheduler RSS %.0f MiB", mib(sched.RSS()))

	// Optionally, upstream e2e specs against these two nodes (a first taste
	// of `make e2e`): PODROUTE_KUBENODE_E2E_FOCUS is a ginkgo focus regexp.
	if focus := os.Getenv("PODROUTE_KUBENODE_E2E_FOCUS"); focus != "" {
		e2eBin := filepath.Join(images.DefaultBinDir(), "e2e.test")
		report := filepath.Join(base, "e2e-report")
		os.MkdirAll(report, 0o755)
		e2eStart := time.Now()
		skip := os.Getenv("PODROUTE_KUBENODE_E2E_SKIP")
		suiteArgs := []string{"--kubeconfig=" + cp.AdminKubeconfig, "--provider=skeleton", "--report-dir=" + report}
		argv := append([]string{"ip", "netns", "exec", cpNS.Name, e2eBin}, suiteArgs...)
		argv = append(argv, "--ginkgo.focus="+focus, "--ginkgo.skip="+skip, "--ginkgo.no-color", "--ginkgo.timeout=60m")
		if procs := os.Getenv("PODROUTE_KUBENODE_E2E_PROCS"); procs != "" {
			// Through the ginkgo CLI, which runs the suite in parallel.
			argv = append([]string{"ip", "netns", "exec", cpNS.Name, filepath.Join(images.DefaultBinDir(), "ginkgo"),
				"--procs=" + procs, "--focus=" + focus, "--skip=" + skip, "--no-color", "--timeout=60m", e2eBin, "--"}, suiteArgs...)
		}
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "PATH="+images.DefaultBinDir()+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		os.WriteFile(filepath.Join(base, "e2e.log"), out, 0o644)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		t.Logf("e2e.test --ginkgo.focus=%q: %v in %v (full log %s):\n%s", focus, err, time.Since(e2eStart).Round(time.Second),
			filepath.Join(base, "e2e.log"), strings.Join(lines, "\n"))
		if err != nil {
			t.Errorf("e2e specs failed: %v", err)
		}
	}

	// A deleted pod's address goes back to podroute's IPAM.
	gone := netip.MustParseAddr(pods["n2"].Status.PodIP)
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "echo-n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	delStart := time.Now()
	err = poll(ctx, time.Minute, func() error {
		if _, err := cs.CoreV1().Pods(ns).Get(ctx, "echo-n2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("pod still there (%v)", err)
		}
		if allocated(t, nodes[1].ipamDir, gone) {
			return fmt.Errorf("%s still allocated", gone)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("deleting pod echo-n2: %v", err)
	}
	t.Logf("pod echo-n2 deleted; %s released in n2's IPAM store %v later", gone, time.Since(delStart).Round(time.Millisecond))

	if err := nodes[0].node.Running(); err != nil {
		t.Error(err)
	}
	if err := sched.Running(); err != nil {
		t.Error(err)
	}
	t.Logf("whole test before teardown: %v", time.Since(begin).Round(time.Millisecond))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func exec2(ctx context.Context, argv ...string) (string, error) {
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.WaitDelay = time.Second
	out, err := c.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func allocated(t *testing.T, dir string, a netip.Addr) bool {
	t.Helper()
	st, err := ipam.ReadState(dir)
	return err == nil && st.Holds(a)
}

func poll(ctx context.Context, d time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", d, last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// checkNothingLeft: no namespace, process, cgroup or mount of this run, the
// machine's sysctls as they were, /var/lib/cni as it was.
func checkNothingLeft(t *testing.T, run, base string, sysctlsBefore map[string]string, varLibCNI testutil.Existence) {
	t.Helper()
	if left, _ := netns.List(run); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(b) == 0 {
			continue
		}
		c := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(c, base) || strings.Contains(c, run) {
			t.Errorf("process left: pid %s: %s", e.Name(), c)
		}
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/podroute-" + run + "*")
	if len(cg) > 0 {
		t.Errorf("cgroups left: %v", cg)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		if strings.Contains(line, base) || strings.Contains(line, run) {
			t.Errorf("mount left in the machine's mount table: %s", line)
		}
	}
	for k, v := range readSysctls() {
		if sysctlsBefore[k] != v {
			t.Errorf("machine sysctl %s changed: %s -> %s", k, sysctlsBefore[k], v)
		}
	}
	varLibCNI.Check(t)
}
