package testbed

import (
	"os"
	"os/exec"
	"testing"

	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
)

// newCleanupForTest returns a Cleanup that runs when the test ends, on every
// exit path (t.Fatal, a panic in the test); a failing teardown step fails the
// test.
func newCleanupForTest(t testing.TB) *netns.Cleanup {
	t.Helper()
	c := &netns.Cleanup{}
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
	for _, bin := range []string{frr.DaemonDir + "/bgpd", frr.DaemonDir + "/zebra"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("skipping: needs FRR (apt-get install frr): %v", err)
		}
	}
	if _, err := exec.LookPath("vtysh"); err != nil {
		t.Skipf("skipping: needs vtysh from the frr package: %v", err)
	}
}

func createTestNetns(t *testing.T, c *netns.Cleanup, name string) *netns.Namespace {
	t.Helper()
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("namespace "+name, ns.Delete)
	return ns
}

func startTestFRR(t *testing.T, c *netns.Cleanup, ns *netns.Namespace, spec frr.RouterSpec) *frr.Router {
	t.Helper()
	// Not t.TempDir(): its parents are 0700 and FRR runs as user frr.
	dir, err := os.MkdirTemp("", ns.Name+"-frr-")
	if err != nil {
		t.Fatal(err)
	}
	c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })
	f, err := frr.Start(ns, dir, frr.Config(spec))
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
