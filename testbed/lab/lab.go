package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

// Options say where a lab keeps its state and finds its binaries.
type Options struct {
	// StateDir holds state.json, configs and logs (DefaultStateDir when
	// empty). One lab per StateDir.
	StateDir string
	// BinDir holds podrouted and podroute.
	BinDir string
	// Out receives progress lines; nil discards them.
	Out io.Writer
	// ConvergeTimeout bounds Up's wait for routes (2 minutes when 0).
	ConvergeTimeout time.Duration
	// KeepOnFailure leaves a lab that failed to come up in place for
	// inspection (`podroute-lab down` removes it).
	KeepOnFailure bool
	// Kubernetes, if set, brings the lab up in Kubernetes mode (see
	// lab_kubernetes.go).
	Kubernetes *KubernetesOptions
}

// Lab is a running lab.
type Lab struct {
	Plan  *topology.Plan
	opts  Options
	state *stateFile
	ns    map[string]*netns.Namespace // element or pod name -> namespace
	frr   map[string]*frr.Router
	procs map[string]*netns.Process
	kube  *kubeLab // Kubernetes mode, in the process that brought it up

	// Startup is how long Up took, in phases.
	Startup Startup
	phaseAt time.Time
}

// Startup is how long bringing a lab up took.
type Startup struct {
	Total  time.Duration
	Phases []StartupPhase
}

// StartupPhase is one step of Up.
type StartupPhase struct {
	Name string
	Took time.Duration
}

func (s Startup) String() string {
	var parts []string
	for _, p := range s.Phases {
		parts = append(parts, fmt.Sprintf("%s %.1fs", p.Name, p.Took.Seconds()))
	}
	return fmt.Sprintf("%.1fs (%s)", s.Total.Seconds(), strings.Join(parts, ", "))
}

// phase ends the current phase of Up.
func (l *Lab) phase(name string) {
	now := time.Now()
	l.Startup.Phases = append(l.Startup.Phases, StartupPhase{Name: name, Took: now.Sub(l.phaseAt)})
	l.phaseAt = now
}

// ErrRunning is returned by Up when StateDir already has a live lab.
var ErrRunning = errors.New("a lab is already up")

func (o *Options) defaults() {
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.ConvergeTimeout == 0 {
		o.ConvergeTimeout = 2 * time.Minute
	}
}

