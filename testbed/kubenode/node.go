package kubenode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podroute/podroute/testbed/images"
)

// Defaults of Config.
const (
	DefaultClusterCIDR   = "10.244.0.0/16"
	DefaultClusterDNS    = "10.96.0.10"
	DefaultClusterDomain = "cluster.local"
	// DefaultProxyMode is nftables: kube-proxy's current mode (GA since
	// 1.33), which programs one nftables table per family with sets and
	// maps and updates them incrementally, rather than rewriting whole
	// iptables chains on every sync; it needs only the nft binary and
	// nf_tables (kernel >= 5.13), and podroute's own policy programming is
	// nftables too, so a node has one packet-filter backend. "iptables"
	// works as well (the recipe ran both; the Conformance specs passed on
	// each).
	DefaultProxyMode = "nftables"
)

// holderMarker starts the command line of every node's holder process.
const holderMarker = "podroute-kubenode-holder"

// Config says where and how to run a node. Name, Netns, Dir, NodeIP,
// APIServer, CACertPEM, Token (or Kubeconfig), CNIBinDir and CNIConfDir are
// required.
type Config struct {
	Name string // node name (kubelet --hostname-override, kube-proxy hostnameOverride)
	// Netns is the node's network namespace: a name under /run/netns or a
	// path. The caller creates and deletes it.
	Netns string
	// Dir is the node's state directory; it must be empty or not exist.
	// Stop removes it except logs/.
	Dir string
	// NodeIP is kubelet's --node-ip (the node's InternalIP): one address,
	// or an IPv4 and an IPv6 one separated by a comma for a dual-stack
	// node. kubelet listens on the first.
	NodeIP string
	// NodeLabels are set by kubelet when it registers the Node
	// (--node-labels); labels under kubernetes.io and k8s.io are limited
	// to the ones kubelet may set.
	NodeLabels map[string]string

	APIServer string // https://IP:PORT, reachable from inside Netns
	CACertPEM []byte // the CA that signed the API server's certificate
	// Token is kubelet's bearer token (user system:node:NAME, group
	// system:nodes), ProxyToken kube-proxy's ("" means Token; kube-proxy
	// needs to list and watch Services, EndpointSlices and Nodes, e.g. user
	// system:kube-proxy, which the default system:node-proxier binding
	// covers). Kubeconfig and ProxyKubeconfig, if set, are used instead.
	Token, ProxyToken           string
	Kubeconfig, ProxyKubeconfig string

	BinDir     string // kubelet, kube-proxy; "" means images.DefaultBinDir()
	CNIBinDir  string // podroute-cni and the plugins the conflist chains, plus loopback
	CNIConfDir string // where the conflist is (or will be) written

	ClusterCIDR   string // kube-proxy clusterCIDR; default DefaultClusterCIDR
	ClusterDNS    string // kubelet clusterDNS; default DefaultClusterDNS
	ClusterDomain string // default DefaultClusterDomain
	ProxyMode     string // "nftables" (default) or "iptables"
	NoProxy       bool   // do not start kube-proxy

	// Images are the archives imported into containerd before kubelet
	// starts; nil means every archive of images.Catalog in
	// images.DefaultDir() (which must exist: `make images`).
	Images []string
	// CgroupRoot is kubelet's cgroupRoot, the same path in every cgroup
	// hierarchy; it must be unique on the machine. Default
	// "/podroute-" + the base name of Netns (which the lab prefixes with its
	// run ID).
	CgroupRoot string
	// HostPaths are further files or directories of the machine that the
	// node's processes use (a CNI plugin's data directory, say). Every path
	// the node is given that lies under /run, /var/log or /var/lib/cni,
	// which the node mounts privately, is bound back into its mount
	// namespace from the machine's view: Dir, CNIBinDir, CNIConfDir, the
	// kubeconfigs, the image archives and these.
	HostPaths []string

	ReadyTimeout time.Duration                    // per component; default 2 minutes
	Logf         func(format string, args ...any) `json:"-"`
}

// Timings says how long each step of Start took.
type Timings struct {
	Holder, Containerd, Import, Kubelet, Proxy, Total time.Duration
}

// Node is a running node.
type Node struct {
	cfg     Config
	nsPath  string
	socket  string
	st      *stateFile
	http    *http.Client
	timings Timings

	mu      sync.Mutex
	procs   []*proc
	stopped bool
}

