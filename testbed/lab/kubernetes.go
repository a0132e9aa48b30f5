package lab

// Kubernetes mode of the lab (`podroute-lab up --kubernetes`): the same
// fabric, run as a real cluster. A control-plane namespace ("cp") hangs off
// the first LAN, like a server in rack 1, and runs etcd, kube-apiserver,
// kube-controller-manager (its nodeipam controller hands out the pod CIDRs)
// and kube-scheduler. The lab applies podroute's namespace, CRDs and RBAC
// from manifests/, describes the fabric with a BGPConfiguration and one
// BGPPeer per ToR and family, and runs a real node in each node namespace
// (containerd, kubelet, kube-proxy: realnodes.go) that registers its Node
// itself, with podrouted beside it under its ServiceAccount's token. The
// nodes reach the API server over the routed underlay: their default route
// points at their ToR, and the ToRs advertise their LANs.
//
// This package cannot import the control-plane harness (testbed/k8s
// imports testbed/lab), so the caller passes a function that starts it
// (KubernetesOptions.Start); cmd/podroute-lab and the tests wrap
// k8sharness.Start in a few lines.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/testbed/kubenode"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// Names and numbers of the lab's Kubernetes mode.
const (
	// KubeCPElement is the control plane's element (namespace RUNID-cp).
	KubeCPElement = "cp"
	// KubeClientElement is the outside client's (namespace RUNID-client),
	// behind a spine.
	KubeClientElement = "client"
	// KubeNamespace and KubeServiceAccount are podrouted's, from
	// manifests/00-namespace.yaml and 02-rbac.yaml.
	KubeNamespace      = "podroute-system"
	KubeServiceAccount = "podrouted"
	// KubeRackLabel carries a node's LAN; each ToR's BGPPeer selects its
	// rack's nodes by it.
	KubeRackLabel = "topology.podroute.io/rack"
	// KubeAPIServerPort is the API server's port on the control-plane
	// address (its own namespace: always free).
	KubeAPIServerPort = 6443
	// kubeCPHost is the control plane's host number on the first LAN.
	kubeCPHost = 100
	// kubeTokenTTL is how long podrouted's ServiceAccount token lasts (it
	// is not refreshed: after that podrouted keeps routing with what it
	// knows but sees no more changes).
	kubeTokenTTL = 7 * 24 * time.Hour
)

// KubernetesOptions turn on Kubernetes mode (Options.Kubernetes).
type KubernetesOptions struct {
	// Start starts the control plane as spec says and returns once
	// etcd, kube-apiserver and kube-controller-manager are healthy.
	Start KubeStartFunc
	// ManifestsDir holds podroute's manifests; the lab applies
	// 00-namespace.yaml, 01-crds.yaml and 02-rbac.yaml from it.
	ManifestsDir string

	// NodeBinDir holds kubelet, kube-proxy and kube-scheduler (`make
	// k8s-node-tools`); "" means images.DefaultBinDir().
	NodeBinDir string
	// CNIPluginDir holds the reference CNI plugins the nodes use: loopback
	// (containerd sets up lo with it) and the portmap and bandwidth that
	// podrouted's conflist chains; "" means /usr/lib/cni (Debian's
	// containernetworking-plugins).
	CNIPluginDir string
	// Images are the archives imported into each node's containerd; nil
	// means every archive of images.Catalog (`make images`).
	Images []string
	// ProxyMode is kube-proxy's mode; "" means kubenode.DefaultProxyMode.
	ProxyMode string
}

// KubeStartFunc starts a control plane (k8sharness.Start, adapted).
type KubeStartFunc func(ctx context.Context, spec KubeControlPlaneSpec) (KubeControlPlane, error)

