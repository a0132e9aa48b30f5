package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/config"
	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bgppeer"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// This file builds the lab of the hostile-peer tests (malformed messages,
// max-prefix floods, wire fuzzing): one podrouted node between a real FRR
// router, whose session and routes must come through untouched, and a
// namespace from which bgppeer plays one or more misbehaving peers.
//
//	router (FRR, AS 65000) ──── node (podrouted, AS 65001) ──── raw (bgppeer, AS 65099)
//	172.31.1.1, fd00:31:1::1    172.31.1.2 | 172.31.9.1        172.31.9.2.., fd00:31:9::2..
//	originates 10.244.50.0/24, 10.244.51.0/24, fd00:244:0:50::/64
//
// Each raw address is a passive peer in podrouted's config, so the tests
// open every connection themselves, from the address they choose.

const (
	rawASN      = 65099
	hostileNode = "172.31.1.2"
)

// frrRoutes are the routes FRR gives the node: they must stay in its
// kernel whatever the raw peer does. Destination -> gateway, per family.
var frrRoutes = map[string]map[string]string{
	"ipv4": {"10.244.50.0/24": "172.31.1.1", "10.244.51.0/24": "172.31.1.1"},
	"ipv6": {"fd00:244:0:50::/64": "fd00:31:1::1"},
}

// frrNeighbors are the node's sessions as FRR names them.
var frrNeighbors = []string{"172.31.1.2", "fd00:31:1::2"}

type hostileOptions struct {
	raw4, raw6    int           // raw peer addresses per family (at least one IPv4)
	maxPrefixes   uint32        // the raw peers' limit (0: podrouted's default)
	maxPrefixHold time.Duration // maxPrefixHoldTime (0: podrouted's default)
	rawHold       time.Duration // the raw peers' hold time in podrouted's config (0: 3s)
}

type hostileLab struct {
	t                 *testing.T
	c                 *netns.Cleanup
	run, dir          string
	router, node, raw *netns.Namespace
	frr               *frr.Router
	cfg               *config.Config
	cfgPath, logPath  string
	socket, cli       string
	proc              *netns.Process
	raw4, raw6        []netip.Addr
	rawHold           time.Duration
	// frrEstablished is how often FRR had established each of the node's
	// sessions once the lab was up: a session that flaps raises it.
	frrEstablished map[string]int
	grpc           *grpc.ClientConn
}

func newHostileLab(t *testing.T, opt hostileOptions) *hostileLab {
	t.Helper()
	testenv.SkipUnlessLabMachine(t, true)
	bin, cli := podrouteBinaries(t)
	l := &hostileLab{t: t, c: testenv.NewCleanup(t), run: netns.NewRunID(), cli: cli, rawHold: opt.rawHold}
	if l.rawHold == 0 {
		l.rawHold = 3 * time.Second
	}
	dir, err := os.MkdirTemp("", l.run+"-")
	must(t, err)
	l.dir = dir
	l.c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })

	l.router = testenv.CreateNetns(t, l.c, l.run+"-r")
	l.node = testenv.CreateNetns(t, l.c, l.run+"-n")
	l.raw = testenv.CreateNetns(t, l.c, l.run+"-x")
	must(t, netns.Veth(l.router, "to-n", l.node, "eth0", 1500))
	must(t, l.router.AddAddr("to-n", "172.31.1.1/24"))
	must(t, l.router.AddAddr("to-n", "fd00:31:1::1/64"))
	must(t, l.node.AddAddr("eth0", hostileNode+"/24"))
	must(t, l.node.AddAddr("eth0", "fd00:31:1::2/64"))
	must(t, netns.Veth(l.node, "to-x", l.raw, "eth0", 1500))
	must(t, l.node.AddAddr("to-x", "172.31.9.1/24"))
	must(t, l.node.AddAddr("to-x", "fd00:31:9::1/64"))
	for i := range max(opt.raw4, 1) {
		a := netip.AddrFrom4([4]byte{172, 31, 9, byte(2 + i)})
		must(t, l.raw.AddAddr("eth0", a.String()+"/24"))
		l.raw4 = append(l.raw4, a)
	}
	for i := range opt.raw6 {
		a := netip.MustParseAddr(fmt.Sprintf("fd00:31:9::%x", 2+i))
		must(t, l.raw.AddAddr("eth0", a.String()+"/64"))
		l.raw6 = append(l.raw6, a)
	}

	l.frr = testenv.StartFRR(t, l.c, l.router, frr.RouterSpec{
		Name: "router", ASN: 65000, RouterID: "172.31.0.1",
		Neighbors: []frr.Neighbor{
			{Address: hostileNode, ASN: 65001, Hold: 3, Keepalive: 1},
			{Address: "fd00:31:1::2", ASN: 65001, Hold: 3, Keepalive: 1},
		},
		Networks: []string{"10.244.50.0/24", "10.244.51.0/24", "fd00:244:0:50::/64"},
	})

	port := int32(179)
	l.socket = filepath.Join(dir, "podrouted.sock")
	l.cfg = &config.Config{
		NodeName: "node-hostile", RouterID: hostileNode, ASN: 65001, ListenPort: &port,
		PodCIDRs:      []string{"10.244.1.0/24", "fd00:244:0:1::/64"},
		PodPools:      []string{"10.244.0.0/16", "fd00:244::/48"},
		RouteProtocol: coreProto, GRPCSocket: l.socket, GoBGPAPI: config.GoBGPAPIOff, LogLevel: "info",
		Peers: []config.Peer{
			{Address: "172.31.1.1", ASN: 65000},
			{Address: "fd00:31:1::1", ASN: 65000},
		},
	}
	l.cfg.MaxPrefixHoldTime.Duration = opt.maxPrefixHold
	for i := range l.cfg.Peers {
		p := &l.cfg.Peers[i]
		p.HoldTime.Duration, p.KeepaliveInterval.Duration, p.ConnectRetry.Duration = 3*time.Second, time.Second, time.Second
	}
	for _, a := range append(append([]netip.Addr(nil), l.raw4...), l.raw6...) {
		p := config.Peer{Address: a.String(), ASN: rawASN, Passive: true, MaxPrefixes: opt.maxPrefixes}
		p.HoldTime.Duration, p.KeepaliveInterval.Duration = l.rawHold, time.Second
		l.cfg.Peers = append(l.cfg.Peers, p)
	}
	data, err := yaml.Marshal(l.cfg)
	must(t, err)
	l.cfgPath = filepath.Join(dir, "podrouted.yaml")
	must(t, os.WriteFile(l.cfgPath, data, 0o644))
	l.logPath = filepath.Join(dir, "podrouted.log")
	proc, err := netns.StartProcess(l.node, "podrouted-hostile", l.logPath, bin, "--config", l.cfgPath)
	must(t, err)
	l.proc = proc
	l.c.Add("podrouted", func() error { return proc.Stop(syscall.SIGKILL, 5*time.Second) })
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(l.logPath); err == nil {
				t.Logf("podrouted log (tail):\n%s", tail(string(b), 40))
			}
		}
	})

	l.waitReady()
	return l
}

