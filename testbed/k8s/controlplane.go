package k8sharness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/podroute/podroute/testbed/images"
	"github.com/podroute/podroute/testbed/netns"
)

// Version is the Kubernetes release k8s.mk builds and the harness expects
// (one constant for the harness, the nodes and the images).
const Version = images.K8sVersion

// Component names, used for log files and in errors.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Kubectl           = "kubectl"
)

// AdminUser is the user name of the admin token (group system:masters).
const AdminUser = "podroute-admin"

// stopTimeout is how long a component gets between SIGTERM and SIGKILL.
// kube-apiserver drains for --shutdown-delay-duration (0 here) and then
// closes connections; etcd flushes its WAL. Both take well under a second.
const stopTimeout = 15 * time.Second

// DefaultBinDir is where `make k8s-tools` puts the binaries:
// $PODROUTE_K8S_BIN, else $HOME/.cache/podroute/k8s-v1.36.0, the
// directory the e2e tools and node binaries share (images.DefaultBinDir).
func DefaultBinDir() string { return images.DefaultBinDir() }

// CheckBinaries reports, in one error that says how to fix it, which of the
// binaries Start needs are missing: kube-apiserver and kubectl in binDir
// ("" means DefaultBinDir), kube-controller-manager too if withCM, and etcd
// (etcdPath, "" means "etcd" on $PATH). Tests call it to skip cleanly.
func CheckBinaries(binDir, etcdPath string, withCM bool) error {
	if binDir == "" {
		binDir = DefaultBinDir()
	}
	want := []string{APIServer, Kubectl}
	if withCM {
		want = append(want, ControllerManager)
	}
	var missing []string
	for _, b := range want {
		if fi, err := os.Stat(filepath.Join(binDir, b)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, filepath.Join(binDir, b))
		}
	}
	if etcdPath == "" {
		etcdPath = "etcd"
	}
	if _, err := exec.LookPath(etcdPath); err != nil {
		missing = append(missing, etcdPath+" (Debian package etcd-server)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("Kubernetes control-plane binaries missing: %s; build them with `make k8s-tools` "+
			"(about 9 minutes on 2 cores the first time; the directory is $PODROUTE_K8S_BIN, default ~/.cache/podroute/k8s-%s)",
			strings.Join(missing, ", "), Version)
	}
	return nil
}

// Token is one line of kube-apiserver's --token-auth-file: a static bearer
// token and the identity it authenticates as.
type Token struct {
	Token  string // "" means generate one
	User   string
	UID    string // "" means User
	Groups []string
}

// ControllerManagerOptions turns on kube-controller-manager, so that Nodes get
// spec.podCIDRs allocated as in a real cluster (the nodeipam controller).
type ControllerManagerOptions struct {
	// ClusterCIDRs are the pod networks to carve node CIDRs from: one, or one
	// IPv4 and one IPv6 for dual stack. Default 10.244.0.0/16.
	ClusterCIDRs []string
	// NodeCIDRMaskSizeIPv4 and IPv6 are the per-node prefix lengths
	// (defaults 24 and 64, as kube-controller-manager's own). The node
	// prefix may be at most 16 bits longer than the cluster CIDR's, or the
	// controller manager refuses to start ("the node CIDR size is too big").
	NodeCIDRMaskSizeIPv4 int
	NodeCIDRMaskSizeIPv6 int
	// Controllers to run (--controllers), by their full names (Start waits
	// for each "...-controller" to report healthy). Default:
	// node-ipam-controller (pod CIDRs),
	// serviceaccount-controller (the "default" ServiceAccount in each namespace, which
	// the ServiceAccount admission plugin wants before it admits a pod) and
	// namespace-controller (so a deleted namespace goes away instead of staying
	// Terminating). Deliberately not node-lifecycle-controller: with no kubelets it would
	// taint every Node unreachable.
	Controllers []string
}

