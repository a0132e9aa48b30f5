package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/podroute/podroute/cni"
	"github.com/podroute/podroute/ipam"
)

// These tests run the built plugin as a runtime does, one process per call,
// started with `ip netns exec` in a namespace that stands in for the node.
// Every namespace is created here under a name of this process and deleted
// when the test ends, also on failure; nothing runs in the machine's own
// namespace.

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

// pluginBin builds podroute-cni once per test binary and returns its path.
func pluginBin(t *testing.T) string {
	t.Helper()
	pluginOnce.Do(func() {
		if pluginDir, pluginErr = os.MkdirTemp("", "podroute-cni-test-"); pluginErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, cni.PluginType), ".").CombinedOutput()
		if err != nil {
			pluginErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	return filepath.Join(pluginDir, cni.PluginType)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create network namespaces (run as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: iproute2's ip command is not installed")
	}
}

var nsCounter atomic.Uint32

// newNetns creates an empty namespace (lo up) named after this process, so
// that parallel runs never collide, and deletes it when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("pcnitst%d-%d", os.Getpid(), nsCounter.Add(1))
	ipRun(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("delete namespace %s: %v: %s", name, err, out)
		}
	})
	ipRun(t, "-n", name, "link", "set", "lo", "up")
	return name
}

func ipRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// netState is everything ADD could have changed in a namespace: links,
// addresses, routes of both families in every table, and the rules.
func netState(t *testing.T, ns string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-d", "link", "show"},
		{"addr", "show"},
		{"-4", "route", "show", "table", "all"},
		{"-6", "route", "show", "table", "all"},
		{"-4", "rule", "show"},
		{"-6", "rule", "show"},
		{"-4", "neigh", "show", "nud", "permanent"},
	} {
		b.WriteString("$ ip " + strings.Join(args, " ") + "\n")
		b.WriteString(ipRun(t, append([]string{"-n", ns}, args...)...))
	}
	return b.String()
}

// pluginCall is one run of the plugin in namespace ns.
type pluginCall struct {
	ns      string
	command string
	netns   string // CNI_NETNS
	id      string
	stdin   []byte
	stdout  io.Writer // default: captured
}

// run returns the plugin's stdout and its error (nil if it exited 0).
func (c pluginCall) run(t *testing.T) ([]byte, error) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", c.ns, pluginBin(t))
	cmd.Env = []string{
		"CNI_COMMAND=" + c.command, "CNI_CONTAINERID=" + c.id, "CNI_NETNS=" + c.netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + filepath.Dir(pluginBin(t)), "PATH=" + os.Getenv("PATH"),
	}
	cmd.Stdin = bytes.NewReader(c.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if c.stdout != nil {
		cmd.Stdout = c.stdout
	}
	err := cmd.Run()
	if stderr.Len() > 0 {
		t.Logf("%s stderr: %s", c.command, stderr.Bytes())
	}
	return stdout.Bytes(), err
}

// oneCNIError checks that out is exactly one JSON document, a CNI error,
// and returns it.
func oneCNIError(t *testing.T, out []byte) *types.Error {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(out))
	var e types.Error
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("stdout is not a JSON document: %v: %q", err, out)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout holds more than one JSON document: %q", out)
	}
	if e.Code == 0 || e.Msg == "" {
		t.Fatalf("stdout is not a CNI error: %q", out)
	}
	return &e
}

