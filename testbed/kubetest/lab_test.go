package kubetest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/testbed/frr"
	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// The lab's addresses (see doc.go). They exist only inside the lab's
// namespaces.
const (
	lanPrefix  = "10.80.0."
	lanBits    = 24
	cpAddr     = lanPrefix + "10"
	frrAddr    = lanPrefix + "1"
	frrASN     = 65000
	clusterASN = 64512
	routeProto = 201

	podrouteNS = "podroute-system"
	podrouteSA = "podrouted"
	rrAnnot    = "podroute.io/route-reflector-cluster-id"
	asnAnnot   = "podroute.io/asn"
)

// labNode is one node namespace running podrouted, with one pod behind it.
type labNode struct {
	idx     int
	name    string // the Node object's name
	rack    string // label value of "rack"
	addr    string // InternalIP on the LAN
	cidr    string // spec.podCIDRs[0]
	podAddr string
	ns, pod *netns.Namespace
	dir     string
	cfgPath string
	socket  string
	logPath string
	proc    *netns.Process
}

// lab is the whole topology plus the clients the scenarios use.
type lab struct {
	t        *testing.T
	c        *netns.Cleanup
	run, dir string
	bin, cli string

	sw, cpNS, router *netns.Namespace
	frr              *frr.Router
	cp               *k8sharness.ControlPlane
	admin            kubernetes.Interface
	dyn              dynamic.Interface
	saKubeconfig     string
	saToken          string
	nodes            []*labNode
	// outage is, per node, the part of podrouted's log written while the
	// API server was stopped and starting again: [from, to) offsets.
	outage map[string][2]int64
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// skipUnlessPossible skips when the machine cannot run the lab: not root,
// -short, no FRR, no control-plane binaries.
func skipUnlessPossible(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a control plane, FRR and three podrouted; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	for _, bin := range []string{"/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("needs FRR (apt-get install frr): %v", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skipf("needs vtysh from the frr package: %v", err)
	}
	if err := k8sharness.CheckBinaries("", "", false); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// labOptions change what newLabWith builds.
type labOptions struct {
	// serviceCIDRs are kube-apiserver's Service ranges (default
	// 10.96.0.0/16; two for dual-stack Services).
	serviceCIDRs []string
}

// newLab builds binaries, namespaces, the LAN, FRR and the control plane.
// Everything is torn down when the test ends, on every exit path.
func newLab(t *testing.T) *lab {
	t.Helper()
	return newLabWith(t, labOptions{})
}

// newLabWith is newLab with options.
func newLabWith(t *testing.T, opts labOptions) *lab {
	t.Helper()
	begin := time.Now()
	l := &lab{t: t, c: &netns.Cleanup{}, run: netns.NewRunID(), outage: map[string][2]int64{}}
	t.Cleanup(func() {
		if err := l.c.Run(); err != nil {
			t.Errorf("teardown: %v", err)
		}
		if left, _ := netns.List(l.run); len(left) > 0 {
			t.Errorf("namespaces left after teardown: %v", left)
		}
	})
	// Not t.TempDir(): FRR runs as user frr and must traverse the path.
	dir, err := os.MkdirTemp("", l.run+"-")
	must(t, err)
	must(t, os.Chmod(dir, 0o755))
	l.dir = dir
	l.c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })

	l.buildBinaries()

	newNS := func(suffix string) *netns.Namespace {
		ns, err := netns.Create(l.run + "-" + suffix)
		must(t, err)
		l.c.Add("namespace "+ns.Name, ns.Delete)
		return ns
	}
	// The LAN: a bridge in its own namespace, one veth per member.
	l.sw = newNS("sw")
	must(t, l.sw.AddBridge("br0"))
	plug := func(ns *netns.Namespace, swIf, addr string) {
		must(t, netns.Veth(l.sw, swIf, ns, "eth0", 1500))
		must(t, l.sw.Attach(swIf, "br0"))
		must(t, ns.AddAddr("eth0", fmt.Sprintf("%s/%d", addr, lanBits)))
	}
	l.cpNS = newNS("cp")
	plug(l.cpNS, "cp", cpAddr)
	l.router = newNS("r")
	plug(l.router, "r", frrAddr)

	for i := 1; i <= 3; i++ {
		n := &labNode{
			idx: i, name: fmt.Sprintf("node-%d", i), rack: string(rune('a' + i - 1)),
			addr:    fmt.Sprintf("%s%d", lanPrefix, 10+i),
			cidr:    fmt.Sprintf("10.244.%d.0/24", i),
			podAddr: fmt.Sprintf("10.244.%d.10", i),
		}
		n.ns = newNS(fmt.Sprintf("n%d", i))
		n.pod = newNS(fmt.Sprintf("p%d", i))
		plug(n.ns, fmt.Sprintf("n%d", i), n.addr)
		l.wirePod(n)
		l.nodes = append(l.nodes, n)
	}

	// FRR accepts any node of the LAN (dynamic neighbours), so a BGPPeer
	// for any node needs no router change. Its hold time is longer than
	// the BGPPeers', so the node's setting is what gets negotiated.
	l.frr = l.startFRR(frr.RouterSpec{
		Name: "tor", ASN: frrASN, RouterID: frrAddr,
		PeerGroups: []frr.PeerGroup{{Name: "nodes", Range: lanPrefix + "0/24", RemoteAS: "external", Hold: 30, Keepalive: 10}},
	})

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cpStart := time.Now()
	cp, err := k8sharness.Start(ctx, k8sharness.Options{
		Dir:         filepath.Join(l.dir, "k8s"),
		Netns:       l.cpNS,
		BindAddress: cpAddr,
		Logf:        t.Logf,

		ServiceClusterIPRanges: opts.serviceCIDRs,
	})
	if err != nil {
		t.Fatalf("starting the control plane: %v", err)
	}
	l.cp = cp
	l.c.Add("control plane", cp.Stop)
	tm := cp.Timings()
	t.Logf("control plane up in %v (etcd %v, kube-apiserver %v) at %s inside %s",
		time.Since(cpStart).Round(time.Millisecond), tm.Etcd.Round(time.Millisecond), tm.APIServer.Round(time.Millisecond), cp.URL, l.cpNS.Name)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver log (tail):\n%s", cp.LogTail(k8sharness.APIServer, 30))
		}
	})
	admin, err := cp.AdminClientset()
	must(t, err)
	l.admin = admin
	l.dyn, err = dynamic.NewForConfig(cp.AdminRESTConfig())
	must(t, err)
	t.Logf("lab %s ready after %v", l.run, time.Since(begin).Round(time.Millisecond))
	return l
}