// Options configure Start. Only Dir-or-nothing and the binaries are needed;
// everything else has a working default.
type Options struct {
	// Dir holds the control plane's state: etcd data, PKI, token file,
	// kubeconfigs, and logs/ (one file per component). It must be empty or
	// not exist. "" means a fresh temporary directory. Stop removes all of it
	// except logs/; a directory Start created itself is removed entirely.
	Dir string
	// BinDir holds kube-apiserver, kube-controller-manager and kubectl.
	// "" means DefaultBinDir().
	BinDir string
	// EtcdPath is the etcd binary; "" means "etcd" on $PATH (/usr/bin/etcd
	// from Debian's etcd-server, 3.4.23 on bookworm).
	EtcdPath string
	// BindAddress is the address kube-apiserver listens on and advertises.
	// Default 127.0.0.1. With Netns, an address of that namespace that the
	// lab's nodes can reach over the fabric. etcd always listens on
	// 127.0.0.1 (of Netns, if set): only the API server talks to it.
	BindAddress string
	// Netns, if set, runs every component inside that namespace (the lab's
	// control-plane namespace). Clients this package makes (RESTConfig,
	// Kubectl) reach it from the caller's namespace by dialling from inside
	// Netns; kubeconfigs written by Kubeconfig are for use inside the lab.
	Netns *netns.Namespace
	// APIServerPort is the secure port; 0 picks a free one. It stays the
	// same across RestartAPIServer so that clients reconnect by themselves.
	APIServerPort int
	// ServiceClusterIPRanges: one, or IPv4 and IPv6. Default 10.96.0.0/16.
	ServiceClusterIPRanges []string
	// NodeNames get one static token each (NodeToken), for user
	// system:node:NAME in group system:nodes, as a kubelet would have. The
	// Node authorizer lets such an identity read and update its own Node.
	NodeNames []string
	// Tokens are extra static identities (see ServiceAccountUserToken).
	Tokens []Token
	// ExtraSANs are extra IP addresses or DNS names for the serving
	// certificate (BindAddress, 127.0.0.1, ::1, localhost, the kubernetes
	// service names and its cluster IP are always in).
	ExtraSANs []string
	// ControllerManager, if set, starts kube-controller-manager.
	ControllerManager *ControllerManagerOptions
	// ExtraAPIServerArgs are appended to kube-apiserver's command line
	// (later flags win).
	ExtraAPIServerArgs []string
	// ReadyTimeout bounds the wait for each component to report healthy.
	// Default 2 minutes (a cold start takes 5-15 s; a loaded 2-core CI
	// machine can take much longer).
	ReadyTimeout time.Duration
	// Logf, if set, receives progress lines (t.Logf, log.Printf).
	Logf func(format string, args ...any)
}

// Timings records how long the last start of each component took, from
// process start until it reported healthy (etcd /health, kube-apiserver
// /readyz plus the default namespace, kube-controller-manager /healthz).
type Timings struct {
	Etcd, APIServer, ControllerManager time.Duration
}

// ControlPlane is a running etcd + kube-apiserver (+ kube-controller-manager).
// Its methods are safe for concurrent use.
type ControlPlane struct {
	opt    Options
	dir    string
	ownDir bool
	pki    *pki

	// URL is the API server's address, https://BindAddress:port.
	URL string
	// AdminToken authenticates as AdminUser in group system:masters.
	AdminToken string
	// AdminKubeconfig is the path of a kubeconfig using AdminToken.
	AdminKubeconfig string

	tokens     []Token
	nodeTokens map[string]string
	etcdURL    string
	peerURL    string
	apiPort    int
	kcmPort    int
	http       *http.Client // trusts our CA, dials through Netns

	mu      sync.Mutex
	etcd    *netns.Process
	api     *netns.Process
	kcm     *netns.Process
	timings Timings
	stopped bool
}

