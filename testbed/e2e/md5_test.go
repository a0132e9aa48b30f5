package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/testbed/bird"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// This file checks TCP MD5 signatures (RFC 2385) in both directions,
// against FRR and against BIRD. One podrouted node and one router share
// one link per case, so that every case has its own pair of addresses
// (the kernel keys MD5 by peer address) and all cases run at once:
//
//	node (podrouted, AS 65001) ── cN ── router (FRR or BIRD, AS 65000)
//	  172.30.N.2, fd00:30:N::2            172.30.N.1, fd00:30:N::1
//
// Inbound cases: podrouted is passive and the router connects in. That is
// what failed before GoBGP v4 (Go's default Multipath TCP listener refused
// TCP_MD5SIG). Outbound cases: the router is passive and podrouted
// connects out. A session that must not come up is watched for more than
// three hold times.

// md5Case is one session between the node and the router.
type md5Case struct {
	name           string
	link           int // link N: 172.30.N.0/24 and fd00:30:N::/64
	v6             bool
	nodePassive    bool // inbound: the router connects; outbound otherwise
	nodePassword   string
	routerPassword string
	wantUp         bool
}

var md5Cases = []md5Case{
	{name: "inbound, right password", link: 1, nodePassive: true, nodePassword: "in-s3cret", routerPassword: "in-s3cret", wantUp: true},
	{name: "inbound, right password, IPv6", link: 2, v6: true, nodePassive: true, nodePassword: "in-s3cret", routerPassword: "in-s3cret", wantUp: true},
	{name: "inbound, wrong password", link: 3, nodePassive: true, nodePassword: "in-s3cret", routerPassword: "not-it"},
	{name: "inbound, no password on the router", link: 4, nodePassive: true, nodePassword: "in-s3cret"},
	{name: "outbound, right password", link: 5, nodePassword: "out-s3cret", routerPassword: "out-s3cret", wantUp: true},
	{name: "outbound, wrong password", link: 6, nodePassword: "not-it", routerPassword: "out-s3cret"},
}

func (c md5Case) nodeAddr() string {
	if c.v6 {
		return fmt.Sprintf("fd00:30:%d::2", c.link)
	}
	return fmt.Sprintf("172.30.%d.2", c.link)
}

func (c md5Case) routerAddr() string {
	if c.v6 {
		return fmt.Sprintf("fd00:30:%d::1", c.link)
	}
	return fmt.Sprintf("172.30.%d.1", c.link)
}

func (c md5Case) family() string {
	if c.v6 {
		return "ipv6"
	}
	return "ipv4"
}

const (
	md5Hold       = 3 * time.Second
	md5WatchDown  = 10 * time.Second // more than three hold times
	md5NodeCIDR4  = "10.244.1.0/24"
	md5NodeCIDR6  = "fd00:244:0:1::/64"
	md5RouterNet4 = "10.244.200.0/24"
	md5RouterNet6 = "fd00:244:0:200::/64"
)

// md5Router is the router under test as the MD5 test sees it.
type md5Router struct {
	kind string // "FRR", "BIRD"
	// sessions returns, by the node's address, the router's view of each
	// session: its state, and a detail worth printing.
	sessions func() (map[string]routerSession, error)
	// learned reports whether the router has prefix from the session to
	// peer (the node's address).
	learned func(family, prefix, peer string) (bool, error)
}

type routerSession struct {
	state, detail string
}

func frrMD5Router(t *testing.T, c *netns.Cleanup, ns *netns.Namespace) md5Router {
	var neighbors []frr.Neighbor
	for _, mc := range md5Cases {
		neighbors = append(neighbors, frr.Neighbor{Address: mc.nodeAddr(), ASN: 65001, Password: mc.routerPassword,
			Passive: !mc.nodePassive, Hold: int(md5Hold.Seconds()), Keepalive: 1})
	}
	f := testenv.StartFRR(t, c, ns, frr.RouterSpec{Name: "router", ASN: 65000, RouterID: "172.30.0.1",
		Neighbors: neighbors, Networks: []string{md5RouterNet4, md5RouterNet6},
		// Connect again every second, not every 10 (datacenter profile).
		Extra: "router bgp 65000\n" + frrConnectTimers(neighbors) + "exit\n"})
	return md5Router{
		kind: "FRR",
		sessions: func() (map[string]routerSession, error) {
			nbrs, err := f.BGPNeighbors()
			if err != nil {
				return nil, err
			}
			out := map[string]routerSession{}
			for addr, n := range nbrs {
				out[addr] = routerSession{n.State, fmt.Sprintf("established %d times", n.TimesEstablished)}
			}
			return out, nil
		},
		learned: func(family, prefix, peer string) (bool, error) {
			rib, err := f.RIB(family)
			if err != nil {
				return false, err
			}
			return slices.Contains(rib[prefix], peer), nil
		},
	}
}