// buildBinaries finds podrouted, the podroute CLI and the gobgp CLI
// (testenv.Binaries).
func (l *lab) buildBinaries() {
	l.bin = testenv.Binary(l.t, "podrouted")
	l.cli = testenv.Binary(l.t, "podroute")
	gobgpCLI = testenv.Binary(l.t, "gobgp")
}

// gobgpCLI is the gobgp CLI at the GoBGP version podrouted embeds.
var gobgpCLI string

func (l *lab) startFRR(spec frr.RouterSpec) *frr.Router {
	t := l.t
	fdir := filepath.Join(l.dir, "frr")
	f, err := frr.Start(l.router, fdir, frr.Config(spec))
	must(t, err)
	l.c.Add("frr", f.Stop)
	keepLog(t, f.LogPath("bgpd"), "frr-bgpd.log")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("frr:\n%s", f.LogTail("bgpd", 30))
		}
	})
	return f
}

// wirePod plugs the node's pod in as core_lab_test.go does: a /32 behind a
// veth and a default route through 169.254.1.1 on the node's side.
func (l *lab) wirePod(n *labNode) {
	t := l.t
	must(t, netns.Veth(n.ns, "pod0", n.pod, "eth0", 1500))
	must(t, n.pod.AddAddr("eth0", n.podAddr+"/32"))
	must(t, n.ns.AddAddr("pod0", "169.254.1.1/32"))
	for _, argv := range [][]string{
		{"-n", n.pod.Name, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
		{"-n", n.pod.Name, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
		{"-n", n.ns.Name, "route", "add", n.podAddr + "/32", "dev", "pod0"},
	} {
		if out, err := exec.Command("ip", argv...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", argv, err, out)
		}
	}
}

// kubectl runs kubectl as admin inside the control-plane namespace.
func (l *lab) kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := l.cp.Kubectl(ctx, args...)
	return string(out), err
}

// manifestsDir is the repository's manifests/ (tests run in their
// package's directory).
func manifestsDir(t testing.TB) string {
	d, err := filepath.Abs(filepath.Join("..", "..", "manifests"))
	must(t, err)
	if _, err := os.Stat(filepath.Join(d, "01-crds.yaml")); err != nil {
		t.Fatalf("manifests not found at %s: %v", d, err)
	}
	return d
}

// startPodrouted writes node n's local config and starts podrouted
// --kubernetes in its namespace with the ServiceAccount's kubeconfig.
func (l *lab) startPodrouted(n *labNode) {
	t := l.t
	n.dir = filepath.Join(l.dir, n.name)
	must(t, os.MkdirAll(n.dir, 0o755))
	n.socket = filepath.Join(n.dir, "podrouted.sock")
	n.logPath = filepath.Join(n.dir, "podrouted.log")
	n.cfgPath = filepath.Join(n.dir, "podrouted.yaml")
	// Only local options: identity, pod CIDRs and peers come from the
	// API server. No CNI config is written (cniConfDir unset).
	conf := fmt.Sprintf("routeProtocol: %d\ngrpcSocket: %s\ngobgpAPI: 127.0.0.1:50051\nlogLevel: info\n", routeProto, n.socket)
	must(t, os.WriteFile(n.cfgPath, []byte(conf), 0o644))
	p, err := netns.StartProcess(n.ns, "podrouted-"+n.name, n.logPath, l.bin,
		"--kubernetes", "--kubeconfig", l.saKubeconfig, "--config", n.cfgPath,
		"--node-name", n.name, "--namespace", podrouteNS)
	must(t, err)
	n.proc = p
	l.c.Add("podrouted "+n.name, func() error { return p.Stop(syscall.SIGTERM, 5*time.Second) })
	keepLog(t, n.logPath, n.name+"-podrouted.log")
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(n.logPath); err == nil {
				t.Logf("podrouted %s log (tail):\n%s", n.name, tail(string(b), 25))
			}
		}
	})
}

