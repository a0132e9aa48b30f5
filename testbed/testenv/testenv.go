package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/podroute/podroute/testbed/bird"
	"github.com/podroute/podroute/testbed/frr"
	"github.com/podroute/podroute/testbed/netns"
)

// NewCleanup returns a Cleanup that runs when the test ends, on every
// exit path (t.Fatal, a panic in the test); a failing teardown step fails the
// test.
func NewCleanup(t testing.TB) *netns.Cleanup {
	t.Helper()
	c := &netns.Cleanup{}
	t.Cleanup(func() {
		if err := c.Run(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	return c
}

// SkipUnlessLabMachine skips tests that need root (namespaces) and, with
// needFRR, Debian's FRR.
func SkipUnlessLabMachine(t *testing.T, needFRR bool) {
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

// CreateNetns creates namespace name (netns.Create) and deletes it with c.
func CreateNetns(t *testing.T, c *netns.Cleanup, name string) *netns.Namespace {
	t.Helper()
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("namespace "+name, ns.Delete)
	return ns
}

// StartFRR starts an FRR router for spec in ns, in a directory of its own,
// and stops it with c; when the test has failed, it logs the end of the
// router's logs first.
func StartFRR(t *testing.T, c *netns.Cleanup, ns *netns.Namespace, spec frr.RouterSpec) *frr.Router {
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
	// Registered after NewCleanup's, so it runs before the teardown.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("frr %s:\n%s\n%s", f.Name, f.LogTail("zebra", 30), f.LogTail("bgpd", 30))
		}
	})
	return f
}

// SkipUnlessBIRD skips tests that need Debian's BIRD 2 (bird and birdc
// from the bird2 package; `make deps` installs it).
func SkipUnlessBIRD(t testing.TB) {
	t.Helper()
	for _, bin := range []string{bird.Binary, bird.Birdc} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("skipping: needs BIRD 2 (apt-get install bird2): %v", err)
		}
	}
}

// StartBIRD starts a BIRD router for spec in ns, in a directory of its
// own, and stops it with c; when the test has failed, it logs the end of
// the router's log first.
func StartBIRD(t testing.TB, c *netns.Cleanup, ns *netns.Namespace, spec bird.RouterSpec) *bird.Router {
	t.Helper()
	conf, err := bird.Config(spec)
	if err != nil {
		t.Fatal(err)
	}
	return StartBIRDConfig(t, c, ns, conf)
}

// StartBIRDConfig is StartBIRD with a bird.conf written by hand.
func StartBIRDConfig(t testing.TB, c *netns.Cleanup, ns *netns.Namespace, conf string) *bird.Router {
	t.Helper()
	dir, err := os.MkdirTemp("", ns.Name+"-bird-")
	if err != nil {
		t.Fatal(err)
	}
	c.Add("remove "+dir, func() error { return os.RemoveAll(dir) })
	r, err := bird.Start(ns, dir, conf)
	if err != nil {
		t.Fatal(err)
	}
	c.Add("bird "+ns.Name, r.Stop)
	// Registered after NewCleanup's, so it runs before the teardown.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s", r.LogTail(30))
		}
	})
	return r
}

// ProcessGone reports whether pid has exited (or is a zombie awaiting PID 1)
// or now belongs to something unrelated to this run.
func ProcessGone(pid int, run string) bool {
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