// KubeControlPlaneSpec is what the lab asks of the control plane.
type KubeControlPlaneSpec struct {
	Dir         string           // empty or missing; the control plane's state
	Netns       *netns.Namespace // where every component runs
	BindAddress string           // the API server's address, reachable over the fabric
	Port        int
	// ClusterCIDRs are the pod pools nodeipam carves node CIDRs from, with
	// the per-node prefix lengths.
	ClusterCIDRs                               []string
	NodeCIDRMaskSizeIPv4, NodeCIDRMaskSizeIPv6 int
	ServiceClusterIPRanges                     []string

	// What real kubelets need (testbed/kubenode's doc lists why).
	// NodeNames get a static system:node:NAME token each; ProxyToken
	// authenticates as user system:kube-proxy; Controllers are
	// kube-controller-manager's --controllers; ExtraAPIServerArgs go to
	// kube-apiserver.
	NodeNames          []string
	ProxyToken         string
	Controllers        []string
	ExtraAPIServerArgs []string

	Logf func(format string, args ...any)
}

// KubeControlPlane is a running control plane. *k8sharness.ControlPlane
// has every method but LabInfo.
type KubeControlPlane interface {
	// AdminRESTConfig reaches the API server from the caller's namespace.
	AdminRESTConfig() *rest.Config
	// ServiceAccountToken asks the TokenRequest API for a token.
	ServiceAccountToken(ctx context.Context, namespace, name string, ttl time.Duration) (string, error)
	// Kubeconfig writes a kubeconfig for token, for use inside the lab,
	// and returns its path.
	Kubeconfig(name, token string) (string, error)
	// NodeToken is node's static kubelet token (spec.NodeNames).
	NodeToken(node string) (string, bool)
	// CACertPEM is the CA that signed the API server's certificate.
	CACertPEM() []byte
	Stop() error
	LabInfo() KubeControlPlaneInfo
}

// KubeControlPlaneInfo is what the lab records of a control plane.
type KubeControlPlaneInfo struct {
	URL             string
	AdminKubeconfig string
	Kubectl         string // the kubectl binary
	LogDir          string
	// Processes are the running components: the lab keeps them in its
	// state so that `podroute-lab down` stops them.
	Processes []ProcessState
}

// KubeState is the Kubernetes part of State.
type KubeState struct {
	Namespace string `json:"namespace"` // the control plane's network namespace
	// ClientNamespace is the outside client's, "" when the topology has
	// no spine to put it behind; ClientAddress its IPv4 address.
	ClientNamespace string `json:"clientNamespace,omitempty"`
	ClientAddress   string `json:"clientAddress,omitempty"`
	ClientRouter    string `json:"clientRouter,omitempty"` // the spine it is behind
	Dir             string `json:"dir"`
	APIServer       string `json:"apiServer,omitempty"`
	AdminKubeconfig string `json:"adminKubeconfig,omitempty"`
	NodeKubeconfig  string `json:"nodeKubeconfig,omitempty"` // podrouted's ServiceAccount token
	Kubectl         string `json:"kubectl,omitempty"`
	LogDir          string `json:"logDir,omitempty"`
	// NodeBase holds the real nodes' directories (under the state
	// directory, or under /var/lib/podroute-lab/RUNID when that is on
	// tmpfs); NodeDirs are kubenode state directories (kube-scheduler's and
	// each node's), recorded before each starts, for kubenode.Cleanup.
	NodeBase string   `json:"nodeBase,omitempty"`
	NodeDirs []string `json:"nodeDirs,omitempty"`
}

// kubeLab is the running Kubernetes part of a lab brought up here.
type kubeLab struct {
	opts  KubernetesOptions
	plan  *KubePlan
	cp    KubeControlPlane
	cs    kubernetes.Interface
	sched *kubenode.Scheduler
	nodes map[string]*kubenode.Node
}

func (l *Lab) kubeState() *KubeState { return l.state.st.Kubernetes }

// Kubernetes reports whether the lab runs in Kubernetes mode.
func (l *Lab) Kubernetes() bool { return l.kubeState() != nil }

