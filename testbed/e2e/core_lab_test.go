package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// This file builds the two-node lab of the routing-core tests:
//
//	pod-a ── node-a ──┐                ┌── node-b ── pod-b
//	 (AS 65001)       └── router (FRR) ┘   (AS 65002)
//	                       AS 65000
//
// Each node runs podrouted (built once per test binary) and peers eBGP
// over IPv4 and IPv6 with the FRR router.

const coreProto = 201

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// podrouteBinaries is podrouted and the podroute CLI (testenv.Binaries).
func podrouteBinaries(t *testing.T) (podrouted, podroute string) {
	t.Helper()
	return testenv.Binary(t, "podrouted"), testenv.Binary(t, "podroute")
}

// coreNode is one podrouted node of the lab.
type coreNode struct {
	ns       *netns.Namespace
	pod      *netns.Namespace
	name     string
	cfg      *config.Config
	cfgPath  string
	socket   string
	logPath  string
	proc     *netns.Process
	podAddr  string // pod address, IPv4
	podAddr6 string
	linkIf   string
}

type coreLab struct {
	t      *testing.T
	c      *netns.Cleanup
	run    string
	router *netns.Namespace
	frr    *frr.Router
	a, b   *coreNode
	bin    string
	cli    string
	dir    string
}

// coreLabOptions vary the lab per scenario.
type coreLabOptions struct {
	extraNetworks []string // originated by FRR besides nothing
	maxPrefixesA  uint32   // node A's v4 limit for the router (0 = default)
	grB           *bool    // node B's graceful restart (nil = default on)
}

