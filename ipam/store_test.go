package ipam

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func mustCIDRs(t *testing.T, cidrs ...string) []netip.Prefix {
	t.Helper()
	p, err := ParseCIDRs("podCIDRs", cidrs)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func openStore(t *testing.T, dir string, cidrs []string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(dir, mustCIDRs(t, cidrs...), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func alloc(t *testing.T, s *Store, cid string) []string {
	t.Helper()
	a, err := s.Allocate(Request{Attachment: Attachment{ContainerID: cid, IfName: "eth0"}})
	if err != nil {
		t.Fatalf("Allocate(%s): %v", cid, err)
	}
	out := make([]string, len(a.Addrs))
	for i, addr := range a.Addrs {
		out[i] = addr.String()
	}
	return out
}

func TestIPAMParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs("podCIDRs", []string{"10.244.1.0/24", " fd00:244:0:1::/64"})
	if err != nil || len(got) != 2 || got[1].String() != "fd00:244:0:1::/64" {
		t.Fatalf("ParseCIDRs = %v, %v", got, err)
	}
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, "podCIDRs is empty"},
		{[]string{"10.244.1.0/33"}, `podCIDRs[0] "10.244.1.0/33" is not a CIDR`},
		{[]string{"10.244.1.0"}, `podCIDRs[0] "10.244.1.0" is not a CIDR`},
		{[]string{"10.244.1.7/24"}, `podCIDRs[0] "10.244.1.7/24" has host bits set: the CIDR is 10.244.1.0/24`},
		{[]string{"10.244.1.0/24", "10.245.0.0/24"}, `two IPv4 CIDRs, "10.244.1.0/24" and "10.245.0.0/24"`},
		{[]string{"10.244.1.0/31"}, `too small for pods: want /30 or larger`},
		{[]string{"fd00::/127"}, `too small for pods: want /126 or larger`},
		{[]string{"::ffff:10.0.0.0/120"}, `want a plain IPv4 or IPv6 CIDR`},
	} {
		_, err := ParseCIDRs("podCIDRs", c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseCIDRs(%q) = %v, want error containing %q", c.in, err, c.want)
		}
	}
}

func TestIPAMAllocationOrderSkipsReserved(t *testing.T) {
	s := openStore(t, t.TempDir(), []string{"10.0.0.0/30", "fd00::/126"})
	if got := alloc(t, s, "a"); !slices.Equal(got, []string{"10.0.0.1", "fd00::1"}) {
		t.Errorf("first = %v, want 10.0.0.1 fd00::1 (network and anycast skipped)", got)
	}
	if got := alloc(t, s, "b"); !slices.Equal(got, []string{"10.0.0.2", "fd00::2"}) {
		t.Errorf("second = %v", got)
	}
	// 10.0.0.3 is the broadcast address: the v4 pool is full.
	_, err := s.Allocate(Request{Attachment: Attachment{ContainerID: "c", IfName: "eth0"}})
	var ex *ExhaustedError
	if !errors.As(err, &ex) || err.Error() != "pod CIDR 10.0.0.0/30 is exhausted: 2 of 2 usable addresses are in use (release pods or give the node a larger CIDR)" {
		t.Fatalf("third allocation: %v, want exhaustion of 10.0.0.0/30", err)
	}
	// A failed allocation records nothing, in either family.
	st, _ := s.List()
	if len(st.Allocations) != 2 {
		t.Errorf("store has %d allocations after a failed one, want 2", len(st.Allocations))
	}
}