func (l *Lab) kubeDir() string { return filepath.Join(l.opts.StateDir, "k8s") }

// buildKubeNetwork creates the control plane's namespace and plugs it into
// the first LAN; called after the fabric is wired.
func (l *Lab) buildKubeNetwork() error {
	cp := l.kube.plan.ControlPlane
	if err := l.state.update(func(s *State) {
		s.Kubernetes = &KubeState{Namespace: l.nsName(KubeCPElement), Dir: l.kubeDir(), NodeBase: l.kubeNodeBase()}
	}); err != nil {
		return err
	}
	if _, err := l.createNS(KubeCPElement); err != nil {
		return err
	}
	if err := netns.Veth(l.ns[cp.BridgeIn], cp.Port, l.ns[KubeCPElement], cp.Iface.Name, 1500); err != nil {
		return fmt.Errorf("control plane link: %w", err)
	}
	if err := l.ns[cp.BridgeIn].Attach(cp.Port, cp.Bridge); err != nil {
		return err
	}
	if err := l.addAddrs(KubeCPElement, []topology.Iface{cp.Iface}); err != nil {
		return err
	}
	if err := l.addDefaultRoutes(KubeCPElement, cp.Gateways); err != nil {
		return err
	}
	return l.buildKubeClient()
}

// buildKubeClient links the outside client to its spine, before FRR
// starts: the spine originates the client's network towards the racks.
func (l *Lab) buildKubeClient() error {
	c := l.kube.plan.Client
	if c == nil {
		return nil
	}
	if err := l.state.update(func(s *State) {
		s.Kubernetes.ClientNamespace = l.nsName(KubeClientElement)
		s.Kubernetes.ClientAddress = c.Iface.Addrs[0].Addr().String()
		s.Kubernetes.ClientRouter = c.Router
	}); err != nil {
		return err
	}
	if _, err := l.createNS(KubeClientElement); err != nil {
		return err
	}
	if err := netns.Veth(l.ns[c.Router], c.RouterIface.Name, l.ns[KubeClientElement], c.Iface.Name, 1500); err != nil {
		return fmt.Errorf("outside client link: %w", err)
	}
	if err := l.addAddrs(c.Router, []topology.Iface{c.RouterIface}); err != nil {
		return err
	}
	if err := l.addAddrs(KubeClientElement, []topology.Iface{c.Iface}); err != nil {
		return err
	}
	for _, r := range l.Plan.Routers {
		if r.Name == c.Router {
			r.Spec.Networks = append(r.Spec.Networks, c.Networks...)
		}
	}
	return l.addDefaultRoutes(KubeClientElement, c.Gateways)
}