func frrConnectTimers(neighbors []frr.Neighbor) string {
	var b strings.Builder
	for _, n := range neighbors {
		fmt.Fprintf(&b, " neighbor %s timers connect 1\n", n.Address)
	}
	return b.String()
}

func birdMD5Router(t *testing.T, c *netns.Cleanup, ns *netns.Namespace) md5Router {
	var neighbors []bird.Neighbor
	for _, mc := range md5Cases {
		neighbors = append(neighbors, bird.Neighbor{Address: mc.nodeAddr(), ASN: 65001, Password: mc.routerPassword,
			Passive: !mc.nodePassive, Hold: int(md5Hold.Seconds()), Keepalive: 1})
	}
	r := testenv.StartBIRD(t, c, ns, bird.RouterSpec{RouterID: "172.30.0.1", ASN: 65000, Debug: true,
		Neighbors: neighbors, Networks: []string{md5RouterNet4, md5RouterNet6}})
	return md5Router{
		kind: "BIRD",
		sessions: func() (map[string]routerSession, error) {
			protos, err := r.Protocols()
			if err != nil {
				return nil, err
			}
			out := map[string]routerSession{}
			for _, p := range protos {
				if p.Proto == "BGP" {
					out[p.NeighborAddress] = routerSession{p.BGPState, "last error " + strconv.Quote(p.LastError)}
				}
			}
			return out, nil
		},
		learned: func(family, prefix, peer string) (bool, error) {
			rib, err := r.RIB(family)
			if err != nil {
				return false, err
			}
			return slices.ContainsFunc(rib[prefix], func(rt bird.Route) bool { return rt.Protocol == bird.ProtocolName(peer) }), nil
		},
	}
}

func TestMD5BothWaysFRR(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, true)
	testMD5BothWays(t, frrMD5Router)
}

func TestMD5BothWaysBIRD(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, false)
	testenv.SkipUnlessBIRD(t)
	testMD5BothWays(t, birdMD5Router)
}

