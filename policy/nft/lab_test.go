package nft

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podroute/podroute/policy"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// The lab: a namespace standing for this node ("node"), one namespace per
// local pod plugged into it by a veth as podroute-cni does (the pod's /32
// and /128, routes through 169.254.1.1 and fe80::1, host routes on the
// node), and one namespace standing for another node ("remote") whose pods'
// addresses sit on its loopback, routed over an uplink veth. The policy
// table is programmed in the node namespace only.

// labPod is a pod of the lab; n picks its addresses 10.0.<node>.<n> and
// fd00:<node>::<n>.
type labPod struct {
	ns, name string
	local    bool
	n        int
	labels   map[string]string
	ports    []corev1.ContainerPort
}

func (p labPod) addr(fam int) netip.Addr {
	node := 1
	if p.local {
		node = 0
	}
	if fam == 4 {
		return netip.AddrFrom4([4]byte{10, 0, byte(node), byte(p.n)})
	}
	return netip.MustParseAddr(fmt.Sprintf("fd00:%d::%d", node, p.n))
}

func (p labPod) key() policy.Key { return policy.Key{Namespace: p.ns, Name: p.name} }

func (p labPod) object() *corev1.Pod {
	node := "remote"
	if p.local {
		node = "node"
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: p.labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: p.ports}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIPs: []corev1.PodIP{
			{IP: p.addr(4).String()}, {IP: p.addr(6).String()}}},
	}
}

// The TCP and UDP ports every lab pod serves.
var (
	tcpPorts = []int{80, 7000, 8080, 9090, 9999}
	udpPorts = []int{5353}
)

type lab struct {
	t      testing.TB
	c      *netns.Cleanup
	run    string
	node   *netns.Namespace
	remote *netns.Namespace
	pods   map[string]*netns.Namespace // local pods by name
	prog   *Programmer
}

// skipUnlessRoot skips kernel tests where they cannot run.
func skipUnlessRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping namespace test in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: needs nft (apt-get install nftables)")
	}
}

func newLab(t testing.TB, pods []labPod) *lab {
	t.Helper()
	skipUnlessRoot(t)
	l := &lab{t: t, c: testenv.NewCleanup(t), run: netns.NewRunID(), pods: map[string]*netns.Namespace{}}
	l.node = createNetns(t, l.c, l.run+"-node")
	l.remote = createNetns(t, l.c, l.run+"-remote")
	must(t, netns.Veth(l.node, "up0", l.remote, "up0", 0))
	must(t, l.node.AddAddr("up0", "192.168.255.1/30"))
	must(t, l.remote.AddAddr("up0", "192.168.255.2/30"))
	must(t, l.node.AddAddr("up0", "fd00:ff::1/64"))
	must(t, l.remote.AddAddr("up0", "fd00:ff::2/64"))
	must(t, l.node.AddRoute("10.0.1.0/24", "via", "192.168.255.2"))
	must(t, l.node.AddRoute("fd00:1::/64", "via", "fd00:ff::2"))
	must(t, l.remote.AddRoute("10.0.0.0/24", "via", "192.168.255.1"))
	must(t, l.remote.AddRoute("fd00::/64", "via", "fd00:ff::1"))
	l.serve(l.remote)
	l.serve(l.node)
	for i, p := range pods {
		if !p.local {
			must(t, l.remote.AddAddr("lo", netip.PrefixFrom(p.addr(4), 32).String()))
			must(t, l.remote.AddAddr("lo", netip.PrefixFrom(p.addr(6), 128).String()))
			continue
		}
		ns := createNetns(t, l.c, l.run+"-"+p.name)
		l.pods[p.name] = ns
		host := fmt.Sprintf("prv%d", i)
		must(t, netns.Veth(l.node, host, ns, "eth0", 0))
		must(t, ns.AddAddr("eth0", netip.PrefixFrom(p.addr(4), 32).String()))
		must(t, ns.AddAddr("eth0", netip.PrefixFrom(p.addr(6), 128).String()))
		must(t, ns.AddRoute("169.254.1.1", "dev", "eth0", "scope", "link"))
		must(t, ns.AddRoute("default", "via", "169.254.1.1", "dev", "eth0"))
		must(t, ns.AddRoute("-6", "default", "via", "fe80::1", "dev", "eth0"))
		must(t, l.node.AddAddr(host, "169.254.1.1/32"))
		must(t, l.node.AddAddr(host, "fe80::1/64"))
		must(t, l.node.AddRoute(netip.PrefixFrom(p.addr(4), 32).String(), "dev", host))
		must(t, l.node.AddRoute("-6", netip.PrefixFrom(p.addr(6), 128).String(), "dev", host))
		l.serve(ns)
	}
	prog, err := New(Options{Enter: l.node.Do})
	must(t, err)
	l.prog = prog
	return l
}