// startKubernetes starts the control plane and describes the lab to it
// (manifests, BGPConfiguration, BGPPeers), starts kube-scheduler and the
// real nodes, waits for kubelet's Node objects and nodeipam's pod CIDRs
// (which replace the plan's) and writes podrouted's kubeconfig.
func (l *Lab) startKubernetes(ctx context.Context) error {
	kp := l.kube.plan
	var names []string
	for _, n := range kp.Nodes {
		names = append(names, n.Name)
	}
	proxyToken := "kube-proxy-" + l.RunID() + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	l.progress("starting the Kubernetes control plane in %s at %s (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)", l.nsName(KubeCPElement), kp.ControlPlane.Address)
	cp, err := l.kube.opts.Start(ctx, KubeControlPlaneSpec{
		Dir: l.kubeDir(), Netns: l.ns[KubeCPElement], BindAddress: kp.ControlPlane.Address.String(), Port: KubeAPIServerPort,
		ClusterCIDRs: kp.ClusterCIDRs, NodeCIDRMaskSizeIPv4: kp.NodeMask4, NodeCIDRMaskSizeIPv6: kp.NodeMask6,
		ServiceClusterIPRanges: kp.ServiceCIDRs,
		NodeNames:              names, ProxyToken: proxyToken, Controllers: kubeRealNodeControllers,
		// exec, logs and port-forward reach kubelet at the node's fabric
		// address rather than resolving its name.
		ExtraAPIServerArgs: []string{"--kubelet-preferred-address-types=InternalIP,Hostname"},
		Logf:               func(format string, args ...any) { l.progress("  "+format, args...) },
	})
	if err != nil {
		return fmt.Errorf("kubernetes control plane: %w", err)
	}
	info := cp.LabInfo()
	if err := l.state.update(func(s *State) {
		s.Processes = append(s.Processes, info.Processes...)
		k := s.Kubernetes
		k.APIServer, k.AdminKubeconfig, k.Kubectl, k.LogDir = info.URL, info.AdminKubeconfig, info.Kubectl, info.LogDir
	}); err != nil {
		return errors.Join(err, cp.Stop())
	}
	l.kube.cp = cp

	dir := l.kube.opts.ManifestsDir
	var files []string
	for _, f := range []string{"00-namespace.yaml", "01-crds.yaml", "02-rbac.yaml"} {
		files = append(files, "-f", filepath.Join(dir, f))
	}
	if out, err := l.Kubectl(ctx, append([]string{"apply"}, files...)...); err != nil {
		return fmt.Errorf("applying podroute's manifests from %s: %w", dir, err)
	} else {
		l.progress("  %s", strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "\n  "))
	}
	if _, err := l.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s",
		"crd/bgppeers."+cluster.Group, "crd/bgpconfigurations."+cluster.Group); err != nil {
		return err
	}

	rc := cp.AdminRESTConfig()
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	l.kube.cs = cs
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return err
	}
	if err := createCustom(ctx, dyn.Resource(cluster.BGPConfigurationResource), kp.Configuration); err != nil {
		return err
	}
	for _, p := range kp.Peers {
		if err := createCustom(ctx, dyn.Resource(cluster.BGPPeerResource), p); err != nil {
			return err
		}
	}
	l.progress("  BGPConfiguration %s (AS %d, node-to-node mesh %v, pod pools %v), %d BGPPeers", kp.Configuration.Name,
		kp.ClusterASN, *kp.Configuration.Spec.NodeToNodeMesh, kp.ClusterCIDRs, len(kp.Peers))
	l.phase("control plane")

	if err := l.startRealNodes(ctx, cp, info, proxyToken); err != nil {
		return err
	}
	cidrs, err := l.registerRealNodes(ctx, cs)
	if err != nil {
		return err
	}
	if err := l.state.update(func(s *State) { s.PodCIDRs = cidrs }); err != nil {
		return err
	}

	token, err := cp.ServiceAccountToken(ctx, KubeNamespace, KubeServiceAccount, kubeTokenTTL)
	if err != nil {
		return err
	}
	kc, err := cp.Kubeconfig(KubeServiceAccount, token)
	if err != nil {
		return err
	}
	if err := l.state.update(func(s *State) { s.Kubernetes.NodeKubeconfig = kc }); err != nil {
		return err
	}
	l.phase("real nodes")
	return nil
}

// createCustom creates a podroute custom resource from its typed form.
func createCustom(ctx context.Context, ri dynamic.NamespaceableResourceInterface, obj any) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(data); err != nil {
		return err
	}
	if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// setPodCIDRs puts the CIDRs Kubernetes gave node np into its plan, with
// the pod addresses planned from them (CNI has the last word).
func setPodCIDRs(np *topology.NodePlan, cidrs []string) error {
	np.PodCIDRs = nil
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("node %s: pod CIDR %q: %w", np.Name, c, err)
		}
		np.PodCIDRs = append(np.PodCIDRs, p)
	}
	np.Config.PodCIDRs = cidrs
	for j := range np.PodPlans {
		np.PodPlans[j].Addrs = nil
		for _, c := range np.PodCIDRs {
			np.PodPlans[j].Addrs = append(np.PodPlans[j].Addrs, topology.HostAddr(c, 10+j))
		}
	}
	return nil
}

