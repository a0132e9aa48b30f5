package bird_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bird"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

func TestHarnessBIRDConfig(t *testing.T) {
	conf, err := bird.Config(bird.RouterSpec{
		RouterID: "10.0.0.1", ASN: 65001, ExportToKernel: true, Debug: true,
		Networks: []string{"10.1.0.0/24", "2001:db8:1::/64"},
		Neighbors: []bird.Neighbor{
			{Address: "10.0.12.2", ASN: 65002, Password: "s3cret", Keepalive: 1, GracefulRestart: true, LocalAddress: "10.0.12.1"},
			{Address: "2001:db8:12::2", ASN: 65002, Hold: 9, Passive: true, Multihop: 2, NextHopSelf: true, Export: "none", Name: "v6peer"},
		},
		Extra: "# end\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"log stderr all;\nrouter id 10.0.0.1;\ndebug protocols { states, events };\nprotocol device { }\n",
		"protocol kernel kernel4 {\n\tipv4 { import none; export all; };\n\tmerge paths on;\n}\n",
		"protocol kernel kernel6 {\n\tipv6 { import none; export all; };\n",
		"protocol static static4 {\n\tipv4;\n\troute 10.1.0.0/24 blackhole;\n}\n",
		"protocol static static6 {\n\tipv6;\n\troute 2001:db8:1::/64 blackhole;\n}\n",
		"protocol bgp n_10_0_12_2 {\n\tlocal 10.0.12.1 as 65001;\n\tneighbor 10.0.12.2 as 65002;\n\tpassword \"s3cret\";\n\thold time 3;\n\tkeepalive time 1;\n\tgraceful restart on;\n\tipv4 {\n\t\timport all;\n\t\texport all;\n\t};\n}\n",
		"protocol bgp v6peer {\n\tlocal as 65001;\n\tneighbor 2001:db8:12::2 as 65002;\n\tpassive on;\n\thold time 9;\n\tkeepalive time 3;\n\tmultihop 2;\n\tipv6 {\n\t\timport all;\n\t\texport none;\n\t\tnext hop self;\n\t};\n}\n",
		"# end\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks\n%s\ngot:\n%s", want, conf)
		}
	}
	if got := bird.ProtocolName("fd00:31:1::2"); got != "n_fd00_31_1__2" {
		t.Errorf("ProtocolName = %q", got)
	}
	for name, spec := range map[string]bird.RouterSpec{
		"bad router ID":     {RouterID: "2001:db8::1"},
		"bad network":       {RouterID: "10.0.0.1", Networks: []string{"10.1.0.0"}},
		"bad neighbour":     {RouterID: "10.0.0.1", Neighbors: []bird.Neighbor{{Address: "fe80::1%eth0"}}},
		"quote in password": {RouterID: "10.0.0.1", Neighbors: []bird.Neighbor{{Address: "10.0.0.2", Password: `a"b`}}},
		"bad name":          {RouterID: "10.0.0.1", Neighbors: []bird.Neighbor{{Address: "10.0.0.2", Name: "1x"}}},
		"same name twice":   {RouterID: "10.0.0.1", Neighbors: []bird.Neighbor{{Address: "10.0.0.2"}, {Address: "10.0.0.2"}}},
		"local of the other family": {RouterID: "10.0.0.1", Neighbors: []bird.Neighbor{
			{Address: "10.0.0.2", LocalAddress: "2001:db8::1"}}},
	} {
		if _, err := bird.Config(spec); err == nil {
			t.Errorf("%s: Config accepted it", name)
		}
	}
}

