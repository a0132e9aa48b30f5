package netns_test

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/testenv"
)

func TestHarnessNetns(t *testing.T) {
	testenv.SkipUnlessLabMachine(t, false)
	c := testenv.NewCleanup(t)
	ns := testenv.CreateNetns(t, c, netns.NewRunID()+"-n")

	for _, s := range netns.RouterSysctls {
		out, err := ns.Exec(context.Background(), "sysctl", "-n", s.Key)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(out)); got != s.Value {
			t.Errorf("in %s: %s = %s, want %s", ns.Name, s.Key, got, s.Value)
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

	if _, err := netns.Create(ns.Name); err == nil {
		t.Errorf("Create(%q) on an existing name succeeded", ns.Name)
	}
	if !ns.Exists() {
		t.Fatalf("a failed Create deleted the existing namespace %s", ns.Name)
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
	testenv.SkipUnlessLabMachine(t, false)
	before := rootLinks(t)
	c := testenv.NewCleanup(t)
	run := netns.NewRunID()
	a := testenv.CreateNetns(t, c, run+"-a")
	b := testenv.CreateNetns(t, c, run+"-b")

	if err := netns.Veth(a, "to-b", b, "to-a", 9000); err != nil {
		t.Fatal(err)
	}
	for _, end := range []struct {
		ns   *netns.Namespace
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
	if err := netns.Veth(a, "to-b2", b, "to-a", 1500); err == nil {
		t.Errorf("Veth with a peer name already used in %s succeeded", b.Name)
	}
	if _, err := a.IP("link", "show", "to-b2"); err == nil {
		t.Errorf("failed Veth left to-b2 in %s", a.Name)
	}
	if err := netns.Veth(a, "much-too-long-name", b, "x", 1500); err == nil {
		t.Errorf("Veth accepted an interface name over %d bytes", netns.MaxIfNameLen)
	}

	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	if after := rootLinks(t); !slices.Equal(before, after) {
		t.Errorf("root namespace links changed:\nbefore %v\nafter  %v", before, after)
	}
	if left, _ := netns.List(run); len(left) != 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
}
