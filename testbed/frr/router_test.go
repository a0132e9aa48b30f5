package frr_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

func TestHarnessTwoFRRRoutersPeer(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, true)
	c := testenv.NewCleanup(t)
	run := netns.NewRunID()
	r1 := testenv.CreateNetns(t, c, run+"-r1")
	r2 := testenv.CreateNetns(t, c, run+"-r2")
	if err := netns.Veth(r1, "to-r2", r2, "to-r1", 1500); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns   *netns.Namespace
		dev  string
		cidr string
	}{
		{r1, "to-r2", "10.0.12.1/24"}, {r1, "to-r2", "2001:db8:12::1/64"},
		{r2, "to-r1", "10.0.12.2/24"}, {r2, "to-r1", "2001:db8:12::2/64"},
	} {
		if err := a.ns.AddAddr(a.dev, a.cidr); err != nil {
			t.Fatal(err)
		}
	}

	spec := func(name string, asn, peerASN uint32, id, peer4, peer6, net4, net6 string) frr.RouterSpec {
		return frr.RouterSpec{
			Name: name, ASN: asn, RouterID: id,
			Neighbors: []frr.Neighbor{
				{Address: peer4, ASN: peerASN, Keepalive: 1, Hold: 3},
				{Address: peer6, ASN: peerASN, Keepalive: 1, Hold: 3},
			},
			Networks: []string{net4, net6},
		}
	}
	f1 := testenv.StartFRR(t, c, r1, spec("r1", 65001, 65002, "10.0.12.1", "10.0.12.2", "2001:db8:12::2", "10.1.0.0/24", "2001:db8:1::/64"))
	f2 := testenv.StartFRR(t, c, r2, spec("r2", 65002, 65001, "10.0.12.2", "10.0.12.1", "2001:db8:12::1", "10.2.0.0/24", "2001:db8:2::/64"))

	established := func(f *frr.Router, peers ...string) func() error {
		return func() error {
			nbrs, err := f.BGPNeighbors()
			if err != nil {
				return err
			}
			for _, p := range peers {
				if nbrs[p].State != "Established" {
					return fmt.Errorf("%s: peer %s is %q", f.Name, p, nbrs[p].State)
				}
			}
			return nil
		}
	}
	testutil.Eventually(t, 30*time.Second, "r1 sessions Established", established(f1, "10.0.12.2", "2001:db8:12::2"))
	testutil.Eventually(t, 30*time.Second, "r2 sessions Established", established(f2, "10.0.12.1", "2001:db8:12::1"))

	hasPath := func(f *frr.Router, family, prefix, nexthop string) func() error {
		return func() error {
			rib, err := f.RIB(family)
			if err != nil {
				return err
			}
			if !slices.Contains(rib[prefix], nexthop) {
				return fmt.Errorf("%s %s RIB: %s has next hops %v, want %s (RIB %v)", f.Name, family, prefix, rib[prefix], nexthop, rib)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, "r1 learned r2's v4 prefix", hasPath(f1, "ipv4", "10.2.0.0/24", "10.0.12.2"))
	testutil.Eventually(t, 10*time.Second, "r1 learned r2's v6 prefix", hasPath(f1, "ipv6", "2001:db8:2::/64", "2001:db8:12::2"))
	testutil.Eventually(t, 10*time.Second, "r2 learned r1's v4 prefix", hasPath(f2, "ipv4", "10.1.0.0/24", "10.0.12.1"))
	testutil.Eventually(t, 10*time.Second, "r2 learned r1's v6 prefix", hasPath(f2, "ipv6", "2001:db8:1::/64", "2001:db8:12::1"))
	nbrs, err := f1.BGPNeighbors()
	if err != nil {
		t.Fatal(err)
	}
	if got := nbrs["10.0.12.2"]; got.RemoteAS != 65002 || got.PrefixesByFamily["ipv4Unicast"] != 1 || got.PrefixesReceived != 1 {
		t.Errorf("r1's view of 10.0.12.2 = %+v, want AS 65002 and 1 IPv4 prefix", got)
	}

	inKernel := func(ns *netns.Namespace, family, dst, dev string) func() error {
		return func() error {
			routes, err := ns.KernelRoutes(family)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Dst == dst && r.Protocol == "bgp" && r.Dev == dev {
					return nil
				}
			}
			return fmt.Errorf("%s kernel has no bgp route %s dev %s: %+v", ns.Name, dst, dev, routes)
		}
	}
	testutil.Eventually(t, 10*time.Second, "zebra installed r2's v4 prefix in r1's kernel", inKernel(r1, "ipv4", "10.2.0.0/24", "to-r2"))
	testutil.Eventually(t, 10*time.Second, "zebra installed r2's v6 prefix in r1's kernel", inKernel(r1, "ipv6", "2001:db8:2::/64", "to-r2"))
	if routes, err := f1.Routes("ipv4"); err != nil || len(routes["10.2.0.0/24"]) == 0 || !routes["10.2.0.0/24"][0].Installed {
		t.Errorf("zebra's RIB in r1 does not show 10.2.0.0/24 installed: %v %v", routes["10.2.0.0/24"], err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for _, dst := range []string{"10.0.12.2", "2001:db8:12::2"} {
		if _, err := r1.Exec(ctx, "ping", "-c", "1", "-W", "3", dst); err != nil {
			t.Errorf("ping from r1: %v", err)
		}
	}

	// Crash and restart r2: new daemons, a fresh session, the route comes back.
	oldPIDs := f2.PIDs()
	if len(oldPIDs) != 2 {
		t.Fatalf("r2 PIDs = %v, want zebra and bgpd", oldPIDs)
	}
	// First a bgpd crash (SIGKILL): zebra must survive it.
	if err := f2.StopDaemon("bgpd", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if pids := f2.PIDs(); !testenv.ProcessGone(oldPIDs["bgpd"], run) || pids["zebra"] != oldPIDs["zebra"] || pids["bgpd"] != 0 {
		t.Fatalf("after killing bgpd: PIDs %v (before %v), want only the same zebra", pids, oldPIDs)
	}
	if err := f2.Restart(); err != nil {
		t.Fatal(err)
	}
	for daemon, pid := range oldPIDs {
		if !testenv.ProcessGone(pid, run) {
			t.Errorf("old r2 %s (pid %d) survived Restart", daemon, pid)
		}
	}
	testutil.Eventually(t, 30*time.Second, "r1 sessions re-Established after r2 restart", func() error {
		if err := established(f1, "10.0.12.2", "2001:db8:12::2")(); err != nil {
			return err
		}
		nbrs, err := f1.BGPNeighbors()
		if err != nil {
			return err
		}
		if n := nbrs["10.0.12.2"].TimesEstablished; n < 2 {
			return fmt.Errorf("session to 10.0.12.2 established %d times, want a new session", n)
		}
		return nil
	})
	testutil.Eventually(t, 10*time.Second, "r2's v4 prefix back in r1's kernel", inKernel(r1, "ipv4", "10.2.0.0/24", "to-r2"))

	// Teardown, explicitly, so its result can be checked.
	pids := map[string]int{}
	for _, f := range []*frr.Router{f1, f2} {
		for daemon, pid := range f.PIDs() {
			pids[f.Name+"/"+daemon] = pid
		}
	}
	if len(pids) != 4 {
		t.Fatalf("running FRR daemons = %v, want 4", pids)
	}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if left, err := netns.List(run); err != nil || len(left) != 0 {
		t.Errorf("namespaces left behind: %v %v", left, err)
	}
	for name, pid := range pids {
		if !testenv.ProcessGone(pid, run) {
			t.Errorf("%s (pid %d) still running after teardown", name, pid)
		}
	}
	for _, f := range []*frr.Router{f1, f2} {
		if _, err := os.Stat(f.RunDir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("FRR run dir %s left behind (%v)", f.RunDir(), err)
		}
	}
}
