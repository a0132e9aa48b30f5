package e2e

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bird"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

// This file runs the routing-core lab of core_lab_test.go with BIRD 2 as
// the top-of-rack router instead of FRR, so that podrouted is tried
// against a second BGP implementation:
//
//	pod-a ── node-a ──┐                 ┌── node-b ── pod-b
//	 (AS 65001)       └── router (BIRD) ┘   (AS 65002)
//	                        AS 65000
//
// BIRD peers eBGP with each node over IPv4 and IPv6, is a graceful-restart
// helper (`graceful restart on`), and exports its best routes into its
// namespace's kernel (protocol "bird"), so that pod traffic between the
// nodes is routed through the ToR's namespace. As an eBGP speaker it
// re-advertises what one node sent to the other with itself as next hop.

// birdLab is the core lab with a BIRD router.
type birdLab struct {
	*coreLab
	bird *bird.Router
}

// birdNeighbors are the router's four sessions, in the order of
// allCorePeers: node a v4, node b v4, node a v6, node b v6.
var birdNeighbors = []bird.Neighbor{
	{Address: "172.31.1.2", ASN: 65001},
	{Address: "172.31.2.2", ASN: 65002},
	{Address: "fd00:31:1::2", ASN: 65001},
	{Address: "fd00:31:2::2", ASN: 65002},
}

// newBirdLab builds the lab with BIRD originating networks, and starts
// both nodes; started is when the nodes were started.
func newBirdLab(t *testing.T, networks ...string) (l *birdLab, started time.Time) {
	t.Helper()
	testenv.SkipUnlessLabMachine(t, false)
	testenv.SkipUnlessBIRD(t)
	bin, cli := podrouteBinaries(t)
	l = &birdLab{coreLab: &coreLab{t: t, c: testenv.NewCleanup(t), run: netns.NewRunID(), bin: bin, cli: cli}}
	dir, err := os.MkdirTemp("", l.run+"-")
	must(t, err)
	l.dir = dir
	l.c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })

	l.router = testenv.CreateNetns(t, l.c, l.run+"-r")
	l.a = l.addNode("a", 1, 0, nil)
	l.b = l.addNode("b", 2, 0, nil)
	neighbors := slices.Clone(birdNeighbors)
	for i := range neighbors {
		neighbors[i].Hold, neighbors[i].Keepalive, neighbors[i].GracefulRestart = 3, 1, true
	}
	l.bird = testenv.StartBIRD(t, l.c, l.router, bird.RouterSpec{
		RouterID: "172.31.0.1", ASN: 65000, Neighbors: neighbors, Networks: networks,
		ExportToKernel: true, Debug: true,
	})
	started = time.Now()
	l.a.start(l.coreLab)
	l.b.start(l.coreLab)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []*coreNode{l.a, l.b} {
				if b, err := os.ReadFile(n.logPath); err == nil {
					t.Logf("podrouted %s log (tail):\n%s", n.name, tail(string(b), 40))
				}
			}
		}
	})
	return l, started
}

// birdEstablished is nil once BIRD has every session to peers
// Established.
func (l *birdLab) birdEstablished(peers ...string) error {
	protos, err := l.bird.Protocols()
	if err != nil {
		return err
	}
	for _, p := range peers {
		if st := protos[bird.ProtocolName(p)]; st.BGPState != "Established" {
			return fmt.Errorf("session to %s is %q (last error %q)", p, st.BGPState, st.LastError)
		}
	}
	return nil
}

// birdHasRoute is nil once BIRD's best route for prefix came from the
// session to peer, with the peer as its next hop and peerAS as its AS path.
func (l *birdLab) birdHasRoute(family, prefix, peer, peerAS string) error {
	rib, err := l.bird.RIB(family)
	if err != nil {
		return err
	}
	rs := rib[prefix]
	if len(rs) == 0 {
		return fmt.Errorf("BIRD's %s table has no %s", family, prefix)
	}
	best := rs[0]
	if !best.Primary || best.Protocol != bird.ProtocolName(peer) || len(best.NextHops) != 1 ||
		best.NextHops[0].Via != peer || best.Attrs["BGP.as_path"] != peerAS {
		return fmt.Errorf("BIRD's best route for %s: %+v, want one from %s via %s, AS path %s", prefix, best, bird.ProtocolName(peer), peer, peerAS)
	}
	return nil
}

// kernelHas is nil once ns's kernel routes dst with protocol proto via
// exactly gateway gw.
func kernelHas(ns *netns.Namespace, family, dst, proto, gw string) error {
	routes, err := ns.KernelRoutes(family)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == dst && r.Protocol == proto {
			if r.Gateway != gw {
				return fmt.Errorf("%s: %s via %q (%+v), want via %s", ns.Name, dst, r.Gateway, r, gw)
			}
			return nil
		}
	}
	return fmt.Errorf("%s: no %s route %s in the kernel", ns.Name, proto, dst)
}