// Start brings up etcd, then kube-apiserver (and kube-controller-manager if
// asked), and returns once each is healthy and the admin kubeconfig is
// written. On any error everything it started is stopped again, and the error
// carries the tail of the failing component's log.
func Start(ctx context.Context, opt Options) (cp *ControlPlane, err error) {
	if opt.BinDir == "" {
		opt.BinDir = DefaultBinDir()
	}
	if opt.EtcdPath == "" {
		opt.EtcdPath = "etcd"
	}
	if opt.BindAddress == "" {
		opt.BindAddress = "127.0.0.1"
	}
	if len(opt.ServiceClusterIPRanges) == 0 {
		opt.ServiceClusterIPRanges = []string{"10.96.0.0/16"}
	}
	if opt.ReadyTimeout == 0 {
		opt.ReadyTimeout = 2 * time.Minute
	}
	if opt.Logf == nil {
		opt.Logf = func(string, ...any) {}
	}
	if cmo := opt.ControllerManager; cmo != nil {
		c := *cmo
		if len(c.ClusterCIDRs) == 0 {
			c.ClusterCIDRs = []string{"10.244.0.0/16"}
		}
		if c.NodeCIDRMaskSizeIPv4 == 0 {
			c.NodeCIDRMaskSizeIPv4 = 24
		}
		if c.NodeCIDRMaskSizeIPv6 == 0 {
			c.NodeCIDRMaskSizeIPv6 = 64
		}
		if len(c.Controllers) == 0 {
			c.Controllers = []string{"node-ipam-controller", "serviceaccount-controller", "namespace-controller"}
		}
		opt.ControllerManager = &c
	}
	bindIP := net.ParseIP(opt.BindAddress)
	if bindIP == nil {
		return nil, fmt.Errorf("k8sharness: BindAddress %q is not an IP address", opt.BindAddress)
	}
	if err := CheckBinaries(opt.BinDir, opt.EtcdPath, opt.ControllerManager != nil); err != nil {
		return nil, err
	}

	cp = &ControlPlane{opt: opt, nodeTokens: map[string]string{}}
	if opt.Dir == "" {
		d, err := os.MkdirTemp("", "podroute-k8s-")
		if err != nil {
			return nil, err
		}
		cp.dir, cp.ownDir = d, true
	} else {
		if entries, err := os.ReadDir(opt.Dir); err == nil && len(entries) > 0 {
			return nil, fmt.Errorf("k8sharness: Dir %s is not empty (Stop would remove what is in it)", opt.Dir)
		}
		cp.dir = opt.Dir
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
			cp = nil
		}
	}()
	for _, d := range []string{cp.dir, cp.logDir(), filepath.Join(cp.dir, "etcd"), filepath.Join(cp.dir, "apiserver"), filepath.Join(cp.dir, "controller-manager")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return cp, err
		}
	}

	// PKI: the serving certificate names every address a client may use.
	ips := []net.IP{bindIP, net.ParseIP("127.0.0.1"), net.ParseIP("::1")}
	names := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}
	for _, r := range opt.ServiceClusterIPRanges {
		ip, err := firstServiceIP(r)
		if err != nil {
			return cp, err
		}
		ips = append(ips, ip)
	}
	for _, san := range opt.ExtraSANs {
		if ip := net.ParseIP(san); ip != nil {
			ips = append(ips, ip)
		} else {
			names = append(names, san)
		}
	}
	if cp.pki, err = newPKI(filepath.Join(cp.dir, "pki"), ips, names); err != nil {
		return cp, fmt.Errorf("k8sharness: PKI: %w", err)
	}

	// Static tokens: admin, one per node, extras.
	cp.AdminToken = randomToken()
	cp.tokens = append(cp.tokens, Token{Token: cp.AdminToken, User: AdminUser, Groups: []string{"system:masters"}})
	for _, n := range opt.NodeNames {
		tok := randomToken()
		cp.nodeTokens[n] = tok
		cp.tokens = append(cp.tokens, Token{Token: tok, User: "system:node:" + n, Groups: []string{"system:nodes"}})
	}
	for _, t := range opt.Tokens {
		if t.Token == "" {
			t.Token = randomToken()
		}
		cp.tokens = append(cp.tokens, t)
	}
	if err := cp.writeTokenFile(); err != nil {
		return cp, err
	}

	// Ports: etcd client and peer on loopback, the API server on
	// BindAddress, kube-controller-manager's health port on loopback. All
	// are checked free in the namespace the components will run in.
	ports, err := cp.freePorts("127.0.0.1", 3)
	if err != nil {
		return cp, err
	}
	cp.etcdURL = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	cp.peerURL = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	cp.kcmPort = ports[2]
	cp.apiPort = opt.APIServerPort
	if cp.apiPort == 0 {
		p, err := cp.freePorts(opt.BindAddress, 1)
		if err != nil {
			return cp, err
		}
		cp.apiPort = p[0]
	}
	cp.URL = "https://" + net.JoinHostPort(opt.BindAddress, strconv.Itoa(cp.apiPort))

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cp.pki.CAPEM)
	cp.http = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext:       cp.DialContext,
			TLSClientConfig:   &tls.Config{RootCAs: pool},
			DisableKeepAlives: true,
		},
	}

	if cp.AdminKubeconfig, err = cp.Kubeconfig("admin", cp.AdminToken); err != nil {
		return cp, err
	}
	if err := cp.startEtcd(ctx); err != nil {
		return cp, err
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		return cp, err
	}
	if opt.ControllerManager != nil {
		if err := cp.startControllerManager(ctx); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// Dir is the control plane's state directory.
func (cp *ControlPlane) Dir() string { return cp.dir }

// CACertPEM is the CA certificate that signed the API server's serving
// certificate.
func (cp *ControlPlane) CACertPEM() []byte { return cp.pki.CAPEM }

// EtcdURL is etcd's client URL (inside Netns, if set).
func (cp *ControlPlane) EtcdURL() string { return cp.etcdURL }

// NodeToken returns the static token of a node named in Options.NodeNames.
func (cp *ControlPlane) NodeToken(node string) (string, bool) {
	t, ok := cp.nodeTokens[node]
	return t, ok
}

// Tokens returns every static identity in the token file, admin first.
func (cp *ControlPlane) Tokens() []Token { return append([]Token(nil), cp.tokens...) }

// Timings returns how long each component's last start took.
func (cp *ControlPlane) Timings() Timings {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return cp.timings
}

// ServiceAccountUserToken is a static token for a ServiceAccount's user name
// (system:serviceaccount:NS:NAME, groups system:serviceaccounts and
// system:serviceaccounts:NS), for Options.Tokens. RBAC bindings to the
// ServiceAccount match it exactly as they match a real token. Prefer
// ServiceAccountToken (TokenRequest), which is what a pod really gets; a
// static token is for when the ServiceAccount cannot exist before the API
// server starts, and it keeps working if the ServiceAccount is deleted.
func ServiceAccountUserToken(namespace, name string) Token {
	return Token{
		User:   "system:serviceaccount:" + namespace + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace},
	}
}