// keepLog copies a log to $KUBETEST_LOG_DIR (if set) when the test ends,
// before the lab's directory is removed: for CI artifacts and debugging.
func keepLog(t *testing.T, path, name string) {
	dir := os.Getenv("KUBETEST_LOG_DIR")
	if dir == "" {
		return
	}
	t.Cleanup(func() {
		b, err := os.ReadFile(path)
		if err == nil {
			err = errors.Join(os.MkdirAll(dir, 0o755), os.WriteFile(filepath.Join(dir, name), b, 0o644))
		}
		if err != nil {
			t.Logf("keeping %s: %v", path, err)
		}
	})
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// createNode registers n as kubelet and kube-controller-manager would: a
// Node with its rack label and pod CIDR, then its InternalIP in status.
func (l *lab) createNode(ctx context.Context, n *labNode, annotations map[string]string) error {
	obj := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        n.name,
			Labels:      map[string]string{"kubernetes.io/hostname": n.name, "rack": n.rack},
			Annotations: annotations,
		},
		Spec: corev1.NodeSpec{PodCIDR: n.cidr, PodCIDRs: []string{n.cidr}},
	}
	if _, err := l.admin.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Node %s: %w", n.name, err)
	}
	// A patch of status, as kubelet does: podrouted may already be
	// setting its condition on the new object.
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"addresses": []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.addr},
		{Type: corev1.NodeHostName, Address: n.name},
	}}})
	if err != nil {
		return err
	}
	if _, err := l.admin.CoreV1().Nodes().PatchStatus(ctx, n.name, patch); err != nil {
		return fmt.Errorf("setting Node %s's InternalIP: %w", n.name, err)
	}
	return nil
}

// status asks podrouted on n through its socket with the podroute CLI,
// run inside the node's namespace as an operator would.
func (l *lab) status(n *labNode) (*api.GetStatusResponse, error) {
	cmd := n.ns.Command(l.cli, "--socket", n.socket, "-o", "json", "status")
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("podroute status on %s: %w: %s", n.name, err, ee.Stderr)
		}
		return nil, fmt.Errorf("podroute status on %s: %w", n.name, err)
	}
	var resp api.GetStatusResponse
	if err := protojson.Unmarshal(out, &resp); err != nil {
		return nil, fmt.Errorf("podroute status on %s: %w: %s", n.name, err, out)
	}
	return &resp, nil
}

// peers returns n's peers by address.
func (l *lab) peers(n *labNode) (map[string]*api.Peer, error) {
	st, err := l.status(n)
	if err != nil {
		return nil, err
	}
	out := map[string]*api.Peer{}
	for _, p := range st.GetPeers() {
		out[p.GetAddress()] = p
	}
	return out, nil
}

