package lab

// Real Kubernetes nodes (Kubernetes mode). Every lab node runs, in its own
// network namespace, containerd, kubelet and kube-proxy (testbed/kubenode)
// next to podrouted; kube-scheduler runs with the control plane; kubelet
// registers the Node itself (InternalIP = the node's fabric address, the
// rack label from --node-labels; the lab adds only the podroute.io/asn
// annotation), kube-controller-manager gives it its pod CIDR, podrouted
// writes the CNI conflist into the node's own CNI directory and carries the
// routes between nodes and racks over BGP, and kubelet's CNI calls reach
// podroute-cni through containerd. CoreDNS serves the cluster DNS. The
// lab's pods are real Pods (agnhost netexec), one per pod slot of the
// topology, placed on their node by kube-scheduler; the ping matrix runs in
// their network namespaces, entered from the machine.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/podroute/podroute/testbed/images"
	"github.com/podroute/podroute/testbed/kubenode"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// Kubernetes mode's cluster settings.
const (
	// KubeServiceCIDR is the Service range (kube-apiserver and
	// kube-controller-manager); it holds KubeClusterDNS.
	KubeServiceCIDR = "10.96.0.0/16"
	// KubeClusterDNS is the kube-dns Service's address (kubelet's
	// clusterDNS).
	KubeClusterDNS = kubenode.DefaultClusterDNS
	// KubePodNamespace holds the lab's own pods and their Service.
	KubePodNamespace = "podroute-lab"
	// KubePodService is the ClusterIP Service in front of the lab's pods
	// (port 80 to netexec's 8080).
	KubePodService = "echo"
	// kubePodApp labels the lab's pods.
	kubePodApp = "podroute-lab-echo"
	// kubeNodesRoot is where node directories go when the state directory
	// is on tmpfs (a node's containerd unpacks ~300 MB of images).
	kubeNodesRoot = "/var/lib/podroute-lab"
)

// kubeRealNodeControllers are kube-controller-manager's controllers for
// real kubelets: all of them ("*"; the harness's default three are not
// enough for pods), plus node-ipam-controller by name so that the harness
// waits for it (it waits only for names ending in -controller).
var kubeRealNodeControllers = []string{"*", "node-ipam-controller"}

// kubeCgroupRoot is kubelet's cgroupRoot on node (kubenode's default for
// the node's namespace, set explicitly so the lab can find pods by it).
func (l *Lab) kubeCgroupRoot(node string) string { return "/podroute-" + l.nsName(node) }

// kubeNodeBase picks where the nodes' directories go: under the state
// directory, unless that is on tmpfs (the default /run/podroute-lab on most
// machines), where containerd's image store would eat memory.
func (l *Lab) kubeNodeBase() string {
	var st unix.Statfs_t
	if err := unix.Statfs(l.opts.StateDir, &st); err == nil && st.Type == unix.TMPFS_MAGIC {
		return filepath.Join(kubeNodesRoot, l.RunID())
	}
	return filepath.Join(l.opts.StateDir, "kubenodes")
}

// checkKubeNodeInputs fails early, naming the make target, when something a
// real node needs is missing.
func (o *KubernetesOptions) checkNodeInputs() error {
	var errs []error
	if err := kubenode.CheckBinaries(o.NodeBinDir); err != nil {
		errs = append(errs, err)
	}
	bin := o.NodeBinDir
	if bin == "" {
		bin = images.DefaultBinDir()
	}
	if _, err := os.Stat(filepath.Join(bin, "kube-scheduler")); err != nil {
		errs = append(errs, fmt.Errorf("kube-scheduler missing in %s (make k8s-node-tools)", bin))
	}
	for _, p := range []string{"loopback", "portmap", "bandwidth"} {
		if _, err := os.Stat(filepath.Join(o.cniPluginDir(), p)); err != nil {
			errs = append(errs, fmt.Errorf("CNI plugin %s missing in %s (Debian containernetworking-plugins: make k8s-node-deps)", p, o.cniPluginDir()))
		}
	}
	if o.Images == nil {
		if _, err := images.Paths(""); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o *KubernetesOptions) cniPluginDir() string {
	if o.CNIPluginDir == "" {
		return "/usr/lib/cni"
	}
	return o.CNIPluginDir
}

// prepareCNIBin fills the nodes' CNI binary directory: podroute-cni from
// the lab's binaries, containerd's loopback and the chained portmap and
// bandwidth from the reference plugins.
func (l *Lab) prepareCNIBin(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	bin, err := filepath.Abs(l.opts.BinDir)
	if err != nil {
		return err
	}
	links := map[string]string{"podroute-cni": filepath.Join(bin, "podroute-cni")}
	for _, p := range []string{"loopback", "portmap", "bandwidth"} {
		links[p] = filepath.Join(l.kube.opts.cniPluginDir(), p)
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("CNI bin dir: %w", err)
		}
	}
	return nil
}