func testMD5BothWays(t *testing.T, startRouter func(*testing.T, *netns.Cleanup, *netns.Namespace) md5Router) {
	podrouted := testenv.Binary(t, "podrouted")
	c := testenv.NewCleanup(t)
	run := netns.NewRunID()
	dir, err := os.MkdirTemp("", run+"-")
	must(t, err)
	c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })
	routerNS := testenv.CreateNetns(t, c, run+"-r")
	nodeNS := testenv.CreateNetns(t, c, run+"-n")
	for _, mc := range md5Cases {
		ifName := fmt.Sprintf("c%d", mc.link)
		must(t, netns.Veth(routerNS, ifName, nodeNS, ifName, 1500))
		prefixLen := map[bool]string{false: "/24", true: "/64"}[mc.v6]
		must(t, routerNS.AddAddr(ifName, mc.routerAddr()+prefixLen))
		must(t, nodeNS.AddAddr(ifName, mc.nodeAddr()+prefixLen))
	}
	router := startRouter(t, c, routerNS)
	name := func(mc md5Case) string { return fmt.Sprintf("MD5 %s, %s", router.kind, mc.name) }

	// The node: podrouted with one peer per case.
	port := int32(179)
	socket := filepath.Join(dir, "podrouted.sock")
	cfg := &config.Config{
		NodeName: "node-1", RouterID: "172.30.0.2", ASN: 65001, ListenPort: &port,
		PodCIDRs: []string{md5NodeCIDR4, md5NodeCIDR6}, PodPools: []string{"10.244.0.0/16", "fd00:244::/48"},
		RouteProtocol: coreProto, GRPCSocket: socket, GoBGPAPI: "off", LogLevel: "info",
	}
	for _, mc := range md5Cases {
		p := config.Peer{Address: mc.routerAddr(), ASN: 65000, Passive: mc.nodePassive, Password: mc.nodePassword}
		p.HoldTime.Duration, p.KeepaliveInterval.Duration, p.ConnectRetry.Duration = md5Hold, time.Second, time.Second
		cfg.Peers = append(cfg.Peers, p)
	}
	data, err := yaml.Marshal(cfg)
	must(t, err)
	cfgPath := filepath.Join(dir, "podrouted.yaml")
	must(t, os.WriteFile(cfgPath, data, 0o600))
	logPath := filepath.Join(dir, "podrouted.log")
	started := time.Now()
	proc, err := netns.StartProcess(nodeNS, "podrouted", logPath, podrouted, "--config", cfgPath)
	must(t, err)
	c.Add("podrouted", func() error { return proc.Stop(syscall.SIGTERM, 5*time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("podrouted log (tail):\n%s", tail(string(b), 40))
			}
		}
	})

	// podrouted's :179 listeners are plain TCP: the kernel refuses
	// TCP_MD5SIG on Multipath TCP sockets.
	var tcpListeners []string
	deadline := time.Now().Add(20 * time.Second)
	for len(tcpListeners) == 0 {
		if proc.Exited() {
			t.Fatalf("podrouted exited: %v", proc.Wait())
		}
		if time.Now().After(deadline) {
			t.Fatal("podrouted has no :179 listener after 20s")
		}
		time.Sleep(100 * time.Millisecond)
		tcpListeners = bgpListeners(t, nodeNS, "-Hltn")
	}
	if mptcp := bgpListeners(t, nodeNS, "-HMln"); len(mptcp) != 0 {
		t.Errorf("podrouted listens on :179 with Multipath TCP, where MD5 cannot work: %q", mptcp)
	}
	t.Logf("MD5 %s: podrouted's :179 listeners: %d TCP (%s), 0 MPTCP (ss -M)", router.kind, len(tcpListeners), strings.Join(tcpListeners, ", "))

	// Watch every session from both ends until the good ones are up, then
	// for more than three hold times: the bad ones must never come up, the
	// good ones must stay.
	firstUp := map[int]time.Duration{}
	problems := map[int][]string{}
	note := func(mc md5Case, format string, args ...any) {
		if p := fmt.Sprintf(format, args...); !slices.Contains(problems[mc.link], p) {
			problems[mc.link] = append(problems[mc.link], p)
		}
	}
	var lastRouter map[string]routerSession
	var lastNode map[string]*api.Peer
	observe := func() error {
		rs, err := router.sessions()
		if err != nil {
			return err
		}
		ns, err := nodePeers(socket)
		if err != nil {
			return err
		}
		lastRouter, lastNode = rs, ns
		for _, mc := range md5Cases {
			routerUp := rs[mc.nodeAddr()].state == "Established"
			nodeUp := ns[mc.routerAddr()].GetState() == "Established"
			switch {
			case !mc.wantUp && (routerUp || nodeUp):
				note(mc, "Established after %v (router %v, podrouted %v)", time.Since(started).Round(time.Millisecond), routerUp, nodeUp)
			case mc.wantUp && routerUp && nodeUp:
				if _, ok := firstUp[mc.link]; !ok {
					firstUp[mc.link] = time.Since(started)
				}
			case mc.wantUp && firstUp[mc.link] != 0:
				note(mc, "went down after it was Established (router %q, podrouted %q)", rs[mc.nodeAddr()].state, ns[mc.routerAddr()].GetState())
			}
		}
		return nil
	}
	allUp := func() bool {
		for _, mc := range md5Cases {
			if _, ok := firstUp[mc.link]; mc.wantUp && !ok {
				return false
			}
		}
		return true
	}
	var lastErr error
	for !allUp() {
		if time.Since(started) > 60*time.Second {
			t.Fatalf("MD5 %s: sessions with the right password not all Established after 60s (last error %v); router: %v; podrouted: %v",
				router.kind, lastErr, lastRouter, lastNode)
		}
		lastErr = observe()
		time.Sleep(200 * time.Millisecond)
	}
	upAt := time.Since(started)
	for time.Since(started) < upAt+md5WatchDown {
		if err := observe(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	watched := time.Since(started)

	// Routes flow over the sessions that came up, and only over those:
	// the node's CIDR in the router's table from that session, the
	// router's network in the node's kernel via that router address.
	for _, mc := range md5Cases {
		cidr := map[bool]string{false: md5NodeCIDR4, true: md5NodeCIDR6}[mc.v6]
		got, err := router.learned(mc.family(), cidr, mc.nodeAddr())
		must(t, err)
		if got != mc.wantUp {
			note(mc, "the router learned %s from this session: %v", cidr, got)
		}
	}
	gateways := map[string]bool{}
	for _, fam := range []string{"ipv4", "ipv6"} {
		routes, err := nodeNS.KernelRoutes(fam)
		must(t, err)
		for _, r := range routes {
			if r.Dst == md5RouterNet4 || r.Dst == md5RouterNet6 {
				if r.Gateway != "" {
					gateways[r.Gateway] = true
				}
				for _, nh := range r.NextHops {
					gateways[nh.Gateway] = true
				}
			}
		}
	}
	// podrouted runs with multipath: the good sessions of a family are
	// equal-cost paths.
	for _, mc := range md5Cases {
		if gateways[mc.routerAddr()] != mc.wantUp {
			note(mc, "the router's network in the node's kernel via %s: %v (gateways %v)", mc.routerAddr(), gateways[mc.routerAddr()], gateways)
		}
	}
	// podrouted's log records every session that reached Established.
	logData, err := os.ReadFile(logPath)
	must(t, err)
	for _, mc := range md5Cases {
		re := regexp.MustCompile(`"peer session state".*"peer":"` + regexp.QuoteMeta(mc.routerAddr()) + `".*"to":"Established"`)
		if n := len(re.FindAll(logData, -1)); n > 0 && !mc.wantUp {
			note(mc, "podrouted logged %d transitions to Established", n)
		}
	}
	md5Lines := regexp.MustCompile(`(?im)^.*md5.*$`).FindAll(logData, -1)
	for _, mc := range md5Cases {
		for _, pw := range []string{mc.nodePassword, mc.routerPassword} {
			if pw != "" && strings.Contains(string(logData), pw) {
				note(mc, "podrouted's log shows the password %q", pw)
			}
		}
	}

	out, err := nodeNS.Exec(context.Background(), testenv.Binary(t, "podroute"), "--socket", socket, "status")
	if err != nil {
		t.Errorf("podroute status: %v\n%s", err, out)
	}
	for _, mc := range md5Cases {
		peer := lastNode[mc.routerAddr()]
		rs := lastRouter[mc.nodeAddr()]
		outcome := ""
		if mc.wantUp {
			outcome = fmt.Sprintf("Established %v after podrouted started; routes flow both ways; still up %v later",
				firstUp[mc.link].Round(time.Millisecond), (watched - firstUp[mc.link]).Round(time.Second))
		} else {
			outcome = fmt.Sprintf("never Established in %v (%.1f hold times); router: %s, %s; podroute status: %s, INFO %q",
				watched.Round(100*time.Millisecond), watched.Seconds()/md5Hold.Seconds(), rs.state, rs.detail, peer.GetState(), peer.GetInfo())
		}
		if !mc.wantUp && !strings.Contains(peer.GetInfo(), "TCP MD5") {
			problems[mc.link] = append(problems[mc.link], fmt.Sprintf("podroute status INFO %q does not point at TCP MD5", peer.GetInfo()))
		}
		if p := problems[mc.link]; len(p) > 0 {
			t.Errorf("%s: FAILED: %s", name(mc), strings.Join(p, "; "))
			outcome = "FAILED: " + strings.Join(p, "; ")
		}
		t.Logf("%s: %s", name(mc), outcome)
	}
	// The bad sessions failed for the reason under test: the kernels
	// dropped their segments for a wrong or missing signature.
	nodeDrops, routerDrops := md5Counters(t, nodeNS), md5Counters(t, routerNS)
	if nodeDrops["TCPMD5Failure"] == 0 || nodeDrops["TCPMD5NotFound"] == 0 || routerDrops["TCPMD5Failure"] == 0 {
		t.Errorf("MD5 %s: the kernels dropped no wrongly signed (Failure) or unsigned (NotFound) segments: node %v, router %v",
			router.kind, nodeDrops, routerDrops)
	}
	t.Logf("MD5 %s: segments the kernels dropped (wrong signature: Failure, none: NotFound): node (inbound cases) %v; router (outbound) %v; podrouted log lines naming MD5: %d %q",
		router.kind, nodeDrops, routerDrops, len(md5Lines), md5Lines)
	if t.Failed() {
		t.Logf("podroute status:\n%s", out)
	}
}

// bgpListeners lists the sockets listening on port 179 in ns, as `ss
// FLAGS` prints them (-Hltn: TCP; -HMln: Multipath TCP).
func bgpListeners(t *testing.T, ns *netns.Namespace, flags string) []string {
	t.Helper()
	out, err := ns.Exec(context.Background(), "ss", flags)
	if err != nil {
		t.Fatalf("ss %s: %v", flags, err)
	}
	var found []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && strings.HasSuffix(f[3], ":179") {
			found = append(found, f[3])
		}
	}
	return found
}

// nodePeers asks podrouted's status API for its peers, by address.
func nodePeers(socket string) (map[string]*api.Peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := api.Dial(ctx, socket)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	st, err := api.NewStatusClient(conn).GetStatus(ctx, &api.GetStatusRequest{})
	if err != nil {
		return nil, err
	}
	peers := map[string]*api.Peer{}
	for _, p := range st.GetPeers() {
		peers[p.GetAddress()] = p
	}
	return peers, nil
}

// md5Counters reads the kernel's TCP MD5 counters in ns (/proc/net/netstat
// is per namespace): segments dropped for a bad signature (Failure), for a
// missing one (NotFound), and signed ones where no key was set
// (Unexpected).
func md5Counters(t *testing.T, ns *netns.Namespace) map[string]int {
	t.Helper()
	counters := map[string]int{}
	out, err := ns.Exec(context.Background(), "cat", "/proc/net/netstat")
	if err != nil {
		t.Errorf("reading /proc/net/netstat in %s: %v", ns.Name, err)
		return counters
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) {
			continue
		}
		for j, n := range names {
			if strings.HasPrefix(n, "TCPMD5") {
				counters[n], _ = strconv.Atoi(values[j])
			}
		}
		break
	}
	return counters
}