// TestHarnessTwoBIRDRoutersPeer peers two BIRDs over IPv4 (with TCP MD5)
// and IPv6, then crashes one: the other, a graceful-restart helper, must
// keep its routes and say so, until the restarted one sends them again.
func TestHarnessTwoBIRDRoutersPeer(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, false)
	testenv.SkipUnlessBIRD(t)
	c := testenv.NewCleanup(t)
	run := netns.NewRunID()
	x := testenv.CreateNetns(t, c, run+"-x")
	y := testenv.CreateNetns(t, c, run+"-y")
	if err := netns.Veth(x, "to-y", y, "to-x", 1500); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns   *netns.Namespace
		dev  string
		cidr string
	}{
		{x, "to-y", "10.0.12.1/24"}, {x, "to-y", "2001:db8:12::1/64"},
		{y, "to-x", "10.0.12.2/24"}, {y, "to-x", "2001:db8:12::2/64"},
	} {
		if err := a.ns.AddAddr(a.dev, a.cidr); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(asn, peerASN uint32, id, peer4, peer6 string, networks ...string) bird.RouterSpec {
		return bird.RouterSpec{RouterID: id, ASN: asn, ExportToKernel: true, Debug: true, Networks: networks,
			Neighbors: []bird.Neighbor{
				{Address: peer4, ASN: peerASN, Hold: 3, Keepalive: 1, GracefulRestart: true, Password: "s3cret"},
				{Address: peer6, ASN: peerASN, Hold: 3, Keepalive: 1, GracefulRestart: true},
			}}
	}
	bx := testenv.StartBIRD(t, c, x, spec(65001, 65002, "10.0.12.1", "10.0.12.2", "2001:db8:12::2", "10.1.0.0/24"))
	ySpec := spec(65002, 65001, "10.0.12.2", "10.0.12.1", "2001:db8:12::1", "10.2.0.0/24", "2001:db8:2::/64")
	by := testenv.StartBIRD(t, c, y, ySpec)
	y4, y6 := bird.ProtocolName("10.0.12.2"), bird.ProtocolName("2001:db8:12::2")

	established := func(r *bird.Router, names ...string) func() error {
		return func() error {
			protos, err := r.Protocols()
			if err != nil {
				return err
			}
			for _, n := range names {
				if p := protos[n]; p.BGPState != "Established" {
					return fmt.Errorf("%s: %s is %q (%s)", r.Name, n, p.BGPState, p.LastError)
				}
			}
			return nil
		}
	}
	// BIRD waits a few seconds (connect delay) before it first connects.
	took := testutil.Eventually(t, 30*time.Second, "x's sessions Established", established(bx, y4, y6))
	t.Logf("BIRD-BIRD sessions (one with TCP MD5) Established %v after start", took.Round(time.Millisecond))
	testutil.Eventually(t, 10*time.Second, "y's sessions Established", established(by, bird.ProtocolName("10.0.12.1"), bird.ProtocolName("2001:db8:12::1")))

	learned := func(family, prefix, proto, via string) func() error {
		return func() error {
			rib, err := bx.RIB(family)
			if err != nil {
				return err
			}
			rs := rib[prefix]
			if len(rs) == 0 || !rs[0].Primary || rs[0].Protocol != proto || len(rs[0].NextHops) != 1 || rs[0].NextHops[0].Via != via ||
				rs[0].Attrs["BGP.as_path"] != "65002" {
				return fmt.Errorf("x's %s: %+v, want one from %s via %s", prefix, rs, proto, via)
			}
			return nil
		}
	}
	testutil.Eventually(t, 10*time.Second, "x learned y's v4 prefix", learned("ipv4", "10.2.0.0/24", y4, "10.0.12.2"))
	testutil.Eventually(t, 10*time.Second, "x learned y's v6 prefix", learned("ipv6", "2001:db8:2::/64", y6, "2001:db8:12::2"))
	inKernel := func(prefix string) func() error {
		return func() error {
			fam := "ipv4"
			if strings.Contains(prefix, ":") {
				fam = "ipv6"
			}
			routes, err := x.KernelRoutes(fam)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Dst == prefix && r.Protocol == "bird" {
					return nil
				}
			}
			return fmt.Errorf("x's kernel has no bird route %s: %+v", prefix, routes)
		}
	}
	testutil.Eventually(t, 10*time.Second, "y's prefix in x's kernel", inKernel("10.2.0.0/24"))
	testutil.Eventually(t, 10*time.Second, "y's v6 prefix in x's kernel", inKernel("2001:db8:2::/64"))
	protos, err := bx.Protocols()
	if err != nil {
		t.Fatal(err)
	}
	if p := protos[y4]; p.NeighborAddress != "10.0.12.2" || p.NeighborAS != 65002 || p.Channels["ipv4"].Imported != 1 ||
		p.Channels["ipv4"].Exported != 1 || p.GracefulRestartActive {
		t.Errorf("x's protocol for y: %+v", p)
	}
	before, err := bx.Routes("protocol", y4)
	if err != nil || len(before) != 1 {
		t.Fatalf("x's routes from %s: %+v %v", y4, before, err)
	}

	// y crashes: x keeps y's routes, in its table and its kernel, and
	// says a graceful restart is in progress.
	yPid := by.Pid()
	if err := by.Kill(); err != nil {
		t.Fatal(err)
	}
	if !testenv.ProcessGone(yPid, run) || by.Pid() != 0 {
		t.Fatalf("y (pid %d) still running after Kill", yPid)
	}
	testutil.Eventually(t, 10*time.Second, "x sees y restarting", func() error {
		protos, err := bx.Protocols()
		if err != nil {
			return err
		}
		if p := protos[y4]; !p.GracefulRestartActive || p.BGPState == "Established" || p.Channels["ipv4"].NeighborGR == "" {
			return fmt.Errorf("x's protocol for y: %+v", p)
		}
		return nil
	})
	if err := learned("ipv4", "10.2.0.0/24", y4, "10.0.12.2")(); err != nil {
		t.Errorf("while y restarts: %v", err)
	}
	if err := inKernel("10.2.0.0/24")(); err != nil {
		t.Errorf("while y restarts: %v", err)
	}

	if err := by.Restart(); err != nil {
		t.Fatal(err)
	}
	if by.Pid() == 0 || by.Pid() == yPid {
		t.Errorf("after Restart: pid %d (was %d)", by.Pid(), yPid)
	}
	testutil.Eventually(t, 30*time.Second, "y is back and has sent its routes again", func() error {
		if err := established(bx, y4)(); err != nil {
			return err
		}
		protos, err := bx.Protocols()
		if err != nil {
			return err
		}
		p := protos[y4]
		if p.GracefulRestartActive {
			return errors.New("graceful restart still active")
		}
		// y came back without `bird -R` (graceful restart recovery), so
		// its OPEN has neither R nor F: x dropped the stale routes at
		// once and learned them anew.
		if gr := p.NeighborGRCapability; !gr.Advertised || gr.Restarting || len(gr.Preserved) != 0 || gr.RestartTime != 120 {
			return fmt.Errorf("y's graceful-restart capability as x sees it: %+v", gr)
		}
		after, err := bx.Routes("protocol", y4)
		if err != nil {
			return err
		}
		if len(after) != 1 || !sinceMoved(after[0].Since, before[0].Since) {
			return fmt.Errorf("routes from y: %+v (before: %+v)", after, before)
		}
		return nil
	})

	// A new network through Reconfigure, without resetting the session.
	protos, err = by.Protocols()
	if err != nil {
		t.Fatal(err)
	}
	since := protos[bird.ProtocolName("10.0.12.1")].Since
	ySpec.Networks = append(ySpec.Networks, "10.3.0.0/24")
	conf, err := bird.Config(ySpec)
	if err != nil {
		t.Fatal(err)
	}
	if err := by.Reconfigure(conf); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "x learned y's new prefix", learned("ipv4", "10.3.0.0/24", y4, "10.0.12.2"))
	if protos, err := by.Protocols(); err != nil || sinceMoved(protos[bird.ProtocolName("10.0.12.1")].Since, since) {
		t.Errorf("reconfigure reset the session: since %q, was %q (%v)", protos[bird.ProtocolName("10.0.12.1")].Since, since, err)
	}
	if _, err := bx.Command("show", "protocols", "no_such_protocol"); err == nil {
		t.Error("a BIRD syntax error is not an error")
	}

	// Teardown, explicitly, so its result can be checked.
	pids := []int{bx.Pid(), by.Pid()}
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if left, err := netns.List(run); err != nil || len(left) != 0 {
		t.Errorf("namespaces left behind: %v %v", left, err)
	}
	for _, pid := range pids {
		if !testenv.ProcessGone(pid, run) {
			t.Errorf("bird (pid %d) still running after teardown", pid)
		}
	}
	for _, r := range []*bird.Router{bx, by} {
		if _, err := os.Stat(r.Dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("bird dir %s left behind (%v)", r.Dir, err)
		}
	}
}