// nodeIPs is kubelet's --node-ip for np: its IPv4 address, then its IPv6
// one on a dual-stack node.
func nodeIPs(np *topology.NodePlan) string {
	var v4, v6 string
	for _, a := range np.Addresses() {
		switch {
		case a.Is4() && v4 == "":
			v4 = a.String()
		case a.Is6() && v6 == "":
			v6 = a.String()
		}
	}
	if v4 == "" {
		return v6
	}
	if v6 == "" {
		return v4
	}
	return v4 + "," + v6
}

// startRealNodes starts kube-scheduler and, on every node at once,
// containerd, kubelet and kube-proxy; each directory is recorded in the
// state before its component starts.
func (l *Lab) startRealNodes(ctx context.Context, cp KubeControlPlane, info KubeControlPlaneInfo, proxyToken string) error {
	o := l.kube.opts
	base := l.kubeState().NodeBase
	cniBin := filepath.Join(base, "cni-bin")
	if err := l.prepareCNIBin(cniBin); err != nil {
		return err
	}
	schedDir := filepath.Join(base, "kube-scheduler")
	if err := l.state.update(func(s *State) { s.Kubernetes.NodeDirs = append(s.Kubernetes.NodeDirs, schedDir) }); err != nil {
		return err
	}
	logf := func(format string, args ...any) { l.progress("  "+format, args...) }
	sched, err := kubenode.StartScheduler(ctx, kubenode.SchedulerConfig{
		Netns: l.nsName(KubeCPElement), Dir: schedDir, Kubeconfig: info.AdminKubeconfig, BinDir: o.NodeBinDir, Logf: logf,
	})
	if err != nil {
		return err
	}
	l.kube.sched = sched

	imgs := o.Images
	if imgs == nil {
		if imgs, err = images.Paths(""); err != nil {
			return err
		}
	}
	kp := l.kube.plan
	cfgs := make([]kubenode.Config, len(l.Plan.Nodes))
	for i, np := range l.Plan.Nodes {
		tok, ok := cp.NodeToken(np.Name)
		if !ok {
			return fmt.Errorf("the control plane has no kubelet token for node %s", np.Name)
		}
		labels := map[string]string{}
		if r := kp.Nodes[i].Labels[KubeRackLabel]; r != "" {
			// A rack is also the node's zone, for topology-aware routing
			// of Services (kubelet may set this well-known label itself).
			labels[KubeRackLabel] = r
			labels[corev1.LabelTopologyZone] = r
		}
		cfgs[i] = kubenode.Config{
			Name: np.Name, Netns: l.nsName(np.Name), Dir: filepath.Join(base, np.Name), NodeIP: nodeIPs(np), NodeLabels: labels,
			APIServer: info.URL, CACertPEM: cp.CACertPEM(), Token: tok, ProxyToken: proxyToken,
			BinDir: o.NodeBinDir, CNIBinDir: cniBin, CNIConfDir: l.cniDir(np.Name),
			ClusterCIDR: strings.Join(kp.ClusterCIDRs, ","), ClusterDNS: KubeClusterDNS, ProxyMode: o.ProxyMode,
			Images: imgs, CgroupRoot: l.kubeCgroupRoot(np.Name),
			HostPaths: []string{l.nodeDir(np.Name), l.ipamDir(np.Name)},
			Logf:      logf,
		}
	}
	if err := l.state.update(func(s *State) {
		for _, c := range cfgs {
			s.Kubernetes.NodeDirs = append(s.Kubernetes.NodeDirs, c.Dir)
		}
	}); err != nil {
		return err
	}
	l.progress("starting containerd, kubelet and kube-proxy (%s mode) on %d nodes, importing %d image archives into each",
		kubenode.DefaultProxyMode, len(cfgs), len(imgs))
	if o.ProxyMode != "" {
		l.progress("  kube-proxy mode %s", o.ProxyMode)
	}
	nodes := make([]*kubenode.Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = kubenode.Start(ctx, cfgs[i])
		}()
	}
	wg.Wait()
	l.kube.nodes = map[string]*kubenode.Node{}
	for i, n := range nodes {
		if n != nil {
			l.kube.nodes[cfgs[i].Name] = n
		}
	}
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("node %s: %w", cfgs[i].Name, err)
		}
	}
	return nil
}