// waitReady waits for both FRR sessions and FRR's routes in the node's
// kernel, then notes how often FRR has established each session.
func (l *hostileLab) waitReady() {
	t := l.t
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "FRR sessions Established", func() error {
		nbrs, err := l.frr.BGPNeighbors()
		if err != nil {
			return err
		}
		for _, p := range frrNeighbors {
			if nbrs[p].State != "Established" {
				return fmt.Errorf("%s is %q", p, nbrs[p].State)
			}
		}
		return nil
	})
	testutil.Eventually(t, 20*time.Second, "FRR's routes in the node's kernel", l.frrRoutesInKernel)
	nbrs, err := l.frr.BGPNeighbors()
	must(t, err)
	l.frrEstablished = map[string]int{}
	for _, p := range frrNeighbors {
		l.frrEstablished[p] = nbrs[p].TimesEstablished
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := api.Dial(ctx, l.socket)
	must(t, err)
	l.grpc = conn
	l.c.Add("status client", conn.Close)
}

// ownRoutes lists the node's kernel routes of podroute's protocol for
// family: destination -> gateways ("blackhole" for one).
func (l *hostileLab) ownRoutes(family string) (map[string][]string, error) {
	n := &coreNode{ns: l.node}
	return n.ownRoutes(family)
}

func (l *hostileLab) frrRoutesInKernel() error {
	for fam, want := range frrRoutes {
		got, err := l.ownRoutes(fam)
		if err != nil {
			return err
		}
		for dst, gw := range want {
			if g := got[dst]; len(g) != 1 || g[0] != gw {
				return fmt.Errorf("%s: %v, want via %s", dst, g, gw)
			}
		}
	}
	return nil
}

// frrSessionsUntouched says whether both FRR sessions are Established and
// were never re-established since the lab came up.
func (l *hostileLab) frrSessionsUntouched() error {
	nbrs, err := l.frr.BGPNeighbors()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range frrNeighbors {
		n := nbrs[p]
		if n.State != "Established" || n.TimesEstablished != l.frrEstablished[p] {
			errs = append(errs, fmt.Errorf("FRR's session with %s is %s, established %d times (%d at the start)",
				p, n.State, n.TimesEstablished, l.frrEstablished[p]))
		}
	}
	return errors.Join(errs...)
}

// status calls podrouted's status API once and says how long it took.
func (l *hostileLab) status(timeout time.Duration) (*api.GetStatusResponse, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	resp, err := api.NewStatusClient(l.grpc).GetStatus(ctx, &api.GetStatusRequest{})
	return resp, time.Since(start), err
}

