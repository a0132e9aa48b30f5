package testbed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
)

// newCleanupForTest returns a Cleanup that runs when the test ends, on every
// exit path (t.Fatal, a panic in the test); a failing teardown step fails the
// test.
func newCleanupForTest(t testing.TB) *Cleanup {
	t.Helper()
	c := &Cleanup{}
	t.Cleanup(func() {
		if err := c.Run(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	return c
}

// skipUnlessLabMachine skips tests that need root (namespaces) and, with
// needFRR, Debian's FRR.
func skipUnlessLabMachine(t *testing.T, needFRR bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces")
	}
	if !needFRR {
		return
	}
	for _, bin := range []string{frrDaemonDir + "/bgpd", frrDaemonDir + "/zebra"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("skipping: needs FRR (apt-get install frr): %v", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skipf("skipping: needs vtysh from the frr package: %v", err)
	}
}

func createTestNetns(t *testing.T, c *Cleanup, name string) *Netns {
	t.Helper()
	ns, err := CreateNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("namespace "+name, ns.Delete)
	return ns
}

func startTestFRR(t *testing.T, c *Cleanup, ns *Netns, spec RouterSpec) *FRR {
	t.Helper()
	// Not t.TempDir(): its parents are 0700 and FRR runs as user frr.
	dir, err := os.MkdirTemp("", ns.Name+"-frr-")
	if err != nil {
		t.Fatal(err)
	}
	c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })
	f, err := StartFRR(ns, dir, FRRConfig(spec))
	if err != nil {
		t.Fatal(err)
	}
	c.Add("frr "+ns.Name, f.Stop)
	// Registered after newCleanupForTest's, so it runs before the teardown.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("frr %s:\n%s\n%s", f.Name, f.LogTail("zebra", 30), f.LogTail("bgpd", 30))
		}
	})
	return f
}

func TestHarnessRunID(t *testing.T) {
	valid := regexp.MustCompile(`^pr[0-9a-f]{6}$`)
	seen := map[string]bool{}
	for range 20 {
		id := NewRunID()
		if !valid.MatchString(id) {
			t.Fatalf("NewRunID() = %q, want %s", id, valid)
		}
		if seen[id] {
			t.Fatalf("NewRunID() repeated %q", id)
		}
		seen[id] = true
	}
	if name := NewRunID() + "-r1xxx"; len(name) > MaxIfNameLen {
		t.Errorf("%q is %d bytes, over the documented budget of %d", name, len(name), MaxIfNameLen)
	}
}

func TestHarnessCleanupRunsLIFOAndOnlyOnce(t *testing.T) {
	var c Cleanup
	var order []string
	step := func(name string, err error) func() error {
		return func() error { order = append(order, name); return err }
	}
	c.Add("first", step("first", nil))
	c.Add("second", step("second", errors.New("boom")))
	c.Add("third", func() error { order = append(order, "third"); panic("oops") })

	err := c.Run()
	if want := []string{"third", "second", "first"}; !slices.Equal(order, want) {
		t.Errorf("order = %v, want %v", order, want)
	}
	if err == nil || !strings.Contains(err.Error(), "cleanup second: boom") || !strings.Contains(err.Error(), "cleanup third: panic: oops") {
		t.Errorf("Run() error = %v, want both the error and the panic named", err)
	}
	if err := c.Run(); err != nil || len(order) != 3 {
		t.Errorf("second Run() = %v and ran %d steps in total, want nil and 3", err, len(order))
	}
}