func TestBIRDToRRoutesBothWaysAndPodPing(t *testing.T) {
	// 10.244.50.0/24 is originated by BIRD itself: inside the pool,
	// nobody's own, so both nodes take it.
	l, started := newBirdLab(t, "10.244.50.0/24", "fd00:244:0:50::/64")
	since := func() time.Duration { return time.Since(started) }
	const poll = 50 * time.Millisecond

	testutil.EventuallyEvery(t, poll, 40*time.Second, "BIRD's sessions Established", func() error {
		return l.birdEstablished(allCorePeers...)
	})
	established := since()

	// Node -> BIRD: each node's pod CIDRs in BIRD's table, from that node.
	testutil.EventuallyEvery(t, poll, 20*time.Second, "pod CIDRs in BIRD's table", func() error {
		return errors.Join(
			l.birdHasRoute("ipv4", "10.244.1.0/24", "172.31.1.2", "65001"),
			l.birdHasRoute("ipv4", "10.244.2.0/24", "172.31.2.2", "65002"),
			l.birdHasRoute("ipv6", "fd00:244:0:1::/64", "fd00:31:1::2", "65001"),
			l.birdHasRoute("ipv6", "fd00:244:0:2::/64", "fd00:31:2::2", "65002"))
	})
	inBIRD := since()
	// BIRD -> its kernel: the ToR namespace forwards between the nodes.
	testutil.EventuallyEvery(t, poll, 10*time.Second, "pod CIDRs in the ToR's kernel", func() error {
		return errors.Join(
			kernelHas(l.router, "ipv4", "10.244.1.0/24", "bird", "172.31.1.2"),
			kernelHas(l.router, "ipv4", "10.244.2.0/24", "bird", "172.31.2.2"),
			kernelHas(l.router, "ipv6", "fd00:244:0:1::/64", "bird", "fd00:31:1::2"),
			kernelHas(l.router, "ipv6", "fd00:244:0:2::/64", "bird", "fd00:31:2::2"))
	})
	inToRKernel := since()
	// BIRD -> the other node: re-advertised with BIRD as next hop, and
	// BIRD's own networks, in each node's kernel.
	proto := fmt.Sprint(coreProto)
	testutil.EventuallyEvery(t, poll, 20*time.Second, "each node has the other's pod CIDRs via the ToR", func() error {
		return errors.Join(
			kernelHas(l.a.ns, "ipv4", "10.244.2.0/24", proto, "172.31.1.1"),
			kernelHas(l.b.ns, "ipv4", "10.244.1.0/24", proto, "172.31.2.1"),
			kernelHas(l.a.ns, "ipv6", "fd00:244:0:2::/64", proto, "fd00:31:1::1"),
			kernelHas(l.b.ns, "ipv6", "fd00:244:0:1::/64", proto, "fd00:31:2::1"))
	})
	inNodes := since()
	testutil.EventuallyEvery(t, poll, 10*time.Second, "BIRD's own networks in both nodes' kernels", func() error {
		return errors.Join(
			kernelHas(l.a.ns, "ipv4", "10.244.50.0/24", proto, "172.31.1.1"),
			kernelHas(l.b.ns, "ipv4", "10.244.50.0/24", proto, "172.31.2.1"),
			kernelHas(l.a.ns, "ipv6", "fd00:244:0:50::/64", proto, "fd00:31:1::1"),
			kernelHas(l.b.ns, "ipv6", "fd00:244:0:50::/64", proto, "fd00:31:2::1"))
	})
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d-established)/1e6) }
	t.Logf("BIRD %s as ToR: 4 sessions (2 nodes x v4+v6) Established %v after podrouted started; from then on, each checked once the one before held (polled every %v): "+
		"both nodes' pod CIDRs in BIRD's table after %s, in the ToR's kernel after %s, each node's CIDRs in the other node's kernel via the ToR after %s",
		birdVersion(l.bird), established.Round(time.Millisecond), poll, ms(inBIRD), ms(inToRKernel), ms(inNodes))

	// What BIRD says it sent: each node's session exported the other
	// node's CIDR and BIRD's own network, per family.
	protos, err := l.bird.Protocols()
	must(t, err)
	for i, n := range birdNeighbors {
		fam := "ipv4"
		if i >= 2 {
			fam = "ipv6"
		}
		ch := protos[bird.ProtocolName(n.Address)].Channels[fam]
		if ch.Imported != 1 || ch.Exported != 2 {
			t.Errorf("BIRD's session to %s (%s): %d imported, %d exported; want 1 and 2 (the other node's CIDR and BIRD's own)",
				n.Address, fam, ch.Imported, ch.Exported)
		}
	}
	// And the nodes agree, in podroute's own words.
	out, err := l.a.cli(l.coreLab, "status")
	must(t, err)
	for _, peer := range []string{"172.31.1.1", "fd00:31:1::1"} {
		if !regexp.MustCompile(regexp.QuoteMeta(peer) + `\s.*Established`).MatchString(out) {
			t.Errorf("podroute status on node a does not show %s Established:\n%s", peer, out)
		}
	}
	out, err = l.a.cli(l.coreLab, "routes")
	if err != nil || !regexp.MustCompile(`10\.244\.2\.0/24\s+172\.31\.1\.1\s.*yes`).MatchString(out) {
		t.Errorf("podroute routes on node a lacks 10.244.2.0/24 via the ToR in the kernel: %v\n%s", err, out)
	}

	// Pod to pod, both ways, both families, through the ToR's namespace.
	for _, c := range []struct {
		from *coreNode
		dst  string
	}{{l.a, l.b.podAddr}, {l.a, l.b.podAddr6}, {l.b, l.a.podAddr}, {l.b, l.a.podAddr6}} {
		sent, got, out, err := ping(c.from.pod, c.dst, 5, 100*time.Millisecond)
		if err != nil || got != sent {
			t.Fatalf("pod %s -> %s: %d/%d: %v\n%s", c.from.name, c.dst, got, sent, err, out)
		}
		t.Logf("BIRD ToR: pod %s -> %s: %d/%d pings answered", c.from.name, c.dst, got, sent)
	}
}

// birdVersion is "2.0.12" or so, for the figures.
func birdVersion(r *bird.Router) string {
	reply, err := r.Command("show", "status")
	if err != nil {
		return "?"
	}
	for _, l := range reply {
		if v, ok := strings.CutPrefix(l.Text, "BIRD "); ok && l.Code == 1000 {
			return v
		}
	}
	return "?"
}