type proc struct {
	Proc
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

var cgroupNameRE = regexp.MustCompile(`^/[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// NetnsPath returns the path of a network namespace given by name or path.
func NetnsPath(ns string) string {
	if strings.Contains(ns, "/") {
		return ns
	}
	return filepath.Join("/run/netns", ns)
}

// Start brings the node up: cgroups, the holder and its mounts, containerd,
// the image import, kubelet (healthy on its healthz port), kube-proxy
// (healthy). It does not wait for the Node to be Ready, which needs the CNI
// conflist. On error everything it made is torn down again.
func Start(ctx context.Context, cfg Config) (n *Node, err error) {
	begin := time.Now()
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := checkBinaries(cfg); err != nil {
		return nil, err
	}
	if ents, err := os.ReadDir(cfg.Dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("kubenode: Dir %s is not empty (Stop would remove what is in it)", cfg.Dir)
	}
	n = &Node{cfg: cfg, nsPath: NetnsPath(cfg.Netns), socket: filepath.Join(cfg.Dir, "ctd", "containerd.sock")}
	if _, err := os.Stat(n.nsPath); err != nil {
		return nil, fmt.Errorf("kubenode: network namespace: %w", err)
	}
	n.http = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: DialIn(n.nsPath), DisableKeepAlives: true}}
	D := cfg.Dir
	for _, d := range []string{"logs", "ctd/root", "ctd/state", "ctd/runc", "ctd/opt", "kubelet", "kubelet-pki",
		"podlogs", "volume-plugins", "fakesys", "cgstage"} {
		if err := os.MkdirAll(filepath.Join(D, d), 0o755); err != nil {
			return nil, err
		}
	}
	n.st = &stateFile{path: filepath.Join(D, StateFile), s: State{Name: cfg.Name, Dir: D, Socket: n.socket}}
	if err := n.st.update(func(*State) {}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Stop())
			n = nil
		}
	}()

	if err := n.writeFiles(); err != nil {
		return n, err
	}
	cg, err := cgroupDirs(cfg.CgroupRoot)
	if err != nil {
		return n, err
	}
	if err := n.st.update(func(s *State) { s.Cgroups = cg }); err != nil {
		return n, err
	}
	if err := createCgroups(cg); err != nil {
		return n, err
	}
	if err := ensureVarLibCNI(); err != nil {
		return n, err
	}

	// The holder: network namespace, then a private mount namespace whose
	// mounts are made by holderScript; it then sleeps as the namespace's
	// anchor.
	t0 := time.Now()
	holder, err := n.start("holder", D, append([]string{"nsenter", "--net=" + n.nsPath, "--",
		"unshare", "--mount", "--uts", "--propagation", "slave", "--",
		"bash", "-c", holderScript, holderMarker, D, cfg.Name}, keptPaths(cfg)...)...)
	if err != nil {
		return n, err
	}
	if err := n.waitFor(ctx, holder, "its mounts", func(context.Context) error {
		_, err := os.Stat(filepath.Join(D, "holder.ready"))
		return err
	}); err != nil {
		return n, err
	}
	mns := mountNS(holder.PID)
	if mns == "" || mns == mountNS(os.Getpid()) {
		return n, fmt.Errorf("kubenode: holder (pid %d) is not in a mount namespace of its own (%q)", holder.PID, mns)
	}
	if err := n.st.update(func(s *State) { s.MountNS = mns }); err != nil {
		return n, err
	}
	n.timings.Holder = time.Since(t0)
	enter := []string{"nsenter", "-t", strconv.Itoa(holder.PID), "-m", "-n", "-u", "--"}

	t0 = time.Now()
	ctd, err := n.start("containerd", filepath.Join(D, "containerd.toml"),
		append(enter, "containerd", "--config", filepath.Join(D, "containerd.toml"))...)
	if err != nil {
		return n, err
	}
	if err := n.waitFor(ctx, ctd, "its socket", func(c context.Context) error {
		var d net.Dialer
		conn, err := d.DialContext(c, "unix", n.socket)
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		return n, err
	}
	n.timings.Containerd = time.Since(t0)

	t0 = time.Now()
	if err := images.Import(ctx, n.socket, cfg.Images...); err != nil {
		return n, err
	}
	n.timings.Import = time.Since(t0)

	t0 = time.Now()
	kubeletArgs := append(enter,
		filepath.Join(cfg.BinDir, "kubelet"),
		"--config="+filepath.Join(D, "kubelet.yaml"),
		"--kubeconfig="+n.kubeconfigPath(),
		"--root-dir="+filepath.Join(D, "kubelet"),
		"--cert-dir="+filepath.Join(D, "kubelet-pki"),
		"--hostname-override="+cfg.Name,
		"--node-ip="+cfg.NodeIP,
		"--v=1")
	if len(cfg.NodeLabels) > 0 {
		kubeletArgs = append(kubeletArgs, "--node-labels="+nodeLabels(cfg.NodeLabels))
	}
	kl, err := n.start("kubelet", filepath.Join(D, "kubelet.yaml"), kubeletArgs...)
	if err != nil {
		return n, err
	}
	if err := n.waitFor(ctx, kl, "healthz", n.healthz("http://127.0.0.1:10248/healthz")); err != nil {
		return n, err
	}
	n.timings.Kubelet = time.Since(t0)

	if !cfg.NoProxy {
		t0 = time.Now()
		kp, err := n.start("kube-proxy", filepath.Join(D, "kube-proxy.yaml"), append(enter,
			filepath.Join(cfg.BinDir, "kube-proxy"), "--config="+filepath.Join(D, "kube-proxy.yaml"), "--v=1")...)
		if err != nil {
			return n, err
		}
		if err := n.waitFor(ctx, kp, "healthz", n.healthz("http://127.0.0.1:10256/healthz")); err != nil {
			// kube-proxy is unhealthy until it has seen its Node
			// ("nodeEligible": false), which kubelet registers.
			return n, fmt.Errorf("%w\nend of %s:\n%s", err, kl.log, tail(kl.log, 15))
		}
		n.timings.Proxy = time.Since(t0)
	}
	n.timings.Total = time.Since(begin)
	cfg.Logf("kubenode %s: up in %v (holder %v, containerd %v, image import %v, kubelet %v, kube-proxy %v)",
		cfg.Name, n.timings.Total.Round(time.Millisecond), n.timings.Holder.Round(time.Millisecond),
		n.timings.Containerd.Round(time.Millisecond), n.timings.Import.Round(time.Millisecond),
		n.timings.Kubelet.Round(time.Millisecond), n.timings.Proxy.Round(time.Millisecond))
	return n, nil
}

// holderScript runs as `bash -c holderScript holderMarker DIR NAME
// [KEEP...]` in the node's network namespace and new UTS and (slave) mount
// namespaces. Each KEEP is a directory under one of the private mounts that
// must stay the machine's (the lab's state directory under /run): it is
// opened before the private mounts hide it and bound back through its
// descriptor afterwards.
const holderScript = `set -eu
D="$1" NAME="$2"
shift 2
keep=("$@") fds=()
for k in "${keep[@]}"; do exec {fd}<"$k"; fds+=("$fd"); done
# The node's own hostname, which hostNetwork pods share (e2e checks that
# such a pod answers with its node's name).
echo "$NAME" > /proc/sys/kernel/hostname
# A sysfs of this network namespace (/sys/class/net shows the node's links),
# with the machine's cgroup hierarchies moved back under it.
mount --rbind /sys/fs/cgroup "$D/cgstage"
mount -t sysfs sysfs /sys
mount --move "$D/cgstage" /sys/fs/cgroup
# Private /run (pod network namespaces pinned by containerd, shim sockets,
# the xtables lock), /var/log (kubelet's /var/log/containers links) and
# libcni's result cache.
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns /run/containerd
mount -t tmpfs -o mode=0755 tmpfs /var/log
mount -t tmpfs -o mode=0755 tmpfs /var/lib/cni
# The machine's own directories the node was given that these hid
# (--no-canonicalize: the descriptor, not the path it names now).
for i in "${!keep[@]}"; do
	mkdir -p "${keep[$i]}"
	mount --bind --no-canonicalize "/proc/self/fd/${fds[$i]}" "${keep[$i]}"
	exec {fds[$i]}<&-
done
# The kernel tunables kubelet sets machine-wide, shadowed by files holding
# the values it wants.
for f in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
	mount --bind "$D/fakesys/${f//\//.}" "/proc/sys/$f"
done
: > "$D/holder.ready"
exec -a "$0 $D" sleep infinity
`

// deadRegistries are the registries the e2e specs' images name. Each
// node's containerd sends their pulls to a closed port of its own loopback
// (hosts.toml's server replaces the registry itself, so nothing falls back
// to it): an image missing from the node fails at once with ErrImagePull
// instead of after a DNS and connect timeout of about 50 s per attempt.
var deadRegistries = []string{"registry.k8s.io", "docker.io", "gcr.io", "k8s.gcr.io", "quay.io", "ghcr.io", "mcr.microsoft.com", "invalid.registry.k8s.io"}

// (containerd 1.6 needs the host entry too: with server alone it still
// tries the registry's own address.)
const deadRegistryHosts = `# The lab has no registry: every image is imported (testbed/images).
server = "http://127.0.0.1:1"

[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
`

// privateMounts are the machine's directories the holder covers with
// tmpfs in the node's mount namespace.
var privateMounts = []string{"/run", "/var/log", "/var/lib/cni"}

// keptPaths are the directories the holder binds back from the machine:
// for every path the node uses that lies under one of privateMounts, the
// existing directory right below that mount (/run/podroute-lab for
// /run/podroute-lab/node-1/cni), once each.
func keptPaths(c Config) []string {
	paths := []string{c.Dir, c.CNIBinDir, c.CNIConfDir, c.Kubeconfig, c.ProxyKubeconfig}
	paths = append(paths, c.Images...)
	paths = append(paths, c.HostPaths...)
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		if p == "" || !filepath.IsAbs(p) {
			continue
		}
		p = filepath.Clean(p)
		if rest, ok := strings.CutPrefix(p, "/var/run/"); ok {
			p = "/run/" + rest
		}
		for _, m := range privateMounts {
			rest, ok := strings.CutPrefix(p, m+"/")
			if !ok {
				continue
			}
			top := filepath.Join(m, strings.SplitN(rest, "/", 2)[0])
			if fi, err := os.Stat(top); err == nil && fi.IsDir() && !seen[top] {
				seen[top] = true
				out = append(out, top)
			}
		}
	}
	return out
}

// nodeLabels renders labels for kubelet's --node-labels, sorted.
func nodeLabels(l map[string]string) string {
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// kubeletTunables are the values kubelet's setupKernelTunables wants
// (pkg/kubelet/cm/container_manager_linux.go, v1.36.0).
var kubeletTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

func (c *Config) defaults() error {
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if c.BinDir == "" {
		c.BinDir = images.DefaultBinDir()
	}
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = DefaultClusterCIDR
	}
	if c.ClusterDNS == "" {
		c.ClusterDNS = DefaultClusterDNS
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if c.ProxyMode == "" {
		c.ProxyMode = DefaultProxyMode
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.CgroupRoot == "" {
		c.CgroupRoot = "/podroute-" + filepath.Base(c.Netns)
	}
	var missing []string
	for k, v := range map[string]string{"Name": c.Name, "Netns": c.Netns, "Dir": c.Dir, "NodeIP": c.NodeIP,
		"APIServer": c.APIServer, "CNIBinDir": c.CNIBinDir, "CNIConfDir": c.CNIConfDir} {
		if v == "" {
			missing = append(missing, k)
		}
	}
	if c.Kubeconfig == "" && (c.Token == "" || len(c.CACertPEM) == 0) {
		missing = append(missing, "Token and CACertPEM (or Kubeconfig)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("kubenode: Config needs %s", strings.Join(missing, ", "))
	}
	if !filepath.IsAbs(c.Dir) {
		return fmt.Errorf("kubenode: Dir %q must be absolute", c.Dir)
	}
	if ips := strings.Split(c.NodeIP, ","); len(ips) > 2 || net.ParseIP(ips[0]) == nil || (len(ips) == 2 && net.ParseIP(ips[1]) == nil) {
		return fmt.Errorf("kubenode: NodeIP %q: want an IP address, or an IPv4 and an IPv6 one separated by a comma", c.NodeIP)
	}
	if c.ProxyMode != "nftables" && c.ProxyMode != "iptables" {
		return fmt.Errorf("kubenode: ProxyMode %q: want nftables or iptables", c.ProxyMode)
	}
	if !cgroupNameRE.MatchString(c.CgroupRoot) {
		return fmt.Errorf("kubenode: CgroupRoot %q: want one path element such as /podroute-pr1a2b3c-n1", c.CgroupRoot)
	}
	if c.Images == nil {
		p, err := images.Paths("")
		if err != nil {
			return err
		}
		c.Images = p
	}
	return nil
}

// CheckBinaries reports, in one error that says how to get them, which of
// the programs a node needs are missing. Tests call it to skip cleanly.
func CheckBinaries(binDir string) error {
	if binDir == "" {
		binDir = images.DefaultBinDir()
	}
	return checkBinaries(Config{BinDir: binDir})
}

func checkBinaries(c Config) error {
	var missing []string
	for _, b := range []string{"kubelet", "kube-proxy"} {
		if fi, err := os.Stat(filepath.Join(c.BinDir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Join(c.BinDir, b)+" (make k8s-node-tools)")
		}
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nsenter", "unshare", "bash", "nft", "iptables", "conntrack"} {
		if _, err := exec.LookPath(b); err != nil {
			if _, err := os.Stat("/usr/sbin/" + b); err != nil {
				missing = append(missing, b+" (make k8s-node-deps)")
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kubenode: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

func (n *Node) kubeconfigPath() string {
	if n.cfg.Kubeconfig != "" {
		return n.cfg.Kubeconfig
	}
	return filepath.Join(n.cfg.Dir, "kubelet.kubeconfig")
}

// writeFiles writes the configs, kubeconfigs, resolv.conf and the shadow
// sysctl files.
func (n *Node) writeFiles() error {
	c, D := n.cfg, n.cfg.Dir
	data := map[string]string{
		"Name": c.Name, "D": D, "Socket": n.socket, "PauseImage": images.PauseImage,
		"CNIBinDir": c.CNIBinDir, "CNIConfDir": c.CNIConfDir, "CgroupRoot": c.CgroupRoot,
		"NodeIP": strings.Split(c.NodeIP, ",")[0], "ClusterDNS": c.ClusterDNS, "ClusterDomain": c.ClusterDomain,
		"ClusterCIDR": c.ClusterCIDR, "ProxyMode": c.ProxyMode,
	}
	files := map[string][]byte{
		// No name server a pod with dnsPolicy Default could reach by
		// accident: the lab has no upstream DNS.
		"resolv.conf": []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"),
	}
	var err error
	for name, t := range map[string]*templateT{"containerd.toml": containerdTmpl, "kubelet.yaml": kubeletTmpl, "kube-proxy.yaml": proxyTmpl} {
		if files[name], err = render(t, data); err != nil {
			return err
		}
	}
	if c.Kubeconfig == "" {
		if files["kubelet.kubeconfig"], err = kubeconfig(c.APIServer, c.CACertPEM, "system:node:"+c.Name, c.Token); err != nil {
			return err
		}
	}
	switch {
	case c.ProxyKubeconfig != "":
		b, err := os.ReadFile(c.ProxyKubeconfig)
		if err != nil {
			return err
		}
		files["kube-proxy.kubeconfig"] = b
	case c.Kubeconfig != "" && c.ProxyToken == "":
		b, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			return err
		}
		files["kube-proxy.kubeconfig"] = b
	default:
		tok := c.ProxyToken
		if tok == "" {
			tok = c.Token
		}
		if files["kube-proxy.kubeconfig"], err = kubeconfig(c.APIServer, c.CACertPEM, "kube-proxy", tok); err != nil {
			return err
		}
	}
	for k, v := range kubeletTunables {
		files["fakesys/"+strings.ReplaceAll(k, "/", ".")] = []byte(v + "\n")
	}
	for _, r := range deadRegistries {
		if err := os.MkdirAll(filepath.Join(D, "ctd", "hosts", r), 0o755); err != nil {
			return err
		}
		files[filepath.Join("ctd", "hosts", r, "hosts.toml")] = []byte(deadRegistryHosts)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(D, name), b, 0o600); err != nil {
			return err
		}
	}
	return os.MkdirAll(c.CNIConfDir, 0o755)
}

// start starts argv with its output in logs/NAME.log, in a session of its
// own, and records it (with marker) in the state file.
func (n *Node) start(name, marker string, argv ...string) (*proc, error) {
	return startProc(n.cfg.Dir, name, marker, n.st, &n.mu, &n.procs, argv...)
}

// daemonEnv is the environment of every process a node starts: a plain
// PATH (containerd finds runc and the shim, kube-proxy nft and iptables,
// the CNI plugins iptables and tc) and nothing of the caller's.
var daemonEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}

func startProc(dir, name, marker string, st *stateFile, mu *sync.Mutex, procs *[]*proc, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, "logs", name+".log")
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = daemonEnv
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("kubenode: starting %s: %w", name, err)
	}
	p := &proc{Proc: Proc{Name: name, PID: cmd.Process.Pid, Marker: marker}, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	mu.Lock()
	*procs = append(*procs, p)
	mu.Unlock()
	if err := st.update(func(s *State) { s.Processes = append(s.Processes, p.Proc) }); err != nil {
		return p, err
	}
	return p, nil
}

func (n *Node) healthz(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := n.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
		}
		return nil
	}
}

// waitFor polls check until it succeeds, p exits, ctx ends or ReadyTimeout
// passes; errors carry the end of p's log.
func (n *Node) waitFor(ctx context.Context, p *proc, what string, check func(context.Context) error) error {
	return waitProc(ctx, n.cfg.ReadyTimeout, p, what, check)
}

func waitProc(ctx context.Context, timeout time.Duration, p *proc, what string, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("kubenode: %s exited while waiting for %s (%v); end of %s:\n%s", p.Name, what, p.cmd.ProcessState, p.log, tail(p.log, 25))
		}
		c, cc := context.WithTimeout(ctx, 3*time.Second)
		last = check(c)
		cc()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubenode: %s: no %s after %v: %v; end of %s:\n%s", p.Name, what, timeout, last, p.log, tail(p.log, 25))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// LogTail returns the last n lines of a component's log ("containerd",
// "kubelet", "kube-proxy", "holder").
func (n *Node) LogTail(component string, lines int) string {
	return tail(filepath.Join(n.cfg.Dir, "logs", component+".log"), lines)
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Socket is the node's containerd socket.
func (n *Node) Socket() string { return n.socket }

// Timings says how long Start's steps took.
func (n *Node) Timings() Timings { return n.timings }

// State returns the node's recorded state.
func (n *Node) State() State { return n.st.get() }

// Running returns an error naming each started process that has exited.
func (n *Node) Running() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for _, p := range n.procs {
		if p.exited() {
			errs = append(errs, fmt.Errorf("kubenode %s: %s (pid %d) exited: %v; end of its log:\n%s", n.cfg.Name, p.Name, p.PID, p.cmd.ProcessState, tail(p.log, 15)))
		}
	}
	return errors.Join(errs...)
}

// Stop tears the node down (see the package doc) and removes Dir except
// logs/. It is safe to call more than once.
func (n *Node) Stop() error {
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil
	}
	n.stopped = true
	n.mu.Unlock()
	err := teardown(n.st.get(), 10*time.Second)
	// Our own children are reaped by their Wait goroutines; give them a
	// moment so that no zombie outlives Stop.
	n.mu.Lock()
	procs := append([]*proc(nil), n.procs...)
	n.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			err = errors.Join(err, fmt.Errorf("kubenode: %s (pid %d) not reaped", p.Name, p.PID))
		}
	}
	return errors.Join(err, removeDir(n.cfg.Dir))
}