// TokenFor returns the static token of user, if Options.Tokens had one.
func (cp *ControlPlane) TokenFor(user string) (string, bool) {
	for _, t := range cp.tokens {
		if t.User == user {
			return t.Token, true
		}
	}
	return "", false
}

func (cp *ControlPlane) logDir() string { return filepath.Join(cp.dir, "logs") }

// LogPath is the log file of a component (Etcd, APIServer, ControllerManager).
func (cp *ControlPlane) LogPath(component string) string {
	return filepath.Join(cp.logDir(), component+".log")
}

// LogTail returns the last n lines of a component's log.
func (cp *ControlPlane) LogTail(component string, n int) string {
	b, err := os.ReadFile(cp.LogPath(component))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (cp *ControlPlane) writeTokenFile() error {
	var b strings.Builder
	for _, t := range cp.tokens {
		if t.User == "" || strings.ContainsAny(t.Token+t.User+t.UID+strings.Join(t.Groups, ""), ",\"\n") {
			return fmt.Errorf("k8sharness: token for user %q: user must be set, and no field may contain a comma, quote or newline", t.User)
		}
		uid := t.UID
		if uid == "" {
			uid = t.User
		}
		fmt.Fprintf(&b, "%s,%s,%s", t.Token, t.User, uid)
		if len(t.Groups) > 0 {
			fmt.Fprintf(&b, ",\"%s\"", strings.Join(t.Groups, ","))
		}
		b.WriteString("\n")
	}
	return os.WriteFile(cp.tokenFile(), []byte(b.String()), 0o600)
}

func (cp *ControlPlane) tokenFile() string { return filepath.Join(cp.dir, "tokens.csv") }

// DialContext dials addr from inside Options.Netns (or from here, without
// one). Use it as rest.Config.Dial or an http.Transport's DialContext to
// reach a control plane that runs in a namespace. The connection's socket is
// created inside the namespace and stays there; the goroutine that uses it
// does not need to be.
func (cp *ControlPlane) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	if cp.opt.Netns == nil {
		return d.DialContext(ctx, network, addr)
	}
	var conn net.Conn
	err := cp.opt.Netns.Do(func() error {
		// A single address (always the case here: we dial IP:port) is
		// dialled on the calling goroutine, so on the namespace's thread.
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// freePorts returns n distinct TCP ports free on addr, checked by listening
// on them (inside Netns, if set). They are released before return, so a
// stranger could take one in between; with the kernel's random ephemeral
// choice that is unlikely, and the component's start then fails loudly.
func (cp *ControlPlane) freePorts(addr string, n int) ([]int, error) {
	var ports []int
	listen := func() error {
		var ls []net.Listener
		defer func() {
			for _, l := range ls {
				l.Close()
			}
		}()
		for range n {
			l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
			if err != nil {
				return fmt.Errorf("k8sharness: finding a free port on %s: %w", addr, err)
			}
			ls = append(ls, l)
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
		return nil
	}
	if cp.opt.Netns != nil {
		return ports, cp.opt.Netns.Do(listen)
	}
	return ports, listen()
}

func firstServiceIP(cidr string) (net.IP, error) {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil, fmt.Errorf("k8sharness: service cluster IP range %q: %w", cidr, err)
	}
	ip := make(net.IP, len(n.IP))
	copy(ip, n.IP)
	ip[len(ip)-1]++
	return ip, nil
}

func (cp *ControlPlane) start(name string, argv ...string) (*netns.Process, error) {
	cp.opt.Logf("k8sharness: starting %s", name)
	return netns.StartProcess(cp.opt.Netns, name, cp.LogPath(name), argv...)
}

func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	begin := time.Now()
	p, err := cp.start(Etcd, cp.opt.EtcdPath,
		"--name=default",
		"--data-dir="+filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls="+cp.etcdURL,
		"--advertise-client-urls="+cp.etcdURL,
		"--listen-peer-urls="+cp.peerURL,
		"--initial-advertise-peer-urls="+cp.peerURL,
		"--initial-cluster=default="+cp.peerURL,
		"--initial-cluster-state=new",
		"--logger=zap", "--log-outputs=stderr",
		// The API server compacts every 5 minutes itself; a small quota
		// keeps a runaway test from filling the disk.
		"--quota-backend-bytes="+strconv.Itoa(2<<30),
	)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.etcd = p
	cp.mu.Unlock()
	err = cp.waitHealthy(ctx, Etcd, p, func(c context.Context) error {
		body, err := cp.get(c, cp.http, cp.etcdURL+"/health", "")
		if err == nil && !strings.Contains(body, `"health":"true"`) {
			err = fmt.Errorf("health: %s", body)
		}
		return err
	})
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.timings.Etcd = time.Since(begin)
	cp.mu.Unlock()
	cp.opt.Logf("k8sharness: etcd healthy after %v at %s", time.Since(begin).Round(time.Millisecond), cp.etcdURL)
	return nil
}

func (cp *ControlPlane) apiserverArgs() []string {
	o := cp.opt
	args := []string{
		filepath.Join(o.BinDir, APIServer),
		"--etcd-servers=" + cp.etcdURL,
		"--bind-address=" + o.BindAddress,
		"--advertise-address=" + o.BindAddress,
		"--secure-port=" + strconv.Itoa(cp.apiPort),
		"--cert-dir=" + filepath.Join(cp.dir, "apiserver"),
		"--tls-cert-file=" + cp.pki.ServingCert,
		"--tls-private-key-file=" + cp.pki.ServKey,
		"--client-ca-file=" + cp.pki.CACert,
		"--token-auth-file=" + cp.tokenFile(),
		// Node is harmless next to RBAC and makes the system:node:NAME
		// identities behave as kubelets' do (read/update their own Node).
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + cp.pki.SAPublic,
		"--service-account-signing-key-file=" + cp.pki.SAPrivate,
		"--service-cluster-ip-range=" + strings.Join(o.ServiceClusterIPRanges, ","),
		// As kubeadm does: the DaemonSet may carry privileged containers.
		"--allow-privileged=true",
		"--profiling=false",
		// Without a bound, SIGTERM with open watches (any informer: the
		// controller manager, podrouted) leaves the server hanging after it
		// stopped listening until stopTimeout's SIGKILL; measured 15 s,
		// against 1.2 s with this.
		"--shutdown-watch-termination-grace-period=2s",
	}
	if net.ParseIP(o.BindAddress).IsLoopback() {
		// The "kubernetes" Service's Endpoints may not hold a loopback
		// address (validation rejects it, and the reconciler would log that
		// error forever). Nothing in the testbed uses that Service.
		args = append(args, "--endpoint-reconciler-type=none")
	}
	return append(args, o.ExtraAPIServerArgs...)
}

// StartAPIServer starts kube-apiserver (again, after StopAPIServer) with the
// same port, certificates, tokens and etcd, and waits until /readyz is ok and
// the default namespace exists.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	if cp.api != nil && !cp.api.Exited() {
		cp.mu.Unlock()
		return fmt.Errorf("k8sharness: %s already running (pid %d)", APIServer, cp.api.Pid())
	}
	if cp.stopped {
		cp.mu.Unlock()
		return errors.New("k8sharness: control plane stopped")
	}
	cp.mu.Unlock()

	begin := time.Now()
	p, err := cp.start(APIServer, cp.apiserverArgs()...)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.api = p
	cp.mu.Unlock()
	err = cp.waitHealthy(ctx, APIServer, p, func(c context.Context) error {
		body, err := cp.get(c, cp.http, cp.URL+"/readyz", cp.AdminToken)
		if err != nil {
			return fmt.Errorf("%w %s", err, body)
		}
		// The bootstrap controller creates "default" shortly after the
		// server turns ready; objects are usually made there first.
		_, err = cp.get(c, cp.http, cp.URL+"/api/v1/namespaces/default", cp.AdminToken)
		return err
	})
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.timings.APIServer = time.Since(begin)
	cp.mu.Unlock()
	cp.opt.Logf("k8sharness: kube-apiserver ready after %v at %s", time.Since(begin).Round(time.Millisecond), cp.URL)
	return nil
}