func TestHarnessFRRConfig(t *testing.T) {
	conf := FRRConfig(RouterSpec{
		Name: "r1", ASN: 65001, RouterID: "10.0.0.1",
		Neighbors: []FRRNeighbor{
			{Address: "10.0.12.2", ASN: 65002, Password: "s3cret", Keepalive: 1},
			{Address: "2001:db8:12::2", ASN: 65002, Hold: 9, Multihop: 2},
		},
		Networks:        []string{"10.1.0.0/24", "2001:db8:1::/64"},
		GracefulRestart: true,
		Extra:           "router bgp 65001\n neighbor 10.0.12.2 timers connect 1\n",
	})
	for _, want := range []string{
		"frr defaults datacenter\nhostname r1\n",
		"router bgp 65001\n bgp router-id 10.0.0.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n bgp graceful-restart\n",
		" neighbor 10.0.12.2 remote-as 65002\n neighbor 10.0.12.2 password s3cret\n neighbor 10.0.12.2 timers 1 3\n",
		" neighbor 2001:db8:12::2 remote-as 65002\n neighbor 2001:db8:12::2 timers 3 9\n neighbor 2001:db8:12::2 ebgp-multihop 2\n",
		" address-family ipv4 unicast\n  network 10.1.0.0/24\n  neighbor 10.0.12.2 activate\n  no neighbor 2001:db8:12::2 activate\n exit-address-family\n",
		" address-family ipv6 unicast\n  network 2001:db8:1::/64\n  neighbor 2001:db8:12::2 activate\n exit-address-family\n",
		"exit\n!\nrouter bgp 65001\n neighbor 10.0.12.2 timers connect 1\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks\n%s\ngot:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "neighbor 10.0.12.2 activate\n exit-address-family\n exit") ||
		strings.Count(conf, "neighbor 10.0.12.2 activate") != 1 {
		t.Errorf("IPv4 neighbour must be activated only for IPv4 unicast:\n%s", conf)
	}
}

func TestHarnessNetns(t *testing.T) {
	skipUnlessLabMachine(t, false)
	c := newCleanupForTest(t)
	ns := createTestNetns(t, c, NewRunID()+"-n")

	for _, s := range routerSysctls {
		out, err := ns.Exec(context.Background(), "sysctl", "-n", s.key)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != s.value {
			t.Errorf("in %s: %s = %s, want %s", ns.Name, s.key, got, s.value)
		}
	}
	if out, err := ns.IP("-o", "link", "show", "lo"); err != nil || !strings.Contains(string(out), "UP") {
		t.Errorf("lo in %s is not up: %s %v", ns.Name, out, err)
	}

	// Do must really switch: a link made inside is visible only there. (A
	// veth pair, not a dummy: this kernel may lack the dummy module.)
	err := ns.Do(func() error {
		return exec.Command("ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1").Run()
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ns.IP("link", "show", "probe0"); err != nil {
		t.Errorf("link made inside Do is not in %s: %v", ns.Name, err)
	}
	if exec.Command("ip", "link", "show", "probe0").Run() == nil {
		t.Errorf("link made inside Do showed up in the root namespace")
	}

	if _, err := CreateNetns(ns.Name); err == nil {
		t.Errorf("CreateNetns(%q) on an existing name succeeded", ns.Name)
	}
	if !ns.Exists() {
		t.Fatalf("a failed CreateNetns deleted the existing namespace %s", ns.Name)
	}
	if err := errors.Join(ns.Delete(), ns.Delete()); err != nil {
		t.Errorf("Delete twice: %v", err)
	}
	if ns.Exists() {
		t.Errorf("%s still exists after Delete", ns.Name)
	}
}

// rootLinks lists the root namespace's links as "index: name" (read-only).
func rootLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var links []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 {
			links = append(links, fields[0]+" "+fields[1])
		}
	}
	return links
}

func TestHarnessVethLeavesRootNamespaceUntouched(t *testing.T) {
	skipUnlessLabMachine(t, false)
	before := rootLinks(t)
	c := newCleanupForTest(t)
	run := NewRunID()
	a := createTestNetns(t, c, run+"-a")
	b := createTestNetns(t, c, run+"-b")

	if err := Veth(a, "to-b", b, "to-a", 9000); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct {
		ns   *Netns
		name string
	}{{a, "to-b"}, {b, "to-a"}} {
		out, err := end.ns.IP("-o", "link", "show", end.name)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(out); !strings.Contains(s, "mtu 9000") || !strings.Contains(s, ",UP") {
			t.Errorf("%s in %s: want mtu 9000 and UP, got %s", end.name, end.ns.Name, s)
		}
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed by Veth:\nbefore %v\nafter  %v", before, after)
	}

	// A failing Veth (peer name taken in b) leaves nothing behind anywhere.
	if err := Veth(a, "to-b2", b, "to-a", 1500); err == nil {
		t.Errorf("Veth with a peer name already used in %s succeeded", b.Name)
	}
	if _, err := a.IP("link", "show", "to-b2"); err == nil {
		t.Errorf("failed Veth left to-b2 in %s", a.Name)
	}
	if err := Veth(a, "much-too-long-name", b, "x", 1500); err == nil {
		t.Errorf("Veth accepted an interface name over %d bytes", MaxIfNameLen)
	}

	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", before, after)
	}
	if left, _ := ListNetns(run); len(left) != 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}