// sinceMoved says whether two of BIRD's "since" times name different
// moments. BIRD keeps them on its monotonic clock and turns them into wall
// time each time it shows them, reading both clocks anew, so the same
// moment can come out a millisecond apart from one `show` to the next; a
// real change (a session re-established, a route learned again) is many
// milliseconds later. Times it shows only to the second or as a date are
// compared as they are. The times of day carry no date, so two moments
// either side of midnight are compared across it.
func sinceMoved(a, b string) bool {
	ta, errA := time.Parse("15:04:05.000", a)
	tb, errB := time.Parse("15:04:05.000", b)
	if errA != nil || errB != nil {
		return a != b
	}
	d := ta.Sub(tb).Abs()
	return min(d, 24*time.Hour-d) > 10*time.Millisecond
}

func TestSinceMoved(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"00:32:25.125", "00:32:25.126", false}, // the same moment shown twice
		{"00:32:25.125", "00:32:25.125", false},
		{"00:32:25.125", "00:32:27.004", true},
		{"23:59:59.999", "00:00:00.000", false}, // across midnight
		{"23:59:58.000", "00:00:01.000", true},
		{"2026-11-30", "2026-11-30", false},
		{"2026-11-30", "00:32:25.125", true},
	} {
		if got := sinceMoved(c.a, c.b); got != c.want {
			t.Errorf("sinceMoved(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