func TestIPAMRFC2526AndConfiguredReserved(t *testing.T) {
	p := netip.MustParsePrefix("fd00::/120")
	if got := Capacity(p, nil).Int64(); got != 127 {
		t.Errorf("Capacity(%s) = %d, want 256 - 1 anycast - 128 RFC 2526 = 127", p, got)
	}
	if got := Capacity(netip.MustParsePrefix("10.0.0.0/24"), []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.0"), netip.MustParseAddr("10.9.0.1")}).Int64(); got != 253 {
		t.Errorf("Capacity with one extra reserved address inside = %d, want 253", got)
	}
	if got := Capacity(netip.MustParsePrefix("fd00::/64"), nil).String(); got != "18446744073709551487" {
		t.Errorf("Capacity(/64) = %s", got)
	}
	s := openStore(t, t.TempDir(), []string{"fd00::/120", "10.0.0.0/24"}, WithReserved(netip.MustParseAddr("10.0.0.1")))
	if got := alloc(t, s, "a"); !slices.Equal(got, []string{"fd00::1", "10.0.0.2"}) {
		t.Errorf("first = %v, want fd00::1 and 10.0.0.2 (10.0.0.1 reserved)", got)
	}
	for i := 0; i < 126; i++ {
		alloc(t, s, fmt.Sprintf("c%d", i))
	}
	_, err := s.Allocate(Request{Attachment: Attachment{ContainerID: "last", IfName: "eth0"}})
	if err == nil || !strings.Contains(err.Error(), "fd00::/120 is exhausted: 127 of 127") {
		t.Fatalf("allocation 128: %v, want fd00::/120 exhausted at 127", err)
	}
	st, _ := s.List()
	for _, a := range st.Allocations {
		if a.Addrs[0].Compare(netip.MustParseAddr("fd00::80")) >= 0 {
			t.Errorf("%s got %s, one of the RFC 2526 reserved anycast addresses", a.ContainerID, a.Addrs[0])
		}
	}
}

func TestIPAMRoundRobinAndIdempotence(t *testing.T) {
	s := openStore(t, t.TempDir(), []string{"10.0.0.0/29"})
	a := alloc(t, s, "a")
	alloc(t, s, "b")
	if again := alloc(t, s, "a"); !slices.Equal(again, a) {
		t.Fatalf("ADD again for a = %v, want the same %v", again, a)
	}
	if _, found, err := s.Release(Attachment{"a", "eth0"}); !found || err != nil {
		t.Fatalf("Release(a) = %v, %v", found, err)
	}
	if _, found, err := s.Release(Attachment{"a", "eth0"}); found || err != nil {
		t.Fatalf("Release(a) twice = %v, %v, want not found and no error", found, err)
	}
	// .1 is free again but the cursor is at .2: the freed address waits.
	var order []string
	for _, c := range []string{"c", "d", "e", "f", "g"} {
		order = append(order, alloc(t, s, c)[0])
	}
	want := []string{"10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.1"}
	if !slices.Equal(order, want) {
		t.Errorf("order after releasing .1 = %v, want %v (wrap past broadcast and network)", order, want)
	}
	// A second interface of the same container is a separate attachment.
	other, err := s.Allocate(Request{Attachment: Attachment{ContainerID: "c", IfName: "net1"}})
	if !errors.As(err, new(*ExhaustedError)) {
		t.Errorf("c/net1 in a full pool = %v, %v; want exhaustion", other, err)
	}
}