// kubeLocalConfig is podrouted's file in Kubernetes mode: only the local
// options (as manifests/03-config.yaml's ConfigMap); identity, pod CIDRs,
// pools and peers come from the API server.
func kubeLocalConfig(np *topology.NodePlan, c *config.Config) ([]byte, error) {
	port := int32(179)
	gr := true
	c.ListenPort = &port
	c.RouteProtocol = topology.RouteProtocol
	c.GoBGPAPI = "127.0.0.1:50051"
	c.LogLevel = "info"
	c.GracefulRestart.Enabled = &gr
	c.GracefulRestart.RestartTime.Duration = 60 * time.Second
	c.GracefulRestart.StaleRouteTimeout.Duration = 60 * time.Second
	data, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	// Leave out what Kubernetes fills in, so the file says only what it sets.
	var m map[string]any
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	for k, v := range m {
		if v == nil || v == "" || v == float64(0) {
			delete(m, k)
		}
	}
	head := fmt.Sprintf("# podrouted on %s in Kubernetes mode: local options only; the node's\n# identity, pod CIDRs, pools and peers come from the API server.\n", np.Name)
	out, err := yaml.Marshal(m)
	return append([]byte(head), out...), err
}

// daemonArgs are podrouted's arguments on node.
func (l *Lab) daemonArgs(node, cfgPath string) []string {
	args := []string{"--config", cfgPath}
	if k := l.kubeState(); k != nil {
		args = append(args, "--kubernetes", "--kubeconfig", k.NodeKubeconfig, "--node-name", node, "--namespace", KubeNamespace)
	}
	return args
}