// Up builds the lab for topo. On error everything built so far is torn
// down again.
func Up(ctx context.Context, topo *topology.Topology, opts Options) (*Lab, error) {
	opts.defaults()
	begin := time.Now()
	plan, err := topology.NewPlan(topo)
	if err != nil {
		return nil, err
	}
	var kube *kubeLab
	if k := opts.Kubernetes; k != nil {
		if k.Start == nil {
			return nil, errors.New("kubernetes mode: no function to start the control plane")
		}
		kp, err := NewKubePlan(plan)
		if err != nil {
			return nil, err
		}
		if err := k.checkNodeInputs(); err != nil {
			return nil, fmt.Errorf("kubernetes mode runs real nodes: %w", err)
		}
		kube = &kubeLab{opts: *k, plan: kp}
	}
	if st, err := ReadState(opts.StateDir); err != nil {
		return nil, err
	} else if st != nil {
		if st.Alive() {
			return nil, fmt.Errorf("%w (run %s, topology %s, state in %s): run `podroute-lab down` first", ErrRunning, st.RunID, st.Topology.Name, opts.StateDir)
		}
		// What a crash left is dead; clear it.
		if err := Teardown(opts.StateDir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, err
	}
	l := &Lab{Plan: plan, opts: opts, ns: map[string]*netns.Namespace{}, frr: map[string]*frr.Router{}, procs: map[string]*netns.Process{}, kube: kube,
		phaseAt: begin,
		state: &stateFile{path: filepath.Join(opts.StateDir, "state.json"),
			st: &State{RunID: netns.NewRunID(), Topology: topo, Started: time.Now()}}}
	if err := l.state.update(func(*State) {}); err != nil {
		return nil, err
	}
	if err := l.build(ctx); err != nil {
		if opts.KeepOnFailure {
			return nil, fmt.Errorf("%w (lab kept for inspection; remove it with `podroute-lab down`)", err)
		}
		return nil, errors.Join(err, Teardown(opts.StateDir))
	}
	l.Startup.Total = time.Since(begin)
	l.progress("lab up in %s", l.Startup)
	return l, nil
}

// RunID is the lab's name prefix.
func (l *Lab) RunID() string { return l.state.st.RunID }

func (l *Lab) nsName(elem string) string { return l.RunID() + "-" + elem }

func (l *Lab) createNS(elem string) (*netns.Namespace, error) {
	name := l.nsName(elem)
	if err := l.state.update(func(s *State) { s.Namespaces = append(s.Namespaces, name) }); err != nil {
		return nil, err
	}
	ns, err := netns.Create(name)
	if err != nil {
		return nil, err
	}
	l.ns[elem] = ns
	return ns, nil
}

func (l *Lab) progress(format string, args ...any) {
	fmt.Fprintf(l.opts.Out, format+"\n", args...)
}

// build creates everything, in dependency order.
func (l *Lab) build(ctx context.Context) error {
	p := l.Plan
	mode := ""
	if l.kube != nil {
		mode = ", Kubernetes mode"
	}
	l.progress("lab %s: topology %s (%d routers, %d nodes, %d pods%s)", l.RunID(), p.Topology.Name, len(p.Routers), len(p.Nodes), l.podCount(), mode)
	for _, r := range p.Routers {
		if _, err := l.createNS(r.Name); err != nil {
			return err
		}
	}
	for _, s := range p.Switches {
		if _, err := l.createNS(s); err != nil {
			return err
		}
	}
	for _, n := range p.Nodes {
		if _, err := l.createNS(n.Name); err != nil {
			return err
		}
	}
	if err := l.wire(p.Wires, p.Bridges); err != nil {
		return err
	}
	for _, r := range p.Routers {
		if err := l.addAddrs(r.Name, r.Ifaces); err != nil {
			return err
		}
	}
	for _, n := range p.Nodes {
		if err := l.addAddrs(n.Name, n.Ifaces); err != nil {
			return err
		}
		if err := l.addDefaultRoutes(n.Name, n.Gateways); err != nil {
			return err
		}
	}
	if l.kube != nil {
		if err := l.buildKubeNetwork(); err != nil {
			return err
		}
	}
	l.progress("starting FRR on %d routers", len(p.Routers))
	for _, r := range p.Routers {
		if err := l.startFRR(r); err != nil {
			return err
		}
	}
	l.phase("fabric")
	if l.kube != nil {
		if err := l.startKubernetes(ctx); err != nil {
			return err
		}
	}
	l.progress("starting podrouted on %d nodes", len(p.Nodes))
	for _, n := range p.Nodes {
		if err := l.startNode(n); err != nil {
			return err
		}
	}
	if l.kube == nil {
		l.progress("creating %d pods with podroute-cni", l.podCount())
		for _, n := range p.Nodes {
			for i := range n.PodPlans {
				if err := l.addPodCNI(ctx, n, &n.PodPlans[i]); err != nil {
					return err
				}
			}
		}
		l.phase("podrouted and pods")
	}
	if err := l.WaitConverged(ctx, l.opts.ConvergeTimeout); err != nil {
		return err
	}
	l.phase("convergence")
	if l.kube != nil {
		if err := l.waitNetworkAvailable(ctx, time.Minute); err != nil {
			return err
		}
		// Pods only now: a pod's first packets find every route in place.
		if err := l.startKubePods(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) podCount() int {
	c := 0
	for _, n := range l.Plan.Nodes {
		c += len(n.PodPlans)
	}
	return c
}

// wire creates the veth pairs and the bridges.
func (l *Lab) wire(wires []topology.Wire, bridges []topology.Bridge) error {
	for _, br := range bridges {
		ns := l.ns[br.In]
		if err := ns.AddBridge(br.Name); err != nil {
			return err
		}
		for _, a := range br.Addrs {
			if err := ns.AddAddr(br.Name, a.String()); err != nil {
				return err
			}
		}
	}
	for _, w := range wires {
		if err := netns.Veth(l.ns[w.A], w.AIf, l.ns[w.B], w.BIf, 1500); err != nil {
			return fmt.Errorf("link %s:%s - %s:%s: %w", w.A, w.AIf, w.B, w.BIf, err)
		}
	}
	for _, br := range bridges {
		for _, port := range br.Ports {
			if err := l.ns[br.In].Attach(port, br.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Lab) addAddrs(elem string, ifaces []topology.Iface) error {
	for _, ifc := range ifaces {
		for _, a := range ifc.Addrs {
			if err := l.ns[elem].AddAddr(ifc.Name, a.String()); err != nil {
				// A gateway's addresses live on its bridge and were added
				// with it.
				if l.Plan.IsBridge(elem, ifc.Name) {
					continue
				}
				return fmt.Errorf("%s %s %s: %w", elem, ifc.Name, a, err)
			}
		}
	}
	return nil
}

// addDefaultRoutes points elem's default routes at its gateways.
func (l *Lab) addDefaultRoutes(elem string, gateways []netip.Addr) error {
	for _, gw := range gateways {
		args := []string{"route", "add", "default", "via", gw.String()}
		if gw.Is6() {
			args = append([]string{"-6"}, args...)
		}
		if _, err := l.ns[elem].IP(args...); err != nil {
			return fmt.Errorf("%s: default route: %w", elem, err)
		}
	}
	return nil
}

func (l *Lab) startFRR(r *topology.RouterPlan) error {
	// Under the state dir: FRR (user frr) must be able to traverse it.
	dir := filepath.Join(l.opts.StateDir, "frr-"+r.Name)
	ns := l.ns[r.Name]
	if err := l.state.update(func(s *State) { s.FRR = append(s.FRR, FRRState{Namespace: ns.Name, Dir: dir}) }); err != nil {
		return err
	}
	f, err := frr.Start(ns, dir, frr.Config(r.Spec))
	if err != nil {
		return fmt.Errorf("router %s: %w", r.Name, err)
	}
	l.frr[r.Name] = f
	return nil
}

func (l *Lab) nodeDir(name string) string { return filepath.Join(l.opts.StateDir, "node-"+name) }

// Socket is node name's status API socket (reachable from the machine's
// namespace too: a unix socket is a file).
func (l *Lab) Socket(node string) string { return filepath.Join(l.nodeDir(node), "podrouted.sock") }

// NodeLog is the path of node name's podrouted log.
func (l *Lab) NodeLog(node string) string { return filepath.Join(l.nodeDir(node), "podrouted.log") }

// startNode writes node n's config and starts podrouted in its namespace.
func (l *Lab) startNode(n *topology.NodePlan) error {
	dir := l.nodeDir(n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := *n.Config
	cfg.GRPCSocket = l.Socket(n.Name)
	// Every node shares the machine's filesystem: each gets its own CNI
	// configuration directory and IPAM store.
	cfg.CNIConfDir = l.cniDir(n.Name)
	cfg.IPAMDir = l.ipamDir(n.Name)
	var data []byte
	var err error
	if l.Kubernetes() {
		data, err = kubeLocalConfig(n, &config.Config{GRPCSocket: cfg.GRPCSocket, CNIConfDir: cfg.CNIConfDir, IPAMDir: cfg.IPAMDir})
	} else {
		data, err = yaml.Marshal(&cfg)
	}
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "podrouted.yaml")
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		return err
	}
	return l.StartDaemon(n.Name)
}

// StartDaemon (re)starts podrouted on node name from its config file.
func (l *Lab) StartDaemon(node string) error {
	cfgPath := filepath.Join(l.nodeDir(node), "podrouted.yaml")
	proc, err := netns.StartProcess(l.ns[node], "podrouted-"+node, l.NodeLog(node),
		append([]string{filepath.Join(l.opts.BinDir, "podrouted")}, l.daemonArgs(node, cfgPath)...)...)
	if err != nil {
		return err
	}
	l.procs[node] = proc
	return l.state.update(func(s *State) {
		s.Processes = append(s.Processes, ProcessState{Name: "podrouted-" + node, PID: proc.Pid(), Marker: cfgPath})
	})
}

// StopDaemon stops podrouted on node with sig (SIGKILL: a crash; SIGTERM:
// a graceful stop that keeps forwarding state).
func (l *Lab) StopDaemon(node string, sig syscall.Signal) error {
	if p := l.procs[node]; p != nil {
		return p.Stop(sig, 10*time.Second)
	}
	cfgPath := filepath.Join(l.nodeDir(node), "podrouted.yaml")
	for _, p := range l.state.st.Processes {
		if p.Marker == cfgPath {
			return netns.StopPID(p.PID, p.Marker)
		}
	}
	return fmt.Errorf("no podrouted on %s", node)
}

// NS returns the namespace of a router, node, switch or pod.
func (l *Lab) NS(name string) *netns.Namespace {
	if ns := l.ns[name]; ns != nil {
		return ns
	}
	return nil
}

// FRR returns router name's FRR instance.
func (l *Lab) FRR(name string) *frr.Router { return l.frr[name] }

// Daemon returns node's podrouted process as this Lab value started it
// (nil for a node it did not start, e.g. in a lab from Attach, which knows
// only recorded PIDs).
func (l *Lab) Daemon(node string) *netns.Process { return l.procs[node] }

// Node returns the plan of node name.
func (l *Lab) Node(name string) *topology.NodePlan {
	for _, n := range l.Plan.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Down deletes the pods through CNI, as kubelet would, then tears the
// lab down. In Kubernetes mode the nodes' containers go with the nodes.
func (l *Lab) Down() error {
	if l.Kubernetes() {
		return Teardown(l.opts.StateDir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return errors.Join(l.deletePodsCNI(ctx), Teardown(l.opts.StateDir))
}

// Attach opens the lab recorded in opts.StateDir (for status, exec and
// down from a later CLI call).
func Attach(opts Options) (*Lab, error) {
	opts.defaults()
	st, err := ReadState(opts.StateDir)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("no lab is up (no state in %s); start one with `podroute-lab up`", opts.StateDir)
	}
	plan, err := topology.NewPlan(st.Topology)
	if err != nil {
		return nil, err
	}
	l := &Lab{Plan: plan, opts: opts, ns: map[string]*netns.Namespace{}, frr: map[string]*frr.Router{}, procs: map[string]*netns.Process{},
		state: &stateFile{path: filepath.Join(opts.StateDir, "state.json"), st: st}}
	for _, r := range plan.Routers {
		l.ns[r.Name] = &netns.Namespace{Name: l.nsName(r.Name)}
		dir := filepath.Join(opts.StateDir, "frr-"+r.Name)
		l.frr[r.Name] = &frr.Router{NS: l.ns[r.Name], Name: l.nsName(r.Name), Dir: dir, ConfPath: filepath.Join(dir, "frr.conf")}
	}
	for _, s := range plan.Switches {
		l.ns[s] = &netns.Namespace{Name: l.nsName(s)}
	}
	if st.Kubernetes != nil {
		l.ns[KubeCPElement] = &netns.Namespace{Name: st.Kubernetes.Namespace}
		if st.Kubernetes.ClientNamespace != "" {
			l.ns[KubeClientElement] = &netns.Namespace{Name: st.Kubernetes.ClientNamespace}
		}
	}
	for _, n := range plan.Nodes {
		l.ns[n.Name] = &netns.Namespace{Name: l.nsName(n.Name)}
		if cidrs, ok := st.PodCIDRs[n.Name]; ok {
			if err := setPodCIDRs(n, cidrs); err != nil {
				return nil, err
			}
		}
		for i, p := range n.PodPlans {
			if st.Kubernetes == nil {
				l.ns[p.Name] = &netns.Namespace{Name: l.nsName(p.Name)}
			}
			if addrs, ok := st.PodAddrs[p.Name]; ok {
				n.PodPlans[i].Addrs = nil
				for _, a := range addrs {
					if ip, err := netip.ParseAddr(a); err == nil {
						n.PodPlans[i].Addrs = append(n.PodPlans[i].Addrs, ip)
					}
				}
			}
		}
	}
	return l, nil
}

// Names lists every element and pod, for `exec` help and errors.
func (l *Lab) Names() []string {
	var out []string
	for _, r := range l.Plan.Routers {
		out = append(out, r.Name)
	}
	for _, n := range l.Plan.Nodes {
		out = append(out, n.Name)
		for _, p := range n.PodPlans {
			out = append(out, p.Name)
		}
	}
	if l.Kubernetes() {
		out = append(out, KubeCPElement)
		if l.kubeState().ClientNamespace != "" {
			out = append(out, KubeClientElement)
		}
	}
	return out
}

// Env returns the environment for a command run in element name: the
// lab's binaries on PATH and, on a node, PODROUTE_SOCKET.
func (l *Lab) Env(name string) []string {
	env := append(os.Environ(), "PATH="+l.opts.BinDir+":"+os.Getenv("PATH"))
	if l.Node(name) != nil {
		env = append(env, "PODROUTE_SOCKET="+l.Socket(name), "PODROUTE_IPAM_DIR="+l.ipamDir(name))
	}
	if k := l.kubeState(); k != nil && (name == KubeCPElement || name == KubeClientElement) {
		env = append(env, "PATH="+filepath.Dir(k.Kubectl)+":"+l.opts.BinDir+":"+os.Getenv("PATH"),
			"KUBECONFIG="+k.AdminKubeconfig, "KUBECACHEDIR="+l.kubectlCacheDir())
	}
	return env
}

func itoa(i int) string { return strconv.Itoa(i) }