// registerRealNodes waits, node by node, for kubelet's Node object, adds
// the annotations of the plan (a node's own AS) and waits for nodeipam's
// pod CIDRs, which replace the plan's.
func (l *Lab) registerRealNodes(ctx context.Context, cs kubernetes.Interface) (map[string][]string, error) {
	cidrs := map[string][]string{}
	for i, want := range l.kube.plan.Nodes {
		np := l.Node(want.Name)
		var node *corev1.Node
		err := poll(ctx, 2*time.Minute, 200*time.Millisecond, func() error {
			var err error
			node, err = cs.CoreV1().Nodes().Get(ctx, want.Name, metav1.GetOptions{})
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("node %s: kubelet did not register the Node: %w (kubelet log: %s)", want.Name, err,
				filepath.Join(l.kubeState().NodeBase, want.Name, "logs", "kubelet.log"))
		}
		if len(want.Annotations) > 0 {
			patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": want.Annotations}})
			if _, err := cs.CoreV1().Nodes().Patch(ctx, want.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				return nil, fmt.Errorf("annotating Node %s: %w", want.Name, err)
			}
		}
		err = poll(ctx, time.Minute, 100*time.Millisecond, func() error {
			var err error
			if node, err = cs.CoreV1().Nodes().Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
				return err
			}
			if len(node.Spec.PodCIDRs) == 0 {
				return errors.New("no spec.podCIDRs yet")
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("Node %s got no spec.podCIDRs from kube-controller-manager's nodeipam: %w", want.Name, err)
		}
		if err := setPodCIDRs(np, node.Spec.PodCIDRs); err != nil {
			return nil, err
		}
		cidrs[np.Name] = node.Spec.PodCIDRs
		var ips []string
		for _, a := range node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				ips = append(ips, a.Address)
			}
		}
		l.progress("  Node %s registered by kubelet: InternalIP %s, labels %s=%s, pod CIDRs %s (from nodeipam)%s", np.Name,
			strings.Join(ips, ","), KubeRackLabel, node.Labels[KubeRackLabel], strings.Join(node.Spec.PodCIDRs, ","), annotationNote(l.kube.plan.Nodes[i]))
	}
	return cidrs, nil
}

func annotationNote(n corev1.Node) string {
	if len(n.Annotations) == 0 {
		return ""
	}
	var kv []string
	for k, v := range n.Annotations {
		kv = append(kv, k+"="+v)
	}
	return ", annotated " + strings.Join(kv, ",")
}