// wantPeers checks that n's peer set is exactly addrs, all Established.
func (l *lab) wantPeers(n *labNode, addrs ...string) error {
	got, err := l.peers(n)
	if err != nil {
		return err
	}
	var have []string
	for a, p := range got {
		have = append(have, a+"="+p.GetState())
	}
	sort.Strings(have)
	if len(got) != len(addrs) {
		return fmt.Errorf("%s: peers %v, want exactly %v Established", n.name, have, addrs)
	}
	for _, a := range addrs {
		if p, ok := got[a]; !ok || p.GetState() != "Established" {
			return fmt.Errorf("%s: peers %v, want exactly %v Established", n.name, have, addrs)
		}
	}
	return nil
}

// sessionSince records, for every node, when each of its peers entered its
// current state: a session that was reset or re-created has a new time.
type sessionSince map[string]map[string]int64

// sessions snapshots the given nodes (all without arguments); every
// session must be Established.
func (l *lab) sessions(nodes ...*labNode) (sessionSince, error) {
	if len(nodes) == 0 {
		nodes = l.nodes
	}
	out := sessionSince{}
	for _, n := range nodes {
		ps, err := l.peers(n)
		if err != nil {
			return nil, err
		}
		out[n.name] = map[string]int64{}
		for a, p := range ps {
			if p.GetState() != "Established" {
				return nil, fmt.Errorf("%s: peer %s is %s", n.name, a, p.GetState())
			}
			out[n.name][a] = p.GetStateSinceUnix()
		}
	}
	return out, nil
}

// sameSessions compares two snapshots, ignoring the peers in skip.
func sameSessions(before, after sessionSince, skip ...string) error {
	var diffs []string
	for node, peers := range before {
		for a, since := range peers {
			if slices.Contains(skip, a) {
				continue
			}
			if got, ok := after[node][a]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: session to %s gone", node, a))
			} else if got != since {
				diffs = append(diffs, fmt.Sprintf("%s: session to %s re-established (state since %d, was %d)", node, a, got, since))
			}
		}
		for a := range after[node] {
			if _, ok := peers[a]; !ok && !slices.Contains(skip, a) {
				diffs = append(diffs, fmt.Sprintf("%s: new session to %s", node, a))
			}
		}
	}
	if len(diffs) > 0 {
		return errors.New(strings.Join(diffs, "; "))
	}
	return nil
}

// kernelRoutes lists n's routes of podroute's protocol, one sorted line each.
func kernelRoutes(n *labNode) ([]string, error) {
	out, err := n.ns.IP("-j", "-4", "route", "show", "proto", strconv.Itoa(routeProto))
	if err != nil {
		return nil, err
	}
	var routes []netns.KernelRoute
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("%s: parsing ip -j route: %w", n.name, err)
	}
	var lines []string
	for _, r := range routes {
		s := r.Dst
		switch {
		case r.Type == "blackhole":
			s += " blackhole"
		case r.Gateway != "":
			s += " via " + r.Gateway
		}
		for _, nh := range r.NextHops {
			s += " nexthop " + nh.Gateway
		}
		lines = append(lines, s)
	}
	sort.Strings(lines)
	return lines, nil
}

// allRoutes is kernelRoutes of every node.
func (l *lab) allRoutes() (map[string][]string, error) {
	out := map[string][]string{}
	for _, n := range l.nodes {
		r, err := kernelRoutes(n)
		if err != nil {
			return nil, err
		}
		out[n.name] = r
	}
	return out, nil
}

// wantRoutes checks that n's kernel has exactly: a blackhole for its own
// pod CIDR and a route to each of others' CIDRs via that node's address.
func wantRoutes(n *labNode, others ...*labNode) error {
	got, err := kernelRoutes(n)
	if err != nil {
		return err
	}
	want := []string{n.cidr + " blackhole"}
	for _, o := range others {
		want = append(want, o.cidr+" via "+o.addr)
	}
	sort.Strings(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s: proto %d routes %q, want %q", n.name, routeProto, got, want)
	}
	return nil
}