func netConf(t *testing.T, dataDir string, extra map[string]any) []byte {
	t.Helper()
	m := map[string]any{
		"cniVersion": "1.0.0", "name": "podroute", "type": cni.PluginType,
		"podCIDRs": []string{"10.250.7.0/24", "fd00:250:7::/64"}, "dataDir": dataDir,
	}
	for k, v := range extra {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func allocations(t *testing.T, dataDir string) []ipam.Allocation {
	t.Helper()
	st, err := ipam.ReadState(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return st.Allocations
}

// TestCniAddRefusesItsOwnNamespace: CNI_NETNS naming the namespace the
// plugin runs in (the node's, in production) is refused before anything is
// done. The plugin runs in a throwaway namespace, so that what it must not
// touch is that namespace and never the machine's.
func TestCniAddRefusesItsOwnNamespace(t *testing.T) {
	requireRoot(t)
	node := newNetns(t)
	dataDir := t.TempDir()
	// Something in the namespace to keep, as a node has.
	// (This kernel may lack dummy links; a veth pair with both ends here
	// serves.)
	ipRun(t, "-n", node, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
	ipRun(t, "-n", node, "addr", "add", "192.0.2.10/24", "dev", "uplink0")
	ipRun(t, "-n", node, "link", "set", "uplink0", "up")
	before := netState(t, node)

	for i, path := range []string{
		"/proc/self/ns/net",        // the plugin's own process
		"/proc/thread-self/ns/net", // its thread
		"/run/netns/" + node,       // the same namespace by its pinned name
		"/var/run/netns/" + node,   // and through the /var/run symlink
	} {
		t.Run(path, func(t *testing.T) {
			out, err := pluginCall{ns: node, command: "ADD", netns: path, id: fmt.Sprintf("own-%d", i), stdin: netConf(t, dataDir, nil)}.run(t)
			if err == nil {
				t.Errorf("ADD succeeded: %s", out)
			}
			e := oneCNIError(t, out)
			if e.Code != types.ErrInvalidNetNS || !strings.Contains(e.Msg, fmt.Sprintf("CNI_NETNS %q", path)) || !strings.Contains(e.Msg, "own network namespace") {
				t.Errorf("error %d %q: want code %d naming CNI_NETNS %q as the plugin's own namespace", e.Code, e.Msg, types.ErrInvalidNetNS, path)
			}
			if after := netState(t, node); after != before {
				t.Errorf("the namespace changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if a := allocations(t, dataDir); len(a) != 0 {
				t.Errorf("allocations left in the store: %+v", a)
			}
		})
	}
}

// TestCniFailedAddLeavesNothing: whichever step of ADD fails, the node and
// the pod are as before, the store holds no allocation, and stdout holds
// exactly one JSON document, the error.
func TestCniFailedAddLeavesNothing(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, node, pod, dataDir string) (netns string, conf []byte)
		code  uint   // 0: any
		msg   string // in the error
	}{
		{"pool exhausted", func(t *testing.T, node, pod, dataDir string) (string, []byte) {
			// A /30 has two usable addresses; both reserved.
			return "/run/netns/" + pod, netConf(t, dataDir, map[string]any{"podCIDRs": []string{"10.250.8.0/30"}, "reservedIPs": []string{"10.250.8.1", "10.250.8.2"}})
		}, cni.ErrPoolExhausted, "10.250.8.0/30"},
		{"pod has the interface already", func(t *testing.T, node, pod, dataDir string) (string, []byte) {
			ipRun(t, "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
			return "/run/netns/" + pod, netConf(t, dataDir, nil)
		}, 0, "eth0"},
		{"host route taken by another link", func(t *testing.T, node, pod, dataDir string) (string, []byte) {
			// The first address ADD hands out is .1; a route to it through
			// another link makes the node side fail after the pod side.
			ipRun(t, "-n", node, "link", "add", "other0", "type", "veth", "peer", "name", "other1")
			ipRun(t, "-n", node, "link", "set", "other0", "up")
			ipRun(t, "-n", node, "route", "add", "10.250.7.1/32", "dev", "other0")
			return "/run/netns/" + pod, netConf(t, dataDir, nil)
		}, 0, "10.250.7.1/32 already exists"},
		{"CNI_NETNS not a namespace", func(t *testing.T, node, pod, dataDir string) (string, []byte) {
			f := filepath.Join(t.TempDir(), "not-a-netns")
			os.WriteFile(f, nil, 0o600)
			return f, netConf(t, dataDir, nil)
		}, 0, "not-a-netns"},
		{"unsupported cniVersion", func(t *testing.T, node, pod, dataDir string) (string, []byte) {
			return "/run/netns/" + pod, netConf(t, dataDir, map[string]any{"cniVersion": "9.9.9"})
		}, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"bad CNI_ARGS", func(t *testing.T, node, pod, dataDir string) (string, []byte) {
			return "/run/netns/" + pod, netConf(t, dataDir, map[string]any{"runtimeConfig": map[string]any{"ips": []string{"10.99.0.1"}}})
		}, types.ErrInvalidNetworkConfig, "10.99.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, pod := newNetns(t), newNetns(t)
			dataDir := t.TempDir()
			netns, conf := tc.setup(t, node, pod, dataDir)
			nodeBefore, podBefore := netState(t, node), netState(t, pod)

			out, err := pluginCall{ns: node, command: "ADD", netns: netns, id: "failing", stdin: conf}.run(t)
			if err == nil {
				t.Fatalf("ADD succeeded: %s", out)
			}
			e := oneCNIError(t, out)
			if (tc.code != 0 && e.Code != tc.code) || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("error %d %q: want code %d and %q", e.Code, e.Msg, tc.code, tc.msg)
			}
			if after := netState(t, node); after != nodeBefore {
				t.Errorf("the node changed:\nbefore:\n%s\nafter:\n%s", nodeBefore, after)
			}
			if after := netState(t, pod); after != podBefore {
				t.Errorf("the pod changed:\nbefore:\n%s\nafter:\n%s", podBefore, after)
			}
			if a := allocations(t, dataDir); len(a) != 0 {
				t.Errorf("allocations left in the store: %+v", a)
			}
		})
	}
}

// TestCniAddFailingToPrintLeavesNothing: ADD that wired the pod and then
// cannot print its result (stdout is /dev/full) removes the veth and
// releases the addresses: the runtime never saw a result, so it will not
// call DEL for it.
func TestCniAddFailingToPrintLeavesNothing(t *testing.T) {
	requireRoot(t)
	node, pod := newNetns(t), newNetns(t)
	dataDir := t.TempDir()
	nodeBefore, podBefore := netState(t, node), netState(t, pod)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	_, err = pluginCall{ns: node, command: "ADD", netns: "/run/netns/" + pod, id: "no-stdout", stdin: netConf(t, dataDir, nil), stdout: full}.run(t)
	if err == nil {
		t.Fatal("ADD succeeded with nowhere to print its result")
	}
	if after := netState(t, node); after != nodeBefore {
		t.Errorf("the node changed:\nbefore:\n%s\nafter:\n%s", nodeBefore, after)
	}
	if after := netState(t, pod); after != podBefore {
		t.Errorf("the pod changed:\nbefore:\n%s\nafter:\n%s", podBefore, after)
	}
	if a := allocations(t, dataDir); len(a) != 0 {
		t.Errorf("allocations left in the store: %+v", a)
	}
}

// TestCniEveryFailurePrintsOneDocument runs the other commands' failure
// paths and checks each prints exactly one JSON document, the error.
func TestCniEveryFailurePrintsOneDocument(t *testing.T) {
	requireRoot(t)
	node, pod := newNetns(t), newNetns(t)
	dataDir := t.TempDir()
	good := netConf(t, dataDir, nil)
	bad := []byte(`{"cniVersion":"1.0.0","name":"podroute","type":"podroute-cni","podCIDRs":"10.250.7.0/24"}`)
	v11 := netConf(t, dataDir, map[string]any{"cniVersion": "1.1.0"})
	for _, c := range []struct {
		name string
		call pluginCall
	}{
		{"ADD bad config", pluginCall{command: "ADD", netns: "/run/netns/" + pod, stdin: bad}},
		{"ADD namespace missing", pluginCall{command: "ADD", netns: "/run/netns/" + pod + "-gone", stdin: good}},
		{"ADD no container ID", pluginCall{command: "ADD", netns: "/run/netns/" + pod, stdin: good, id: "-"}},
		{"DEL bad config", pluginCall{command: "DEL", netns: "/run/netns/" + pod, stdin: bad}},
		{"CHECK without prevResult", pluginCall{command: "CHECK", netns: "/run/netns/" + pod, stdin: good}},
		{"CHECK of an unknown container", pluginCall{command: "CHECK", netns: "/run/netns/" + pod, stdin: netConf(t, dataDir, map[string]any{
			"prevResult": map[string]any{"cniVersion": "1.0.0", "ips": []any{}}})}},
		{"GC without valid attachments", pluginCall{command: "GC", stdin: v11}},
		{"STATUS bad config", pluginCall{command: "STATUS", stdin: []byte(`{"cniVersion":"1.1.0","name":"n","podCIDRs":[]}`)}},
		{"unknown command", pluginCall{command: "FROB", stdin: good}},
	} {
		t.Run(c.name, func(t *testing.T) {
			call := c.call
			call.ns = node
			if call.id == "" {
				call.id = "ctr"
			} else if call.id == "-" {
				call.id = ""
			}
			out, err := call.run(t)
			if err == nil {
				t.Fatalf("%s succeeded: %s", call.command, out)
			}
			oneCNIError(t, out)
		})
	}
	if a := allocations(t, dataDir); len(a) != 0 {
		t.Errorf("allocations left in the store: %+v", a)
	}
}