func newCoreLab(t *testing.T, opt coreLabOptions) *coreLab {
	t.Helper()
	testenv.SkipUnlessLabMachine(t, true)
	bin, cli := podrouteBinaries(t)
	l := &coreLab{t: t, c: testenv.NewCleanup(t), run: netns.NewRunID(), bin: bin, cli: cli}
	dir, err := os.MkdirTemp("", l.run+"-")
	if err != nil {
		t.Fatal(err)
	}
	l.dir = dir
	l.c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })

	l.router = testenv.CreateNetns(t, l.c, l.run+"-r")
	l.a = l.addNode("a", 1, opt.maxPrefixesA, nil)
	l.b = l.addNode("b", 2, 0, opt.grB)

	neighbors := []frr.Neighbor{
		{Address: "172.31.1.2", ASN: 65001, Hold: 3, Keepalive: 1},
		{Address: "172.31.2.2", ASN: 65002, Hold: 3, Keepalive: 1},
		{Address: "fd00:31:1::2", ASN: 65001, Hold: 3, Keepalive: 1},
		{Address: "fd00:31:2::2", ASN: 65002, Hold: 3, Keepalive: 1},
	}
	l.frr = testenv.StartFRR(t, l.c, l.router, frr.RouterSpec{
		Name: "router", ASN: 65000, RouterID: "172.31.0.1", Neighbors: neighbors, Networks: opt.extraNetworks,
	})
	l.a.start(l)
	l.b.start(l)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []*coreNode{l.a, l.b} {
				if b, err := os.ReadFile(n.logPath); err == nil {
					t.Logf("podrouted %s log (tail):\n%s", n.name, tail(string(b), 40))
				}
			}
		}
	})
	return l
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// addNode creates node i's namespace, its link to the router, its pod and
// its config file.
func (l *coreLab) addNode(name string, i int, maxPrefixes uint32, gr *bool) *coreNode {
	t := l.t
	n := &coreNode{name: name, linkIf: "eth0"}
	n.ns = testenv.CreateNetns(t, l.c, l.run+"-"+name)
	n.pod = testenv.CreateNetns(t, l.c, l.run+"-p"+name)
	rIf := fmt.Sprintf("to-%s", name)
	must(t, netns.Veth(l.router, rIf, n.ns, n.linkIf, 1500))
	must(t, l.router.AddAddr(rIf, fmt.Sprintf("172.31.%d.1/24", i)))
	must(t, l.router.AddAddr(rIf, fmt.Sprintf("fd00:31:%d::1/64", i)))
	must(t, n.ns.AddAddr(n.linkIf, fmt.Sprintf("172.31.%d.2/24", i)))
	must(t, n.ns.AddAddr(n.linkIf, fmt.Sprintf("fd00:31:%d::2/64", i)))

	// The pod: a /32 and a /128 behind a veth, default route through a
	// link-local gateway on the node.
	n.podAddr = fmt.Sprintf("10.244.%d.10", i)
	n.podAddr6 = fmt.Sprintf("fd00:244:0:%d::10", i)
	must(t, netns.Veth(n.ns, "pod0", n.pod, "eth0", 1500))
	must(t, n.pod.AddAddr("eth0", n.podAddr+"/32"))
	must(t, n.pod.AddAddr("eth0", n.podAddr6+"/128"))
	// The node owns the gateway addresses on the pod's link, so it
	// answers ARP/ND for them (the node has no default route, so proxy
	// ARP alone would not answer).
	must(t, n.ns.AddAddr("pod0", "fe80::1/64"))
	must(t, n.ns.AddAddr("pod0", "169.254.1.1/32"))
	ipOrFail(t, n.pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
	ipOrFail(t, n.pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
	ipOrFail(t, n.pod, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0")
	ipOrFail(t, n.ns, "route", "add", n.podAddr+"/32", "dev", "pod0")
	ipOrFail(t, n.ns, "-6", "route", "add", n.podAddr6+"/128", "dev", "pod0")

	port := int32(179)
	n.socket = filepath.Join(l.dir, name, "podrouted.sock")
	n.cfg = &config.Config{
		NodeName:      "node-" + name,
		RouterID:      fmt.Sprintf("172.31.%d.2", i),
		ASN:           uint32(65000 + i),
		ListenPort:    &port,
		PodCIDRs:      []string{fmt.Sprintf("10.244.%d.0/24", i), fmt.Sprintf("fd00:244:0:%d::/64", i)},
		PodPools:      []string{"10.244.0.0/16", "fd00:244::/48"},
		RouteProtocol: coreProto,
		GRPCSocket:    n.socket,
		GoBGPAPI:      "127.0.0.1:50051",
		LogLevel:      "info",
		Peers: []config.Peer{
			{Address: fmt.Sprintf("172.31.%d.1", i), ASN: 65000, MaxPrefixes: maxPrefixes},
			{Address: fmt.Sprintf("fd00:31:%d::1", i), ASN: 65000},
		},
	}
	n.cfg.GracefulRestart.Enabled = gr
	n.cfg.GracefulRestart.RestartTime.Duration = 30 * time.Second
	n.cfg.GracefulRestart.StaleRouteTimeout.Duration = 30 * time.Second
	for j := range n.cfg.Peers {
		n.cfg.Peers[j].HoldTime.Duration = 3 * time.Second
		n.cfg.Peers[j].KeepaliveInterval.Duration = time.Second
		n.cfg.Peers[j].ConnectRetry.Duration = time.Second
	}
	must(t, os.MkdirAll(filepath.Join(l.dir, name), 0o755))
	data, err := yaml.Marshal(n.cfg)
	must(t, err)
	n.cfgPath = filepath.Join(l.dir, name, "podrouted.yaml")
	must(t, os.WriteFile(n.cfgPath, data, 0o644))
	n.logPath = filepath.Join(l.dir, name, "podrouted.log")
	return n
}

func (n *coreNode) start(l *coreLab) {
	l.t.Helper()
	p, err := netns.StartProcess(n.ns, "podrouted-"+n.name, n.logPath, l.bin, "--config", n.cfgPath)
	must(l.t, err)
	n.proc = p
	l.c.Add("podrouted "+n.name, func() error { return p.Stop(syscall.SIGKILL, 5*time.Second) })
}

// ownRoutes lists node n's kernel routes of podroute's protocol for
// family "ipv4"/"ipv6": destination -> gateways ("blackhole" for one).
func (n *coreNode) ownRoutes(family string) (map[string][]string, error) {
	routes, err := n.ns.KernelRoutes(family)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, r := range routes {
		if r.Protocol != strconv.Itoa(coreProto) {
			continue
		}
		var gws []string
		if r.Type == "blackhole" {
			gws = []string{"blackhole"}
		}
		if r.Gateway != "" {
			gws = append(gws, r.Gateway)
		}
		for _, nh := range r.NextHops {
			gws = append(gws, nh.Gateway)
		}
		out[r.Dst] = gws
	}
	return out, nil
}

func (n *coreNode) cli(l *coreLab, args ...string) (string, error) {
	argv := append([]string{l.cli, "--socket", n.socket}, args...)
	out, err := n.ns.Exec(context.Background(), argv...)
	return string(out), err
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ipOrFail(t *testing.T, n *netns.Namespace, argv ...string) {
	t.Helper()
	if out, err := n.IP(argv...); err != nil {
		t.Fatalf("ip %v in %s: %v: %s", argv, n.Name, err, out)
	}
}

func mustSysctl(t *testing.T, n *netns.Namespace, key, value string) {
	t.Helper()
	if out, err := n.Exec(context.Background(), "sysctl", "-qw", key+"="+value); err != nil {
		t.Fatalf("sysctl %s in %s: %v: %s", key, n.Name, err, out)
	}
}

// ping sends count pings at interval from ns to dst and returns how many
// came back.
func ping(ns *netns.Namespace, dst string, count int, interval time.Duration) (sent, received int, out string, err error) {
	args := []string{"ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1", dst}
	b, err := ns.Command(args...).CombinedOutput()
	out = string(b)
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) (packets )?received`).FindStringSubmatch(out)
	if m == nil {
		return 0, 0, out, fmt.Errorf("ping %s from %s: %v: %s", dst, ns.Name, err, out)
	}
	sent, _ = strconv.Atoi(m[1])
	received, _ = strconv.Atoi(m[2])
	return sent, received, out, nil
}

// waitRoute waits until node n's kernel has dst of podroute's protocol
// with gateway gw (or until it is gone when gw is "").
func waitRoute(t *testing.T, n *coreNode, family, dst, gw string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	testutil.Eventually(t, timeout, fmt.Sprintf("node %s route %s via %q", n.name, dst, gw), func() error {
		routes, err := n.ownRoutes(family)
		if err != nil {
			return err
		}
		got, ok := routes[dst]
		switch {
		case gw == "" && ok:
			return fmt.Errorf("still there: %v", got)
		case gw == "":
			return nil
		case !ok:
			return fmt.Errorf("missing; have %v", routes)
		case len(got) != 1 || got[0] != gw:
			return fmt.Errorf("via %v", got)
		}
		return nil
	})
	return time.Since(start)
}

func waitEstablished(t *testing.T, l *coreLab, peers ...string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "FRR sessions Established", func() error {
		nbrs, err := l.frr.BGPNeighbors()
		if err != nil {
			return err
		}
		for _, p := range peers {
			if nbrs[p].State != "Established" {
				return fmt.Errorf("%s is %q", p, nbrs[p].State)
			}
		}
		return nil
	})
}

var allCorePeers = []string{"172.31.1.2", "172.31.2.2", "fd00:31:1::2", "fd00:31:2::2"}

func TestCoreFRRReachabilityRestartWithdrawal(t *testing.T) {
	grOff := false
	l := newCoreLab(t, coreLabOptions{grB: &grOff})
	waitEstablished(t, l, allCorePeers...)

	// FRR's RIB holds both pod CIDRs, from the right nodes.
	testutil.Eventually(t, 20*time.Second, "pod CIDRs in FRR's RIB", func() error {
		for fam, want := range map[string]map[string]string{
			"ipv4": {"10.244.1.0/24": "172.31.1.2", "10.244.2.0/24": "172.31.2.2"},
			"ipv6": {"fd00:244:0:1::/64": "fd00:31:1::2", "fd00:244:0:2::/64": "fd00:31:2::2"},
		} {
			rib, err := l.frr.RIB(fam)
			if err != nil {
				return err
			}
			for p, nh := range want {
				if hops := rib[p]; len(hops) == 0 || hops[0] != nh {
					return fmt.Errorf("%s: %s next hops %v, want %s", fam, p, hops, nh)
				}
			}
		}
		return nil
	})
	// Each node's kernel has the other's CIDR via the router, and a
	// blackhole for its own.
	waitRoute(t, l.a, "ipv4", "10.244.2.0/24", "172.31.1.1", 10*time.Second)
	waitRoute(t, l.b, "ipv4", "10.244.1.0/24", "172.31.2.1", 10*time.Second)
	waitRoute(t, l.a, "ipv6", "fd00:244:0:2::/64", "fd00:31:1::1", 10*time.Second)
	waitRoute(t, l.b, "ipv6", "fd00:244:0:1::/64", "fd00:31:2::1", 10*time.Second)
	waitRoute(t, l.a, "ipv4", "10.244.1.0/24", "blackhole", 5*time.Second)

	for _, dst := range []string{l.b.podAddr, l.b.podAddr6} {
		sent, got, out, err := ping(l.a.pod, dst, 3, 200*time.Millisecond)
		if err != nil || got != sent {
			t.Fatalf("pod a -> %s: %d/%d: %v\n%s", dst, got, sent, err, out)
		}
	}

	t.Run("status", func(t *testing.T) {
		out, err := l.a.cli(l, "status")
		if err != nil {
			t.Fatalf("podroute status: %v\n%s", err, out)
		}
		for _, peer := range []string{"172.31.1.1", "fd00:31:1::1"} {
			if !regexp.MustCompile(regexp.QuoteMeta(peer) + `\s.*Established`).MatchString(out) {
				t.Errorf("podroute status does not show %s Established:\n%s", peer, out)
			}
		}
		out, err = l.a.cli(l, "routes")
		if err != nil || !regexp.MustCompile(`10\.244\.2\.0/24\s+172\.31\.1\.1\s.*yes`).MatchString(out) {
			t.Errorf("podroute routes lacks 10.244.2.0/24 in kernel: %v\n%s", err, out)
		}
		gobgp := testenv.Binary(t, "gobgp")
		b, err := l.a.ns.Exec(context.Background(), gobgp, "-u", "127.0.0.1", "-p", "50051", "neighbor")
		if err != nil || !bytes.Contains(b, []byte("172.31.1.1")) || !bytes.Contains(b, []byte("Establ")) {
			t.Errorf("gobgp neighbor against podrouted: %v\n%s", err, b)
		}
	})

	t.Run("drift", func(t *testing.T) {
		ipOrFail(t, l.a.ns, "route", "del", "10.244.2.0/24", "proto", strconv.Itoa(coreProto))
		took := waitRoute(t, l.a, "ipv4", "10.244.2.0/24", "172.31.1.1", time.Second)
		t.Logf("deleted route re-installed after %v", took.Round(time.Millisecond))
	})

	t.Run("restart without loss", func(t *testing.T) {
		// A route a previous run left that nobody advertises any more: it
		// must be swept once the table is re-learned.
		ipOrFail(t, l.a.ns, "route", "add", "10.244.77.0/24", "via", "172.31.1.1", "proto", strconv.Itoa(coreProto))
		type result struct {
			sent, got int
			out       string
			err       error
		}
		done := make(chan result, 1)
		go func() {
			s, g, o, e := ping(l.a.pod, l.b.podAddr, 600, 10*time.Millisecond)
			done <- result{s, g, o, e}
		}()
		time.Sleep(time.Second)
		must(t, l.a.proc.Stop(syscall.SIGKILL, 5*time.Second))
		// Routes stay while nobody runs.
		time.Sleep(500 * time.Millisecond)
		if r, _ := l.a.ownRoutes("ipv4"); len(r["10.244.2.0/24"]) == 0 {
			t.Errorf("route to node b vanished while podrouted was down: %v", r)
		}
		l.a.start(l)
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		t.Logf("pings across a SIGKILL restart: %d sent, %d received, %d lost", res.sent, res.got, res.sent-res.got)
		if res.got != res.sent {
			t.Errorf("lost %d of %d pings across the restart:\n%s", res.sent-res.got, res.sent, res.out)
		}
		waitEstablished(t, l, allCorePeers...)
		waitRoute(t, l.a, "ipv4", "10.244.77.0/24", "", 20*time.Second)
		waitRoute(t, l.a, "ipv4", "10.244.2.0/24", "172.31.1.1", time.Second)
	})

	t.Run("withdrawal", func(t *testing.T) {
		// Node b runs without graceful restart: a clean stop tells the
		// router, which withdraws b's CIDR from a.
		start := time.Now()
		must(t, l.b.proc.Stop(syscall.SIGTERM, 10*time.Second))
		waitRoute(t, l.a, "ipv4", "10.244.2.0/24", "", 3*time.Second)
		waitRoute(t, l.a, "ipv6", "fd00:244:0:2::/64", "", 3*time.Second)
		t.Logf("node b's CIDR left node a's kernel %v after SIGTERM (hold time 3s)", time.Since(start).Round(time.Millisecond))
		if r, _ := l.b.ownRoutes("ipv4"); len(r) != 0 {
			t.Errorf("node b without graceful restart left routes behind: %v", r)
		}
	})
}

func TestCoreHijackRejected(t *testing.T) {
	l := newCoreLab(t, coreLabOptions{extraNetworks: []string{
		"10.244.1.0/24",   // node a's own pod CIDR
		"10.244.1.128/25", // a more-specific of it
		"10.244.0.0/16",   // covering it
		"172.31.1.2/32",   // node a's address
		"192.168.50.0/24", // outside the pools
		"10.244.50.0/24",  // legitimate: inside the pool, nobody's own
		"fd00:244:0:1::/64", "fd00:244:0:1:8000::/65", "2001:db8:77::/48", "fd00:31:1::2/128",
	}})
	waitEstablished(t, l, allCorePeers...)
	// The legitimate one arrives, so the policy had its chance to act.
	waitRoute(t, l.a, "ipv4", "10.244.50.0/24", "172.31.1.1", 20*time.Second)
	waitRoute(t, l.a, "ipv4", "10.244.2.0/24", "172.31.1.1", 20*time.Second)
	waitRoute(t, l.a, "ipv6", "fd00:244:0:2::/64", "fd00:31:1::1", 20*time.Second)
	for fam, want := range map[string]map[string]string{
		"ipv4": {"10.244.1.0/24": "blackhole", "10.244.2.0/24": "172.31.1.1", "10.244.50.0/24": "172.31.1.1"},
		"ipv6": {"fd00:244:0:1::/64": "blackhole", "fd00:244:0:2::/64": "fd00:31:1::1"},
	} {
		got, err := l.a.ownRoutes(fam)
		must(t, err)
		if len(got) != len(want) {
			t.Errorf("%s: node a's podroute routes %v, want exactly %v", fam, got, want)
		}
		for dst, gw := range want {
			if g := got[dst]; len(g) != 1 || g[0] != gw {
				t.Errorf("%s: %s -> %v, want %s", fam, dst, g, gw)
			}
		}
	}
	// And no hijacked prefix reached the kernel under any protocol.
	for _, fam := range []string{"ipv4", "ipv6"} {
		all, err := l.a.ns.KernelRoutes(fam)
		must(t, err)
		for _, r := range all {
			switch r.Dst {
			case "10.244.1.128/25", "10.244.0.0/16", "172.31.1.2", "192.168.50.0/24",
				"fd00:244:0:1:8000::/65", "2001:db8:77::/48", "fd00:31:1::2":
				t.Errorf("hijacked prefix in node a's kernel: %+v", r)
			}
		}
	}
}

func TestCoreMaxPrefixes(t *testing.T) {
	var flood []string
	for i := 100; i < 110; i++ {
		flood = append(flood, fmt.Sprintf("10.244.%d.0/24", i))
	}
	l := newCoreLab(t, coreLabOptions{extraNetworks: flood, maxPrefixesA: 5})
	// b's sessions and a's v6 session come up; a's v4 session must not
	// stay up with 11 prefixes against a limit of 5.
	waitEstablished(t, l, "172.31.2.2", "fd00:31:1::2", "fd00:31:2::2")
	testutil.Eventually(t, 30*time.Second, "node a tears down its v4 session", func() error {
		out, err := l.a.cli(l, "status")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "max-prefix limit 5") {
			return fmt.Errorf("status does not report the max-prefix teardown:\n%s", out)
		}
		return nil
	})
	log, _ := os.ReadFile(l.a.logPath)
	if !regexp.MustCompile(`tearing that session down.*172\.31\.1\.1.*"max_prefixes":5`).Match(log) {
		t.Errorf("podrouted log has no line naming the peer and the limit:\n%s", tail(string(log), 20))
	}
	if l.a.proc.Exited() {
		t.Fatal("podrouted exited after the max-prefix teardown")
	}
	routes, err := l.a.ownRoutes("ipv4")
	must(t, err)
	if len(routes) > 6 {
		t.Errorf("node a installed %d IPv4 routes past a limit of 5: %v", len(routes), routes)
	}
	nbrs, err := l.frr.BGPNeighbors()
	must(t, err)
	if nbrs["fd00:31:1::2"].State != "Established" {
		t.Errorf("node a's other session (IPv6) is %q, want Established", nbrs["fd00:31:1::2"].State)
	}
}