// ping sends count pings from pod namespace src to dst.
func ping(src *netns.Namespace, dst string, count int) error {
	out, err := src.Command("ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", dst).CombinedOutput()
	sent, got, perr := parsePing(string(out))
	if perr != nil || err != nil || got != sent {
		return fmt.Errorf("ping %s from %s: %d/%d answered: %v %v\n%s", dst, src.Name, got, sent, err, perr, out)
	}
	return nil
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`)

func parsePing(out string) (sent, received int, err error) {
	m := pingStats.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no ping statistics in %q", out)
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, nil
}

// pingAll pings from every pod to every other pod.
func (l *lab) pingAll(nodes ...*labNode) error {
	var errs []error
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				errs = append(errs, ping(a.pod, b.podAddr, 2))
			}
		}
	}
	return errors.Join(errs...)
}

// pingStream is a ping running in the background until stopped.
type pingStream struct {
	what string
	cmd  *exec.Cmd
	out  strings.Builder
	done chan error
}

func (l *lab) startPing(src *labNode, dst *labNode) *pingStream {
	p := &pingStream{what: src.name + "->" + dst.name, done: make(chan error, 1)}
	p.cmd = src.pod.Command("ping", "-n", "-q", "-i", "0.2", "-W", "1", dst.podAddr)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	must(l.t, p.cmd.Start())
	go func() { p.done <- p.cmd.Wait() }()
	l.c.Add("ping "+p.what, func() error {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		return nil
	})
	return p
}

// stop interrupts the ping (it then prints its statistics) and returns them.
func (p *pingStream) stop() (sent, received int, err error) {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return parsePing(p.out.String())
}

// gobgpNeighbor reads one neighbour from the GoBGP API embedded in n's
// podrouted (the gobgp CLI against 127.0.0.1:50051 in n's namespace).
type gobgpNeighbor struct {
	ConfiguredHold   uint64
	NegotiatedHold   uint64
	UptimeSeconds    int64
	SessionState     string
	ReceivedOpen     uint64
	EstablishedFlops uint32
}

func gobgpPeer(n *labNode, addr string) (gobgpNeighbor, error) {
	out, err := n.ns.Command(gobgpCLI, "-u", "127.0.0.1", "-p", "50051", "neighbor", addr, "-j").Output()
	if err != nil {
		return gobgpNeighbor{}, fmt.Errorf("gobgp neighbor %s on %s: %w", addr, n.name, err)
	}
	var raw struct {
		State struct {
			SessionState any    `json:"session_state"`
			Flops        uint32 `json:"flops"`
			Messages     struct {
				Received struct {
					Open uint64 `json:"open"`
				} `json:"received"`
			} `json:"messages"`
		} `json:"state"`
		Timers struct {
			Config struct {
				HoldTime uint64 `json:"hold_time"`
			} `json:"config"`
			State struct {
				NegotiatedHoldTime uint64 `json:"negotiated_hold_time"`
				Uptime             struct {
					Seconds int64 `json:"seconds"`
				} `json:"uptime"`
			} `json:"state"`
		} `json:"timers"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return gobgpNeighbor{}, fmt.Errorf("gobgp neighbor %s on %s: %w: %s", addr, n.name, err, out)
	}
	return gobgpNeighbor{
		ConfiguredHold: raw.Timers.Config.HoldTime, NegotiatedHold: raw.Timers.State.NegotiatedHoldTime,
		UptimeSeconds: raw.Timers.State.Uptime.Seconds, SessionState: fmt.Sprint(raw.State.SessionState),
		ReceivedOpen: raw.State.Messages.Received.Open, EstablishedFlops: raw.State.Flops,
	}, nil
}

// logOffset is the size of n's log now, to read what comes after.
func logOffset(n *labNode) int64 {
	fi, err := os.Stat(n.logPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// peerChanges returns the "peer added/removed/updated in place" lines
// podrouted logged after offset, as "msg peer".
func peerChanges(n *labNode, offset int64) ([]string, error) {
	f, err := os.Open(n.logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg  string `json:"msg"`
			Peer string `json:"peer"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch line.Msg {
		case "peer added", "peer removed", "peer updated in place":
			out = append(out, line.Msg+" "+line.Peer)
		}
	}
	return out, sc.Err()
}

// pids returns each podrouted's PID, and an error if one has exited.
func (l *lab) pids() (map[string]int, error) {
	out := map[string]int{}
	for _, n := range l.nodes {
		if n.proc.Exited() {
			return nil, fmt.Errorf("podrouted on %s exited: %v", n.name, n.proc.Wait())
		}
		out[n.name] = n.proc.Pid()
	}
	return out, nil
}

// node returns node-i.
func (l *lab) node(i int) *labNode { return l.nodes[i-1] }

// others returns the lab's nodes except n.
func (l *lab) others(n *labNode) []*labNode {
	var out []*labNode
	for _, o := range l.nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}