func TestHarnessProcessStopEscalatesToKill(t *testing.T) {
	skipUnlessLabMachine(t, false)
	c := newCleanupForTest(t)
	ns := createTestNetns(t, c, NewRunID()+"-p")
	// probe0 on a bridge: visible to the process only if it runs in ns, and
	// exercises AddBridge and Attach on the way.
	if _, err := ns.IP("link", "add", "probe0", "type", "veth", "peer", "name", "probe1"); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(ns.AddBridge("br0"), ns.Attach("probe0", "br0")); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.IP("-o", "link", "show", "probe0"); err != nil || !strings.Contains(string(out), "master br0") {
		t.Errorf("probe0 not attached to br0: %s %v", out, err)
	}
	logPath := t.TempDir() + "/proc.log"
	// Ignored signals stay ignored across exec, so sleep ignores SIGTERM.
	p, err := StartProcess(ns, "stubborn", logPath, "sh", "-c", `ip -o link show; trap "" TERM; echo ready; exec sleep 300`)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("process", p.Kill)

	testutil.Eventually(t, 5*time.Second, "process logged ready", func() error {
		data, _ := os.ReadFile(logPath)
		if !strings.Contains(string(data), "ready") {
			return fmt.Errorf("log so far: %q", data)
		}
		return nil
	})
	if data, _ := os.ReadFile(logPath); !strings.Contains(string(data), "probe0") {
		t.Errorf("process did not run inside %s (no probe0 in its view): %s", ns.Name, data)
	}

	start := time.Now()
	if err := p.Stop(syscall.SIGTERM, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Errorf("Stop returned after %v, before the SIGTERM grace period", elapsed)
	}
	if !p.Exited() {
		t.Fatal("process still running after Stop")
	}
	var exitErr *exec.ExitError
	if err := p.Wait(); !errors.As(err, &exitErr) || exitErr.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("exit = %v, want killed by SIGKILL", err)
	}
	if err := p.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// processGone reports whether pid has exited (or is a zombie awaiting PID 1)
// or now belongs to something unrelated to this run.
func processGone(pid int, run string) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// Field 3, after "(comm)", is the state.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
		return true
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return !strings.Contains(string(cmdline), run)
}

func TestHarnessTwoFRRRoutersPeer(t *testing.T) {
	skipUnlessLabMachine(t, true)
	c := newCleanupForTest(t)
	run := NewRunID()
	r1 := createTestNetns(t, c, run+"-r1")
	r2 := createTestNetns(t, c, run+"-r2")
	if err := Veth(r1, "to-r2", r2, "to-r1", 1500); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		ns   *Netns
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

	spec := func(name string, asn, peerASN uint32, id, peer4, peer6, net4, net6 string) RouterSpec {
		return RouterSpec{
			Name: name, ASN: asn, RouterID: id,
			Neighbors: []FRRNeighbor{
				{Address: peer4, ASN: peerASN, Keepalive: 1, Hold: 3},
				{Address: peer6, ASN: peerASN, Keepalive: 1, Hold: 3},
			},
			Networks: []string{net4, net6},
		}
	}
	f1 := startTestFRR(t, c, r1, spec("r1", 65001, 65002, "10.0.12.1", "10.0.12.2", "2001:db8:12::2", "10.1.0.0/24", "2001:db8:1::/64"))
	f2 := startTestFRR(t, c, r2, spec("r2", 65002, 65001, "10.0.12.2", "10.0.12.1", "2001:db8:12::1", "10.2.0.0/24", "2001:db8:2::/64"))

	established := func(f *FRR, peers ...string) func() error {
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

	hasPath := func(f *FRR, family, prefix, nexthop string) func() error {
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

	inKernel := func(ns *Netns, family, dst, dev string) func() error {
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
	if pids := f2.PIDs(); !processGone(oldPIDs["bgpd"], run) || pids["zebra"] != oldPIDs["zebra"] || pids["bgpd"] != 0 {
		t.Fatalf("after killing bgpd: PIDs %v (before %v), want only the same zebra", pids, oldPIDs)
	}
	if err := f2.Restart(); err != nil {
		t.Fatal(err)
	}
	for daemon, pid := range oldPIDs {
		if !processGone(pid, run) {
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
	for _, f := range []*FRR{f1, f2} {
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
	if left, err := ListNetns(run); err != nil || len(left) != 0 {
		t.Errorf("namespaces left behind: %v %v", left, err)
	}
	for name, pid := range pids {
		if !processGone(pid, run) {
			t.Errorf("%s (pid %d) still running after teardown", name, pid)
		}
	}
	for _, f := range []*FRR{f1, f2} {
		if _, err := os.Stat(f.RunDir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("FRR run dir %s left behind (%v)", f.RunDir(), err)
		}
	}
}