func TestIPAMRequestedAddresses(t *testing.T) {
	s := openStore(t, t.TempDir(), []string{"10.0.0.0/24", "fd00::/64"})
	req := func(cid string, want ...string) (Allocation, error) {
		var addrs []netip.Addr
		for _, w := range want {
			addrs = append(addrs, netip.MustParseAddr(w))
		}
		return s.Allocate(Request{Attachment: Attachment{cid, "eth0"}, Want: addrs})
	}
	a, err := req("a", "10.0.0.50")
	if err != nil || a.Addrs[0].String() != "10.0.0.50" || a.Addrs[1].String() != "fd00::1" {
		t.Fatalf("requested 10.0.0.50: %v, %v", a.Addrs, err)
	}
	for _, c := range []struct {
		cid  string
		want []string
		msg  string
	}{
		{"b", []string{"10.0.0.50"}, "requested address 10.0.0.50 is already held by a/eth0"},
		{"b", []string{"10.1.0.5"}, "requested address 10.1.0.5 is outside this node's pod CIDRs [10.0.0.0/24 fd00::/64]"},
		{"b", []string{"10.0.0.255"}, "requested address 10.0.0.255 is reserved in 10.0.0.0/24"},
		{"b", []string{"10.0.0.7", "10.0.0.8"}, "both in 10.0.0.0/24"},
		{"a", []string{"10.0.0.9"}, "a/eth0 already holds [10.0.0.50 fd00::1], which does not include the requested 10.0.0.9"},
	} {
		if _, err := req(c.cid, c.want...); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("request %v for %s: %v, want %q", c.want, c.cid, err, c.msg)
		}
	}
	// The cursor only moves for addresses it picked itself.
	if got := alloc(t, s, "c"); got[0] != "10.0.0.1" {
		t.Errorf("after a requested address the next pick is %s, want 10.0.0.1", got[0])
	}
}