// StopAPIServer stops kube-apiserver only (SIGTERM, then SIGKILL after
// 15 s); etcd keeps every object. Clients see connection refused until
// StartAPIServer.
func (cp *ControlPlane) StopAPIServer() error {
	cp.mu.Lock()
	p := cp.api
	cp.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(syscall.SIGTERM, stopTimeout)
}

// RestartAPIServer is StopAPIServer then StartAPIServer.
func (cp *ControlPlane) RestartAPIServer(ctx context.Context) error {
	if err := cp.StopAPIServer(); err != nil {
		return err
	}
	return cp.StartAPIServer(ctx)
}

func (cp *ControlPlane) startControllerManager(ctx context.Context) error {
	c := cp.opt.ControllerManager
	args := []string{
		filepath.Join(cp.opt.BinDir, ControllerManager),
		// Admin credentials, without --use-service-account-credentials: one
		// identity for every controller, and no token controller needed.
		"--kubeconfig=" + cp.AdminKubeconfig,
		"--authentication-kubeconfig=" + cp.AdminKubeconfig,
		"--authorization-kubeconfig=" + cp.AdminKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.kcmPort),
		"--cert-dir=" + filepath.Join(cp.dir, "controller-manager"),
		"--leader-elect=false",
		"--controllers=" + strings.Join(c.Controllers, ","),
		"--allocate-node-cidrs=true",
		"--cluster-cidr=" + strings.Join(c.ClusterCIDRs, ","),
		"--service-cluster-ip-range=" + strings.Join(cp.opt.ServiceClusterIPRanges, ","),
		"--profiling=false",
	}
	var v4, v6 bool
	for _, cidr := range c.ClusterCIDRs {
		if ip, _, err := net.ParseCIDR(cidr); err != nil {
			return fmt.Errorf("k8sharness: cluster CIDR %q: %w", cidr, err)
		} else if ip.To4() != nil {
			v4 = true
		} else {
			v6 = true
		}
	}
	switch {
	case v4 && v6:
		args = append(args, "--node-cidr-mask-size-ipv4="+strconv.Itoa(c.NodeCIDRMaskSizeIPv4),
			"--node-cidr-mask-size-ipv6="+strconv.Itoa(c.NodeCIDRMaskSizeIPv6))
	case v6:
		args = append(args, "--node-cidr-mask-size="+strconv.Itoa(c.NodeCIDRMaskSizeIPv6))
	default:
		args = append(args, "--node-cidr-mask-size="+strconv.Itoa(c.NodeCIDRMaskSizeIPv4))
	}
	begin := time.Now()
	p, err := cp.start(ControllerManager, args...)
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.kcm = p
	cp.mu.Unlock()
	// Its serving certificate is self-signed in --cert-dir; this probe goes
	// to our own child on loopback, so not verifying it costs nothing.
	insecure := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext:       cp.DialContext,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
	}
	// /healthz answers before the controllers are built; a controller that
	// fails to build (a bad CIDR, say) then makes the process exit. So wait
	// until each wanted controller has its own "[+]NAME ok" line (one per
	// started controller, listed anonymously with ?verbose).
	err = cp.waitHealthy(ctx, ControllerManager, p, func(cctx context.Context) error {
		body, err := cp.get(cctx, insecure, "https://127.0.0.1:"+strconv.Itoa(cp.kcmPort)+"/healthz?verbose", "")
		if err != nil {
			return err
		}
		for _, name := range c.Controllers {
			if strings.HasSuffix(name, "-controller") && !strings.HasPrefix(name, "-") && !strings.Contains(body, "[+]"+name+" ok") {
				return fmt.Errorf("controller %s not started yet", name)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.timings.ControllerManager = time.Since(begin)
	cp.mu.Unlock()
	cp.opt.Logf("k8sharness: kube-controller-manager healthy after %v", time.Since(begin).Round(time.Millisecond))
	return nil
}

// get does one GET and returns the body; a status other than 200 is an error.
func (cp *ControlPlane) get(ctx context.Context, c *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// waitHealthy polls check until it succeeds, the process exits, ctx ends or
// ReadyTimeout passes. Errors carry the last check error and the log tail.
func (cp *ControlPlane) waitHealthy(ctx context.Context, name string, p *netns.Process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, cp.opt.ReadyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if p.Exited() {
			return fmt.Errorf("k8sharness: %s exited during start-up (%v); last lines of %s:\n%s",
				name, p.Wait(), cp.LogPath(name), cp.LogTail(name, 30))
		}
		c, cancelCheck := context.WithTimeout(ctx, 5*time.Second)
		last = check(c)
		cancelCheck()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("k8sharness: %s not healthy after %v: %v; last lines of %s:\n%s",
				name, cp.opt.ReadyTimeout, last, cp.LogPath(name), cp.LogTail(name, 30))
		case <-tick.C:
		}
	}
}

// Process identifies a running component for a record kept outside this
// process (the lab's state file, so that `podroute-lab down` can stop it):
// Marker is a string its command line contains (a path under Dir), to check
// before signalling PID so that a reused PID is never hit.
type Process struct {
	Name   string
	PID    int
	Marker string
}

// Processes returns the components running now. The API server's PID
// changes with every StartAPIServer: record it again after a restart.
func (cp *ControlPlane) Processes() []Process {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	var out []Process
	for _, c := range []struct {
		name, marker string
		p            *netns.Process
	}{
		{Etcd, "--data-dir=" + filepath.Join(cp.dir, "etcd"), cp.etcd},
		{APIServer, "--cert-dir=" + filepath.Join(cp.dir, "apiserver"), cp.api},
		{ControllerManager, "--cert-dir=" + filepath.Join(cp.dir, "controller-manager"), cp.kcm},
	} {
		if c.p != nil && !c.p.Exited() {
			out = append(out, Process{Name: c.name, PID: c.p.Pid(), Marker: c.marker})
		}
	}
	return out
}

// Running returns an error naming each started component that is no longer
// running (crashed, or stopped by StopAPIServer), with its log tail.
func (cp *ControlPlane) Running() error {
	cp.mu.Lock()
	procs := map[string]*netns.Process{Etcd: cp.etcd, APIServer: cp.api, ControllerManager: cp.kcm}
	cp.mu.Unlock()
	var errs []error
	for _, name := range []string{Etcd, APIServer, ControllerManager} {
		if p := procs[name]; p != nil && p.Exited() {
			errs = append(errs, fmt.Errorf("k8sharness: %s (pid %d) exited: %v; last lines of %s:\n%s",
				name, p.Pid(), p.Wait(), cp.LogPath(name), cp.LogTail(name, 20)))
		}
	}
	return errors.Join(errs...)
}

// Stop stops kube-controller-manager, kube-apiserver and etcd (SIGTERM by
// PID, SIGKILL after 15 s) and removes the state directory: all of it if
// Start created it, else everything in it but logs/. It is safe to call more
// than once and from several cleanup paths.
func (cp *ControlPlane) Stop() error {
	cp.mu.Lock()
	cp.stopped = true
	procs := []*netns.Process{cp.kcm, cp.api, cp.etcd}
	cp.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if p == nil {
			continue
		}
		if err := p.Stop(syscall.SIGTERM, stopTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if cp.dir == "" {
		return errors.Join(errs...)
	}
	if cp.ownDir {
		errs = append(errs, os.RemoveAll(cp.dir))
		return errors.Join(errs...)
	}
	entries, err := os.ReadDir(cp.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if e.Name() != "logs" {
			errs = append(errs, os.RemoveAll(filepath.Join(cp.dir, e.Name())))
		}
	}
	return errors.Join(errs...)
}