// createNetns creates a namespace that c deletes.
func createNetns(t testing.TB, c *netns.Cleanup, name string) *netns.Namespace {
	t.Helper()
	ns, err := netns.Create(name)
	must(t, err)
	c.Add("namespace "+name, ns.Delete)
	return ns
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serve starts, inside ns, TCP listeners that answer "ok" and UDP echo
// listeners on the lab's ports, on every address of both families.
func (l *lab) serve(ns *netns.Namespace) {
	l.t.Helper()
	for _, port := range tcpPorts {
		var ln net.Listener
		must(l.t, ns.Do(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
			return err
		}))
		l.c.Add("listener", func() error { ln.Close(); return nil })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				conn.Write([]byte("ok\n"))
				conn.Close()
			}
		}()
	}
	for _, port := range udpPorts {
		var pc net.PacketConn
		must(l.t, ns.Do(func() (err error) {
			pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", port))
			return err
		}))
		l.c.Add("udp listener", func() error { pc.Close(); return nil })
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo(buf[:n], from)
			}
		}()
	}
}

// probeTimeout bounds a probe: an allowed flow answers in well under a
// millisecond, a dropped one never; generous for a loaded machine.
const probeTimeout = 1500 * time.Millisecond

// probe opens a new connection from src (in ns) to dst and waits for the
// answer, so a pass proves both the request and the reply got through.
// src invalid lets the kernel choose (the node's own traffic).
func probe(ns *netns.Namespace, proto policy.Protocol, src, dst netip.Addr, port int) error {
	return ns.Do(func() error {
		d := net.Dialer{Timeout: probeTimeout}
		network := "tcp"
		if proto == policy.UDP {
			network = "udp"
		}
		if src.IsValid() {
			if network == "tcp" {
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			} else {
				d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
			}
		}
		conn, err := d.Dial(network, netip.AddrPortFrom(dst, uint16(port)).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(probeTimeout))
		if network == "udp" {
			if _, err := conn.Write([]byte("ping\n")); err != nil {
				return err
			}
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "ok\n" && line != "ping\n" {
			return fmt.Errorf("unexpected answer %q", line)
		}
		return nil
	})
}

// nodeAddr is the node's own (uplink) address.
func nodeAddr(fam int) netip.Addr {
	if fam == 4 {
		return netip.MustParseAddr("192.168.255.1")
	}
	return netip.MustParseAddr("fd00:ff::1")
}

// kflow is one connection to try: from pod "from" to pod "to" ("node" is
// the node itself), or from/to a remote pod.
type kflow struct {
	from, to string
	proto    policy.Protocol
	port     int
	want     bool
}

// check runs the flows in both families at once and reports every one whose
// outcome differs from want.
func (l *lab) check(pods []labPod, flows []kflow) {
	l.t.Helper()
	byName := map[string]labPod{}
	for _, p := range pods {
		byName[p.name] = p
	}
	type result struct {
		f   kflow
		fam int
		err error
	}
	var wg sync.WaitGroup
	results := make(chan result, 2*len(flows))
	for _, f := range flows {
		for _, fam := range []int{4, 6} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var ns *netns.Namespace
				var src netip.Addr
				switch from := byName[f.from]; {
				case f.from == "node":
					ns = l.node
				case from.local:
					ns, src = l.pods[f.from], from.addr(fam)
				default:
					ns, src = l.remote, from.addr(fam)
				}
				dst := byName[f.to].addr(fam)
				if f.to == "node" {
					dst = nodeAddr(fam)
				}
				err := probe(ns, f.proto, src, dst, f.port)
				results <- result{f, fam, err}
			}()
		}
	}
	wg.Wait()
	close(results)
	failed := false
	defer func() {
		if failed {
			out, _ := l.node.Exec(context.Background(), "nft", "list", "table", "inet", DefaultTable)
			l.t.Logf("the node's table then:\n%s", out)
		}
	}()
	for r := range results {
		if (r.err == nil) != r.f.want {
			failed = true
			l.t.Errorf("IPv%d %s -> %s %s/%d: passed=%v (%v), want passed=%v",
				r.fam, r.f.from, r.f.to, r.f.proto, r.f.port, r.err == nil, r.err, r.f.want)
		}
	}
}

func (l *lab) sync(in policy.Input) Stats {
	l.t.Helper()
	res := policy.Compute(in)
	for _, p := range res.Problems {
		l.t.Logf("problem: %s", p)
	}
	st, err := l.prog.Sync(context.Background(), res)
	if err != nil {
		l.t.Fatalf("sync: %v\ntransaction:\n%s", err, st.Transaction)
	}
	return st
}

func input(pods []labPod, pols ...*networkingv1.NetworkPolicy) policy.Input {
	in := policy.Input{NodeName: "node", Policies: pols}
	for _, p := range pods {
		in.Pods = append(in.Pods, p.object())
	}
	for _, ns := range []struct{ name, team string }{{"ns-a", "a"}, {"ns-b", "b"}} {
		in.Namespaces = append(in.Namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: ns.name, Labels: map[string]string{"team": ns.team}}})
	}
	return in
}

// Policy builders.

func netpol(ns, name string, sel map[string]string, types ...networkingv1.PolicyType) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: sel}, PolicyTypes: types},
	}
}

func podPeer(sel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: sel}}
}

func nsPodPeer(nsSel, podSel map[string]string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: nsSel},
		PodSelector:       &metav1.LabelSelector{MatchLabels: podSel},
	}
}

func blockPeer(cidr string, except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: cidr, Except: except}}
}

func port(proto corev1.Protocol, p intstr.IntOrString) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &p}
}

func hasLine(tx, substr string) bool {
	for _, line := range strings.Split(tx, "\n") {
		if strings.Contains(line, substr) {
			return true
		}
	}
	return false
}