func TestIPAMPersistenceAcrossStores(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s1 := openStore(t, dir, []string{"10.0.0.0/24"}, WithClock(func() time.Time { return now }))
	alloc(t, s1, "a")
	if _, err := s1.Allocate(Request{Attachment: Attachment{"b", "eth0"}, Netns: "/var/run/netns/b"}); err != nil {
		t.Fatal(err)
	}
	s1.Release(Attachment{"a", "eth0"})

	// A new process (a new Store) continues from the file: b still holds
	// .2, and the cursor keeps going past it.
	s2 := openStore(t, dir, []string{"10.0.0.0/24"})
	if got := alloc(t, s2, "c"); got[0] != "10.0.0.3" {
		t.Errorf("new store picked %s, want 10.0.0.3", got[0])
	}
	b, ok, err := s2.Get(Attachment{"b", "eth0"})
	if err != nil || !ok || b.Netns != "/var/run/netns/b" || !b.Since.Equal(now) || b.Addrs[0].String() != "10.0.0.2" {
		t.Errorf("Get(b) = %+v, %v, %v", b, ok, err)
	}
	// An ADD retried with a new namespace keeps the addresses and records
	// the new namespace.
	b2, err := s2.Allocate(netnsRequest("b", "/var/run/netns/b2"))
	if err != nil || b2.Addrs[0] != b.Addrs[0] || b2.Netns != "/var/run/netns/b2" {
		t.Errorf("retried ADD in a new namespace: %+v, %v", b2, err)
	}
	if again, _, _ := s2.Get(Attachment{"b", "eth0"}); again.Netns != "/var/run/netns/b2" {
		t.Errorf("new namespace not stored: %+v", again)
	}
	// No temporary file is left behind by a clean write.
	if _, err := os.Stat(filepath.Join(dir, tmpFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind: %v", tmpFile, err)
	}
}

func netnsRequest(cid, netns string) Request {
	return Request{Attachment: Attachment{ContainerID: cid, IfName: "eth0"}, Netns: netns}
}

func TestIPAMGC(t *testing.T) {
	s := openStore(t, t.TempDir(), []string{"10.0.0.0/24"})
	for _, c := range []string{"a", "b", "c", "d"} {
		alloc(t, s, c)
	}
	gone, err := s.GC([]Attachment{{"b", "eth0"}, {"d", "eth0"}, {"zzz", "eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range gone {
		ids = append(ids, g.ContainerID)
	}
	if !slices.Equal(ids, []string{"a", "c"}) {
		t.Errorf("GC released %v, want [a c]", ids)
	}
	st, _ := s.List()
	if len(st.Allocations) != 2 || st.Allocations[0].ContainerID != "b" || st.Allocations[1].ContainerID != "d" {
		t.Errorf("after GC: %+v", st.Allocations)
	}
}

func TestIPAMCorruptStoreIsNotReset(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, []string{"10.0.0.0/24"})
	alloc(t, s, "a")
	// A leftover temporary file from a killed writer is harmless.
	if err := os.WriteFile(filepath.Join(dir, tmpFile), []byte(`{"version":1,"allocat`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := alloc(t, s, "b"); got[0] != "10.0.0.2" {
		t.Errorf("with a torn temporary file present: %v", got)
	}
	// A corrupt store file stops allocation instead of starting over.
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"version":1,"allocations":[{"contai`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Allocate(Request{Attachment: Attachment{"c", "eth0"}})
	if err == nil || !strings.Contains(err.Error(), "allocations.json is corrupt") || !strings.Contains(err.Error(), "refusing to allocate") {
		t.Errorf("Allocate on a corrupt store: %v", err)
	}
	if err := s.CheckWritable(); err == nil {
		t.Errorf("CheckWritable on a corrupt store succeeded")
	}
}

func TestIPAMOpenRejectsBadDir(t *testing.T) {
	if _, err := Open("relative/dir", mustCIDRs(t, "10.0.0.0/24")); err == nil || !strings.Contains(err.Error(), `"relative/dir": want an absolute path`) {
		t.Errorf("relative dir: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(filepath.Join(file, "sub"), mustCIDRs(t, "10.0.0.0/24")); err == nil {
		t.Errorf("dir under a file: no error")
	}
}

func TestIPAMConcurrentStoresInOneProcess(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	results := make([][]string, 60)
	errs := make([]error, 60)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(dir, mustCIDRs(t, "10.0.0.0/24", "fd00::/64"))
			if err != nil {
				errs[i] = err
				return
			}
			a, err := s.Allocate(Request{Attachment: Attachment{fmt.Sprintf("c%d", i), "eth0"}})
			errs[i] = err
			for _, addr := range a.Addrs {
				results[i] = append(results[i], addr.String())
			}
		}()
	}
	wg.Wait()
	seen := map[string]int{}
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("allocation %d: %v", i, errs[i])
		}
		for _, a := range r {
			if j, dup := seen[a]; dup {
				t.Errorf("%s handed to c%d and c%d", a, j, i)
			}
			seen[a] = i
		}
	}
	st, err := ReadState(dir)
	if err != nil || len(st.Allocations) != 60 {
		t.Errorf("store has %d allocations (%v), want 60", len(st.Allocations), err)
	}
}

func TestIPAMAudit(t *testing.T) {
	st := State{
		Version: 1,
		CIDRs:   mustCIDRs(t, "10.0.0.0/24"),
		Allocations: []Allocation{
			{ContainerID: "live", IfName: "eth0", Netns: "/run/netns/live", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}},
			{ContainerID: "gone", IfName: "eth0", Netns: "/run/netns/gone", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.6")}},
			{ContainerID: "twin", IfName: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.5")}},
			{ContainerID: "old", IfName: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("10.9.0.5")}},
			{ContainerID: "bcast", IfName: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.255")}},
		},
	}
	problems := st.Audit(func(p string) bool { return p == "/run/netns/live" })
	var got []string
	for _, p := range problems {
		got = append(got, fmt.Sprintf("%s %s %v", p.Kind, p.Address, p.Attachments))
	}
	want := []string{
		"duplicate 10.0.0.5 [live/eth0 twin/eth0]",
		"leaked  [gone/eth0]",
		"outside-cidr 10.9.0.5 [old/eth0]",
		"reserved 10.0.0.255 [bcast/eth0]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Audit =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	u := st.Usages(nil)
	if len(u) != 1 || u[0].InUse != 4 || u[0].Capacity.Int64() != 254 {
		t.Errorf("Usages = %+v", u)
	}
}

// helperEnv makes the test binary a store client that allocates in a loop
// and prints each allocation it got, for the SIGKILL test.
const helperEnv = "PODROUTE_IPAM_TEST_HELPER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		runHelper(dir)
		return
	}
	os.Exit(m.Run())
}

func runHelper(dir string) {
	cidrs, _ := ParseCIDRs("podCIDRs", []string{"10.0.0.0/16", "fd00::/64"})
	s, err := Open(dir, cidrs)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		att := Attachment{ContainerID: fmt.Sprintf("p%d-%d", os.Getpid(), i), IfName: "eth0"}
		var err error
		if i%3 == 2 {
			// Mix in releases so the file shrinks as well as grows. The
			// parent hears of a release before it starts: once it has, the
			// allocation may or may not be there.
			fmt.Fprintf(w, "del %s\n", fmt.Sprintf("p%d-%d", os.Getpid(), i-1))
			w.Flush()
			_, _, err = s.Release(Attachment{ContainerID: fmt.Sprintf("p%d-%d", os.Getpid(), i-1), IfName: "eth0"})
		} else {
			var a Allocation
			a, err = s.Allocate(Request{Attachment: att})
			if err == nil {
				fmt.Fprintf(w, "add %s %s\n", att.ContainerID, joinAddrs(a.Addrs))
			}
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		w.Flush() // acknowledged only once it reached our parent
	}
}

// TestIPAMSIGKILLLeavesNoTornRecord kills store clients at random instants
// (mid-write, mid-rename, holding the lock) and checks that the store always
// parses, holds no address twice and kept every allocation a client was told
// about (it was synced before Allocate returned).
func TestIPAMSIGKILLLeavesNoTornRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("forks helper processes")
	}
	dir := t.TempDir()
	acked := map[string]string{} // container -> addresses, for allocations a client saw
	for round := 0; round < 12; round++ {
		type helper struct {
			cmd *exec.Cmd
			out *strings.Builder
		}
		var helpers []helper
		for range 3 {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), helperEnv+"="+dir)
			out := &strings.Builder{}
			cmd.Stdout = out
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			helpers = append(helpers, helper{cmd, out})
			defer func() {
				if stderr.Len() > 0 {
					t.Errorf("helper %d: %s", cmd.Process.Pid, stderr.String())
				}
			}()
		}
		time.Sleep(time.Duration(20+round*7) * time.Millisecond)
		for _, h := range helpers {
			h.cmd.Process.Signal(syscall.SIGKILL)
		}
		for _, h := range helpers {
			h.cmd.Wait()
			for _, line := range strings.Split(h.out.String(), "\n") {
				f := strings.SplitN(line, " ", 3)
				switch {
				case len(f) == 3 && f[0] == "add":
					acked[f[1]] = f[2]
				case len(f) == 2 && f[0] == "del":
					delete(acked, f[1])
				}
			}
		}
		st, err := ReadState(dir)
		if err != nil {
			t.Fatalf("round %d: store unreadable after SIGKILL: %v", round, err)
		}
		seen := map[netip.Addr]string{}
		inStore := map[string]string{}
		for _, a := range st.Allocations {
			inStore[a.ContainerID] = joinAddrs(a.Addrs)
			for _, addr := range a.Addrs {
				if other, dup := seen[addr]; dup {
					t.Fatalf("round %d: %s held by %s and %s", round, addr, other, a.ContainerID)
				}
				seen[addr] = a.ContainerID
			}
		}
		for cid, addrs := range acked {
			if inStore[cid] != addrs {
				t.Fatalf("round %d: %s was told it holds %s, the store says %q", round, cid, addrs, inStore[cid])
			}
		}
	}
	if len(acked) < 10 {
		t.Fatalf("only %d allocations acknowledged in total: the helpers did not get going", len(acked))
	}
	// Whatever the kills left (allocated but not acknowledged) is garbage
	// that GC with no valid attachment frees.
	s := openStore(t, dir, []string{"10.0.0.0/16", "fd00::/64"})
	if _, err := s.GC(nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.List(); len(st.Allocations) != 0 {
		t.Errorf("after GC(nil): %d allocations", len(st.Allocations))
	}
	t.Logf("%d allocations acknowledged and found intact across 12 rounds of SIGKILL", len(acked))
}
