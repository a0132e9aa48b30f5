package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podroute/podroute/ipam"
)

// ipamStore makes a store with three pods: a and b have live namespaces
// (existing files stand in for them), c's namespace is gone.
func ipamStore(t *testing.T) (dir string) {
	t.Helper()
	dir = t.TempDir()
	cidrs, err := ipam.ParseCIDRs("podCIDRs", []string{"10.244.1.0/24", "fd00:244:0:1::/64"})
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-90 * time.Minute)
	s, err := ipam.Open(dir, cidrs, ipam.WithClock(func() time.Time { return since }))
	if err != nil {
		t.Fatal(err)
	}
	nsDir := t.TempDir()
	for _, c := range []string{"a", "b", "c"} {
		ns := filepath.Join(nsDir, c)
		if c != "c" {
			os.WriteFile(ns, nil, 0o600)
		}
		if _, err := s.Allocate(ipam.Request{Attachment: ipam.Attachment{ContainerID: "ctr-" + c, IfName: "eth0"}, Netns: ns}); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestIpamCommandShowsUsageAndAllocations(t *testing.T) {
	dir := ipamStore(t)
	out, err := runCLI(t, nil, "ipam", "--ipam-dir", dir)
	if err != nil {
		t.Fatalf("ipam: %v\n%s", err, out)
	}
	if f := strings.Fields(lineWith(t, out, "10.244.1.0/24")); len(f) != 4 || f[0] != "IPv4" || f[2] != "3" || f[3] != "254" {
		t.Errorf("IPv4 usage line = %q", f)
	}
	if f := strings.Fields(lineWith(t, out, "fd00:244:0:1::/64")); len(f) != 4 || f[0] != "IPv6" || f[2] != "3" || f[3] != "18446744073709551487" {
		t.Errorf("IPv6 usage line = %q", f)
	}
	f := strings.Fields(lineWith(t, out, "ctr-b"))
	if len(f) != 5 || f[1] != "eth0" || f[2] != "10.244.1.2,fd00:244:0:1::2" || !strings.HasPrefix(f[3], "1h30m") {
		t.Errorf("allocation line = %q", f)
	}

	out, err = runCLI(t, nil, "-o", "json", "ipam", "--ipam-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	var r ipamReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Allocations) != 3 || r.CIDRs[0].InUse != 3 || r.CIDRs[1].Capacity != "18446744073709551487" {
		t.Errorf("JSON: %v\n%s", err, out)
	}
}

func TestIpamCheckFindsLeaksAndConflicts(t *testing.T) {
	dir := ipamStore(t)
	out, err := runCLI(t, nil, "ipam", "check", "--ipam-dir", dir)
	if err == nil || !strings.Contains(err.Error(), "1 problem(s)") {
		t.Fatalf("check with a leaked pod: err = %v\n%s", err, out)
	}
	if f := strings.Fields(lineWith(t, out, "ctr-c/eth0")); f[0] != "leaked" || !strings.Contains(out, "no longer exists") {
		t.Errorf("leak line = %q\n%s", f, out)
	}
	if strings.Contains(out, "ctr-a") {
		t.Errorf("a live pod is reported:\n%s", out)
	}

	// Hand-made conflicts: an address held twice, and a pod CIDR that
	// changed under the pods.
	st, err := ipam.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.Allocations[2].Netns = st.Allocations[0].Netns
	st.Allocations[2].Addrs[0] = st.Allocations[1].Addrs[0]
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(dir, "allocations.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(t, nil, "ipam", "check", "--ipam-dir", dir, "--pod-cidr", "10.244.2.0/24,fd00:244:0:1::/64")
	if err == nil || !strings.Contains(err.Error(), "4 problem(s)") {
		t.Fatalf("check: err = %v\n%s", err, out)
	}
	for _, want := range [][]string{
		{"duplicate", "ctr-b/eth0,ctr-c/eth0", "10.244.1.2 is held by 2 attachments"},
		{"outside-cidr", "ctr-a/eth0", "10.244.1.1 is outside the current pod CIDRs [10.244.2.0/24 fd00:244:0:1::/64]"},
	} {
		line := lineWith(t, out, want[2])
		if f := strings.Fields(line); f[0] != want[0] || f[1] != want[1] {
			t.Errorf("line %q: want %s for %s", line, want[0], want[1])
		}
	}
}

func TestIpamCheckCleanStore(t *testing.T) {
	dir := t.TempDir()
	cidrs, _ := ipam.ParseCIDRs("podCIDRs", []string{"10.244.1.0/24"})
	s, _ := ipam.Open(dir, cidrs)
	s.Allocate(ipam.Request{Attachment: ipam.Attachment{ContainerID: "x", IfName: "eth0"}, Netns: dir})
	out, err := runCLI(t, nil, "ipam", "check", "--ipam-dir", dir)
	if err != nil || !strings.Contains(out, "1 allocation(s), no leaks, no conflicts.") {
		t.Errorf("clean check: %v\n%s", err, out)
	}
}

func TestIpamMissingOrCorruptStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := runCLI(t, nil, "ipam", "--ipam-dir", missing); err == nil || !strings.Contains(err.Error(), "IPAM store "+missing) {
		t.Errorf("missing store: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "allocations.json"), []byte("{not json"), 0o600)
	if _, err := runCLI(t, nil, "ipam", "check", "--ipam-dir", dir); err == nil || !strings.Contains(err.Error(), "is corrupt") {
		t.Errorf("corrupt store: %v", err)
	}
	if _, err := runCLI(t, nil, "ipam", "--ipam-dir", t.TempDir(), "--pod-cidr", "10.0.0.1/24"); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("bad --pod-cidr: %v", err)
	}
}

// On a node whose CNI config names another dataDir (the lab's nodes),
// PODROUTE_IPAM_DIR points `podroute ipam` at it; --ipam-dir still wins.
func TestIpamDirFromEnvironment(t *testing.T) {
	dir := ipamStore(t)
	out, err := runCLI(t, map[string]string{ipamDirEnv: dir}, "ipam")
	if err != nil || !strings.Contains(out, "ctr-a") {
		t.Fatalf("ipam with %s=%s: %v\n%s", ipamDirEnv, dir, err, out)
	}
	if out, err := runCLI(t, map[string]string{ipamDirEnv: dir}, "ipam", "--ipam-dir", t.TempDir()); err == nil && strings.Contains(out, "ctr-a") {
		t.Errorf("--ipam-dir naming an empty store showed the environment's store: the flag must win\n%s", out)
	}
}