// Usage is the resident memory of a node's processes, in bytes.
type Usage struct {
	Containerd, Kubelet, KubeProxy int64
	Shims                          int64 // containerd-shim-runc-v2, one per pod
	Containers                     int64 // everything in the node's cgroups
	ShimCount, ContainerProcs      int
}

// Total is the sum.
func (u Usage) Total() int64 { return u.Containerd + u.Kubelet + u.KubeProxy + u.Shims + u.Containers }

// Usage reads VmRSS of every process of the node.
func (n *Node) Usage() Usage { return StateUsage(n.st.get()) }

// StateUsage is Usage for the node that wrote s (ReadState(dir)), so that
// a process other than the one that started the node can measure it.
func StateUsage(st State) Usage {
	var u Usage
	for _, p := range st.Processes {
		if !alive(p.PID, p.Marker) {
			continue
		}
		switch p.Name {
		case "containerd":
			u.Containerd += rss(p.PID)
		case "kubelet":
			u.Kubelet += rss(p.PID)
		case "kube-proxy":
			u.KubeProxy += rss(p.PID)
		}
	}
	marker := "-address " + st.Socket
	for _, pid := range pids() {
		c := cmdline(pid)
		switch {
		case st.Socket != "" && strings.Contains(c, "containerd-shim") && strings.Contains(c, marker):
			u.Shims += rss(pid)
			u.ShimCount++
		case len(st.Cgroups) > 0 && inCgroups(pid, st.Cgroups):
			u.Containers += rss(pid)
			u.ContainerProcs++
		}
	}
	return u
}

func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