// rawPeerStatus is podrouted's view of the raw peer at addr.
func (l *hostileLab) rawPeerStatus(addr netip.Addr) (*api.Peer, error) {
	resp, _, err := l.status(5 * time.Second)
	if err != nil {
		return nil, err
	}
	for _, p := range resp.GetPeers() {
		if a, err := netip.ParseAddr(p.GetAddress()); err == nil && a == addr {
			return p, nil
		}
	}
	return nil, fmt.Errorf("podroute status has no peer %s", addr)
}

// cliStatus runs `podroute status` in the node and times it.
func (l *hostileLab) cliStatus() (string, time.Duration, error) {
	start := time.Now()
	out, err := l.node.Exec(context.Background(), l.cli, "--socket", l.socket, "status")
	return string(out), time.Since(start), err
}

// health is what every hostile test checks after each thing it did.
type health struct {
	alive      bool
	statusTook time.Duration // `podroute status`, the CLI as an operator runs it
	statusErr  error
	frrErr     error // the FRR sessions flapped or are down
	routesErr  error // FRR's routes left the kernel
}

func (l *hostileLab) health() health {
	h := health{alive: !l.proc.Exited()}
	_, h.statusTook, h.statusErr = l.cliStatus()
	h.frrErr = l.frrSessionsUntouched()
	h.routesErr = l.frrRoutesInKernel()
	return h
}

func (h health) ok() bool {
	return h.alive && h.statusErr == nil && h.frrErr == nil && h.routesErr == nil
}

func (h health) String() string {
	if h.ok() {
		return fmt.Sprintf("survived (status %v, FRR sessions and routes untouched)", h.statusTook.Round(time.Millisecond))
	}
	var bad []string
	if !h.alive {
		bad = append(bad, "podrouted EXITED")
	}
	for _, err := range []error{h.statusErr, h.frrErr, h.routesErr} {
		if err != nil {
			bad = append(bad, err.Error())
		}
	}
	return "NOT SURVIVED: " + strings.Join(bad, "; ")
}

// rawConfig is the raw peer's OPEN for a connection from local.
func (l *hostileLab) rawConfig(local netip.Addr) bgppeer.Config {
	id := local
	if !id.Is4() {
		// A BGP identifier is IPv4; make one from the address's last byte.
		id = netip.AddrFrom4([4]byte{172, 31, 10, local.As16()[15]})
	}
	return bgppeer.Config{ASN: rawASN, RouterID: id, HoldTime: l.rawHold, LocalAddr: local}
}

// nodeAddr is the node's address on the raw peer's link, in local's
// family.
func nodeAddr(local netip.Addr) netip.AddrPort {
	if local.Is4() {
		return netip.MustParseAddrPort("172.31.9.1:179")
	}
	return netip.MustParseAddrPort("[fd00:31:9::1]:179")
}

// dialRaw opens one TCP connection from the raw namespace, from local.
func (l *hostileLab) dialRaw(ctx context.Context, local netip.Addr) (*bgppeer.Peer, error) {
	var p *bgppeer.Peer
	err := l.raw.Do(func() (err error) {
		p, err = bgppeer.Dial(ctx, nodeAddr(local), l.rawConfig(local))
		return err
	})
	return p, err
}

// connectRaw dials from local until podrouted takes the connection (sends
// its OPEN), within timeout: a peer that podrouted holds Idle gets its
// connections closed at once (or refused). It returns the peer, when its
// OPEN came and how many connections were turned away first.
func (l *hostileLab) connectRaw(local netip.Addr, timeout time.Duration) (*bgppeer.Peer, time.Time, int, error) {
	deadline := time.Now().Add(timeout)
	refused := 0
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		p, err := l.dialRaw(ctx, local)
		if err == nil {
			_, err = p.WaitOpen(ctx)
			if err == nil {
				cancel()
				return p, p.State().OpenAt, refused, nil
			}
			p.Close()
		}
		cancel()
		refused++
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return nil, time.Time{}, refused, fmt.Errorf("podrouted did not take a connection from %s within %v (%d turned away; last: %v)", local, timeout, refused, last)
}

// establishRaw connects from local and completes the handshake, then
// waits until podrouted reports the session Established.
func (l *hostileLab) establishRaw(local netip.Addr, timeout time.Duration) (*bgppeer.Peer, error) {
	p, _, _, err := l.connectRaw(local, timeout)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Handshake(ctx); err != nil {
		p.Close()
		return nil, err
	}
	if _, ok := testutil.Poll(20*time.Millisecond, 5*time.Second, func() bool {
		s, err := l.rawPeerStatus(local)
		return err == nil && s.GetState() == "Established"
	}); !ok {
		p.Close()
		return nil, fmt.Errorf("podrouted does not report the session from %s Established", local)
	}
	return p, nil
}

// logLines counts the lines of podrouted's log that contain every one of
// parts.
func (l *hostileLab) logLines(parts ...string) int {
	b, _ := os.ReadFile(l.logPath)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

// counts renders a map of counts sorted by key.
func counts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+strconv.Itoa(m[k]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