// Kubectl runs kubectl as the admin inside the control plane's namespace
// and returns its output.
func (l *Lab) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	k := l.kubeState()
	if k == nil || k.Kubectl == "" {
		return nil, errors.New("the lab does not run in Kubernetes mode")
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	argv := append([]string{"netns", "exec", k.Namespace, k.Kubectl, "--kubeconfig=" + k.AdminKubeconfig,
		// Not ~/.kube/cache: nothing of the lab outside its state dir.
		"--cache-dir=" + l.kubectlCacheDir()}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (l *Lab) kubectlCacheDir() string { return filepath.Join(l.opts.StateDir, "kubectl-cache") }

// NodeNetworkConditions returns each Node's NetworkUnavailable condition
// (podrouted sets it to False, reason PodrouteIsUp, once its routes and
// sessions are up).
func (l *Lab) NodeNetworkConditions(ctx context.Context) (map[string]corev1.NodeCondition, error) {
	nodes, err := l.KubeNodes(ctx)
	if err != nil {
		return nil, err
	}
	conds := map[string]corev1.NodeCondition{}
	for _, n := range nodes {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable {
				conds[n.Name] = c
			}
		}
	}
	return conds, nil
}

// waitNetworkAvailable waits until every node's NetworkUnavailable is
// False with reason PodrouteIsUp.
func (l *Lab) waitNetworkAvailable(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conds, err := l.NodeNetworkConditions(ctx)
		var pending []string
		for _, n := range l.Plan.Nodes {
			if c := conds[n.Name]; c.Status != corev1.ConditionFalse || c.Reason != "PodrouteIsUp" {
				pending = append(pending, fmt.Sprintf("%s (%s %s)", n.Name, c.Status, c.Reason))
			}
		}
		if err == nil && len(pending) == 0 {
			l.progress("every Node has NetworkUnavailable=False (PodrouteIsUp)")
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("Nodes not marked network-available by podrouted within %v: %v %v", timeout, pending, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// PrintKubernetes writes the control plane's address, the Nodes as the
// API server has them and the BGPPeers.
func (l *Lab) PrintKubernetes(ctx context.Context, w io.Writer) {
	k := l.kubeState()
	if k == nil {
		return
	}
	fmt.Fprintf(w, "API server %s (namespace %s; admin kubeconfig %s)\n", k.APIServer, k.Namespace, k.AdminKubeconfig)
	if k.ClientNamespace != "" {
		fmt.Fprintf(w, "outside client %s (namespace %s, behind %s): LoadBalancer pool %s, external IPs %s\n",
			k.ClientAddress, k.ClientNamespace, k.ClientRouter, KubeLoadBalancerPool, KubeExternalIPRange)
	}
	out, err := l.Kubectl(ctx, "get", "nodes", "-o",
		`custom-columns=NODE:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,INTERNAL-IP:.status.addresses[?(@.type=="InternalIP")].address,`+
			`POD-CIDRS:.spec.podCIDRs,RACK:.metadata.labels.topology\.podroute\.io/rack,AS:.metadata.annotations.podroute\.io/asn,`+
			`NETWORK-UNAVAILABLE:.status.conditions[?(@.type=="NetworkUnavailable")].status,REASON:.status.conditions[?(@.type=="NetworkUnavailable")].reason,`+
			`KUBELET:.status.nodeInfo.kubeletVersion,RUNTIME:.status.nodeInfo.containerRuntimeVersion`)
	if err != nil {
		fmt.Fprintf(w, "nodes: %v\n", err)
		return
	}
	w.Write(out)
	if out, err := l.Kubectl(ctx, "get", "bgpconfigurations,bgppeers"); err == nil {
		fmt.Fprintf(w, "%s", out)
	}
	if out, err := l.Kubectl(ctx, "get", "pods,services", "-n", KubePodNamespace, "-o", "wide"); err == nil {
		fmt.Fprintf(w, "%s", out)
	}
}

// stopStrays stops what still runs inside the control plane's namespace
// with the control plane's directory on its command line: components that
// a crash of `podroute-lab up` left behind before it could record their
// PIDs. Only processes in that namespace, which this lab created, are
// considered; each is pinned by a pidfd before it is signalled.
func stopStrays(nsName, marker string) error {
	var nsStat syscall.Stat_t
	if err := syscall.Stat(filepath.Join(netns.RunDir, nsName), &nsStat); err != nil {
		return nil // no namespace, nothing can run in it
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil || st.Ino != nsStat.Ino || st.Dev != nsStat.Dev {
			continue
		}
		if netns.ProcessMatches(pid, marker) {
			errs = append(errs, netns.StopPID(pid, marker))
		}
	}
	return errors.Join(errs...)
}

// kubeSummary is a line for the start-up report.
func (l *Lab) kubeSummary() string {
	k := l.kubeState()
	if k == nil {
		return ""
	}
	return fmt.Sprintf("Kubernetes: API server %s in namespace %s; podrouted runs with ServiceAccount %s/%s's token", k.APIServer, k.Namespace, KubeNamespace, KubeServiceAccount)
}

// commaAddrs lists addresses for a progress line.
func commaAddrs(as []netip.Addr) string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return strings.Join(s, ", ")
}

// KubeState returns the Kubernetes part of the lab's state (nil in static
// mode): the control plane's namespace, kubeconfigs, node directories.
func (l *Lab) KubeState() *KubeState {
	k := l.kubeState()
	if k == nil {
		return nil
	}
	c := *k
	c.NodeDirs = append([]string(nil), k.NodeDirs...)
	return &c
}

// KubeNodes returns the Node objects as the API server has them, by name.
func (l *Lab) KubeNodes(ctx context.Context) (map[string]corev1.Node, error) {
	out, err := l.Kubectl(ctx, "get", "nodes", "-o", "json")
	if err != nil {
		return nil, err
	}
	var list corev1.NodeList
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, fmt.Errorf("kubectl get nodes: %w", err)
	}
	nodes := map[string]corev1.Node{}
	for _, n := range list.Items {
		nodes[n.Name] = n
	}
	return nodes, nil
}