// startKubePods waits for every Node to be Ready (podrouted's conflist is
// in place), applies CoreDNS, creates the lab's pods and their Service, and
// waits until the pods run with their addresses and CoreDNS is available.
func (l *Lab) startKubePods(ctx context.Context) error {
	cs := l.kube.cs
	begin := time.Now()
	err := poll(ctx, 3*time.Minute, 500*time.Millisecond, func() error {
		var notReady []string
		for _, n := range l.Plan.Nodes {
			if err := kubenode.NodeReady(ctx, cs, n.Name); err != nil {
				notReady = append(notReady, n.Name+": "+err.Error())
			}
		}
		if len(notReady) > 0 {
			return errors.New(strings.Join(notReady, "; "))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("Nodes not Ready: %w", err)
	}
	l.progress("every Node is Ready (%.1fs)", time.Since(begin).Seconds())
	l.phase("Nodes Ready")

	if err := kubenode.ApplyCoreDNS(ctx, cs, kubenode.CoreDNSOptions{ClusterDNS: KubeClusterDNS}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: KubePodNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	pods := l.Pods()
	l.progress("creating %d pods (agnhost netexec) through the API: kube-scheduler places them, kubelet and containerd call podroute-cni", len(pods))
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods(KubePodNamespace).Create(ctx, labPod(p), metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating pod %s: %w", p.Name, err)
		}
	}
	if _, err := cs.CoreV1().Services(KubePodNamespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: KubePodService},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": kubePodApp},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Service %s: %w", KubePodService, err)
	}
	begin = time.Now()
	addrs := map[string][]string{}
	err = poll(ctx, 3*time.Minute, 300*time.Millisecond, func() error {
		list, err := cs.CoreV1().Pods(KubePodNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + kubePodApp})
		if err != nil {
			return err
		}
		var pending []string
		for _, p := range list.Items {
			if p.Status.Phase != corev1.PodRunning || len(p.Status.PodIPs) == 0 {
				pending = append(pending, fmt.Sprintf("%s %s", p.Name, podWhy(&p)))
				continue
			}
			var ips []string
			for _, ip := range p.Status.PodIPs {
				ips = append(ips, ip.IP)
			}
			addrs[p.Name] = ips
		}
		if len(pending) > 0 || len(list.Items) < len(pods) {
			return fmt.Errorf("pods not running: %s", strings.Join(pending, "; "))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range l.Plan.Nodes {
		for j := range n.PodPlans {
			pp := &n.PodPlans[j]
			pp.Addrs = nil
			for _, a := range addrs[pp.Name] {
				if ip, err := netip.ParseAddr(a); err == nil {
					pp.Addrs = append(pp.Addrs, ip)
				}
			}
		}
	}
	if err := l.state.update(func(s *State) { s.PodAddrs = addrs }); err != nil {
		return err
	}
	l.progress("  %d pods Running with addresses from podroute-cni (%.1fs)", len(addrs), time.Since(begin).Seconds())

	err = poll(ctx, 3*time.Minute, 500*time.Millisecond, func() error {
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.AvailableReplicas < 1 {
			return fmt.Errorf("coredns: %d of %d replicas available", d.Status.AvailableReplicas, d.Status.Replicas)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("CoreDNS: %w", err)
	}
	l.progress("  CoreDNS available at %s", KubeClusterDNS)
	l.phase("CoreDNS and pods")
	return nil
}

// labPod is the Pod for pod slot p: agnhost netexec on its node.
func labPod(p topology.PodPlan) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Labels: map[string]string{"app": kubePodApp}},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": p.Node},
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name: "netexec", Image: images.AgnhostImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Args:  []string{"netexec", "--http-port=8080", "--udp-port=8081"},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "udp", ContainerPort: 8081, Protocol: corev1.ProtocolUDP}},
			}},
		},
	}
}

// podWhy says in a few words why a pod is not running.
func podWhy(p *corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			return fmt.Sprintf("(%s: %s)", w.Reason, w.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return fmt.Sprintf("(%s: %s)", c.Reason, c.Message)
		}
	}
	return "(" + string(p.Status.Phase) + ")"
}

// poll calls f until it returns nil, ctx ends or d passes.
func poll(ctx context.Context, d, every time.Duration, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("after %v: %w", d, err)
		case <-time.After(every):
		}
	}
}

// podNetns maps the lab's pods to the paths of their network namespaces
// (/proc/PID/ns/net of a process of the pod, found through kubelet's
// cgroups): in Kubernetes mode a pod's namespace is pinned by containerd
// inside the node's private mount namespace, not under /run/netns.
func (l *Lab) podNetns(ctx context.Context) (map[string]string, error) {
	out, err := l.Kubectl(ctx, "get", "pods", "-n", KubePodNamespace, "-l", "app="+kubePodApp, "-o", "json")
	if err != nil {
		return nil, err
	}
	var list corev1.PodList
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("kubectl get pods: %w", err)
	}
	paths := map[string]string{}
	var errs []error
	for _, p := range list.Items {
		pid, err := kubenode.PodPID(l.kubeCgroupRoot(p.Spec.NodeName), string(p.UID))
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", p.Name, err))
			continue
		}
		paths[p.Name] = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	return paths, errors.Join(errs...)
}

// podRunner returns a function that runs a command in a lab pod's network
// namespace and returns its combined output.
func (l *Lab) podRunner(ctx context.Context) func(ctx context.Context, pod string, argv ...string) ([]byte, error) {
	if !l.Kubernetes() {
		return func(ctx context.Context, pod string, argv ...string) ([]byte, error) {
			return l.ns[pod].Exec(ctx, argv...)
		}
	}
	paths, err := l.podNetns(ctx)
	return func(ctx context.Context, pod string, argv ...string) ([]byte, error) {
		p, ok := paths[pod]
		if !ok {
			return nil, fmt.Errorf("pod %s: no network namespace found (%v)", pod, err)
		}
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + p, "--"}, argv...)...)
		cmd.WaitDelay = time.Second
		out, err := cmd.CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("pod %s: %s: %w: %s", pod, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
		return out, nil
	}
}

// Command returns a command that runs argv inside a router, switch, node
// or pod of the lab (a Kubernetes-mode pod is entered through its
// process's network namespace).
func (l *Lab) Command(ctx context.Context, name string, argv ...string) (*exec.Cmd, error) {
	if l.Kubernetes() && l.isPod(name) {
		paths, err := l.podNetns(ctx)
		p, ok := paths[name]
		if !ok {
			return nil, fmt.Errorf("pod %s: no network namespace found (%v)", name, err)
		}
		return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + p, "--"}, argv...)...), nil
	}
	ns := l.NS(name)
	if ns == nil {
		return nil, fmt.Errorf("no router, node or pod named %q; have %v", name, l.Names())
	}
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name}, argv...)...), nil
}

func (l *Lab) isPod(name string) bool {
	for _, p := range l.Pods() {
		if p.Name == name {
			return true
		}
	}
	return false
}

// KubeNode returns the running real node name as this Lab value started it
// (nil for a lab from Attach).
func (l *Lab) KubeNode(name string) *kubenode.Node {
	if l.kube == nil {
		return nil
	}
	return l.kube.nodes[name]
}

// KubeNodeDir is node's kubenode directory (logs/ holds containerd's,
// kubelet's and kube-proxy's logs).
func (l *Lab) KubeNodeDir(node string) string {
	if k := l.kubeState(); k != nil && k.NodeBase != "" {
		return filepath.Join(k.NodeBase, node)
	}
	return ""
}

// cleanupRealNodes tears down the nodes and kube-scheduler recorded in st
// (also after a crash of the process that started them), then their base
// directory when it is outside the state directory.
func cleanupRealNodes(dir string, k *KubeState) error {
	var errs []error
	for i := len(k.NodeDirs) - 1; i >= 0; i-- {
		if err := kubenode.Cleanup(k.NodeDirs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if b := k.NodeBase; b != "" && !strings.HasPrefix(b, filepath.Clean(dir)+"/") &&
		strings.HasPrefix(b, kubeNodesRoot+"/") && strings.HasPrefix(filepath.Base(b), netns.RunIDPrefix) {
		if err := os.RemoveAll(b); err != nil {
			return err
		}
		os.Remove(kubeNodesRoot) // only if empty
	}
	return nil
}
