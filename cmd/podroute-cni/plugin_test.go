package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/podroute/podroute/cni"
)

// These tests need no namespace: every input here is rejected before the
// plugin touches the network, and the point is that it is rejected with the
// right code and message, and with nothing allocated.

func conf(t *testing.T, dir string, extra string) []byte {
	t.Helper()
	base := `{"cniVersion":"1.1.0","name":"podroute","type":"podroute-cni","podCIDRs":["10.250.0.0/24","fd00:250::/64"],"dataDir":"` + dir + `"`
	if extra != "" {
		base += "," + extra
	}
	return []byte(base + "}")
}

func cniCode(t *testing.T, err error) (uint, string) {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a CNI error", err, err)
	}
	return te.Code, te.Msg
}

func TestCniAddRejectsBadInputAllocatingNothing(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name  string
		stdin []byte
		args  string
		netns string
		code  uint
		msg   string
	}{
		{"not JSON", []byte(`podCIDRs: 10.0.0.0/24`), "", "", types.ErrDecodingFailure, "network config is not valid JSON"},
		{"mtu of the wrong type", conf(t, dir, `"mtu":"9000"`), "", "", types.ErrDecodingFailure, `network config field "mtu": want an integer, got a JSON string`},
		{"podCIDRs of the wrong type", []byte(`{"name":"n","podCIDRs":{"v4":"10.0.0.0/24"}}`), "", "", types.ErrDecodingFailure, `network config field "podCIDRs": want a list of strings, got a JSON object`},
		{"missing podCIDRs", []byte(`{"cniVersion":"1.1.0","name":"n","dataDir":"` + dir + `"}`), "", "", types.ErrInvalidNetworkConfig, `"podCIDRs" is missing`},
		{"invalid CIDR", []byte(`{"name":"n","podCIDRs":["10.250.0.0/24","fd00:250::/129"],"dataDir":"` + dir + `"}`), "", "", types.ErrInvalidNetworkConfig, `"podCIDRs"[1] "fd00:250::/129" is not a CIDR`},
		{"requested IP outside the pod CIDR (CNI_ARGS)", conf(t, dir, ""), "IgnoreUnknown=1;IP=10.251.0.5", "", types.ErrInvalidNetworkConfig, "requested IP 10.251.0.5 (CNI_ARGS IP) is outside this node's pod CIDRs [10.250.0.0/24 fd00:250::/64]"},
		{"requested IP outside the pod CIDR (runtimeConfig)", conf(t, dir, `"runtimeConfig":{"ips":["fd00:251::5/64"]}`), "", "", types.ErrInvalidNetworkConfig, "requested IP fd00:251::5 (runtimeConfig.ips[0]) is outside"},
		{"pod namespace missing", conf(t, dir, ""), "", "/var/run/netns/podroute-test-does-not-exist", types.ErrInvalidNetNS, `CNI_NETNS "/var/run/netns/podroute-test-does-not-exist" does not exist`},
	} {
		t.Run(c.name, func(t *testing.T) {
			netns := c.netns
			if netns == "" {
				netns = "/proc/self/ns/net" // exists; never reached
			}
			err := cmdAdd(&skel.CmdArgs{ContainerID: "ctr", IfName: "eth0", Netns: netns, Args: c.args, StdinData: c.stdin})
			code, msg := cniCode(t, err)
			if code != c.code || !strings.Contains(msg, c.msg) {
				t.Errorf("got code %d %q, want %d containing %q", code, msg, c.code, c.msg)
			}
			if _, err := os.Stat(filepath.Join(dir, "allocations.json")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a rejected ADD wrote the store: %v", err)
			}
		})
	}
}

func TestCniStatus(t *testing.T) {
	dir := t.TempDir()
	if err := cmdStatus(&skel.CmdArgs{StdinData: conf(t, dir, "")}); err != nil {
		t.Fatalf("STATUS with a good config: %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	for _, c := range []struct {
		name  string
		stdin []byte
		msg   string
	}{
		{"no pod CIDR", []byte(`{"cniVersion":"1.1.0","name":"n"}`), `"podCIDRs" is missing`},
		{"store not writable", []byte(`{"cniVersion":"1.1.0","name":"n","podCIDRs":["10.0.0.0/24"],"dataDir":"` + file + `/ipam"}`), "creating store directory"},
	} {
		code, msg := cniCode(t, cmdStatus(&skel.CmdArgs{StdinData: c.stdin}))
		if code != 50 || !strings.HasPrefix(msg, "podroute-cni cannot add pods: ") || !strings.Contains(msg, c.msg) {
			t.Errorf("STATUS %s: code %d %q, want 50 and %q", c.name, code, msg, c.msg)
		}
	}
}

// TestCniBinaryProtocol runs the built plugin as a runtime does, for what
// skel adds on top of the command functions: the error JSON on stdout, the
// exit status and VERSION.
func TestCniBinaryProtocol(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	bin := pluginBin(t)
	run := func(command string, stdin []byte, env ...string) (map[string]any, error) {
		cmd := exec.Command(bin)
		cmd.Env = append([]string{"CNI_COMMAND=" + command, "CNI_PATH=/nonexistent"}, env...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.Output()
		var m map[string]any
		if jerr := json.Unmarshal(out, &m); jerr != nil {
			t.Fatalf("%s printed no JSON: %v: %q", command, jerr, out)
		}
		return m, err
	}
	m, err := run("VERSION", nil)
	if err != nil || strings.Join(toStrings(m["supportedVersions"]), ",") != strings.Join(cni.SupportedVersions, ",") {
		t.Errorf("VERSION: %v %v, want %v (what a conflist may ask for)", m, err, cni.SupportedVersions)
	}
	dir := t.TempDir()
	m, err = run("ADD", conf(t, dir, `"mtu":true`), "CNI_CONTAINERID=c1", "CNI_NETNS=/proc/self/ns/net", "CNI_IFNAME=eth0")
	if err == nil || m["code"] != float64(6) || !strings.Contains(m["msg"].(string), `field "mtu": want an integer, got a JSON bool`) {
		t.Errorf("ADD with a bad mtu: %v %v", m, err)
	}
	m, err = run("STATUS", []byte(`{"cniVersion":"1.1.0","name":"n","podCIDRs":[]}`))
	if err == nil || m["code"] != float64(50) {
		t.Errorf("STATUS without pod CIDRs: %v %v", m, err)
	}
	// GC without the list of valid attachments is refused, not read as
	// "release everything".
	m, err = run("GC", conf(t, dir, ""))
	if err == nil || m["code"] != float64(7) || !strings.Contains(m["msg"].(string), "GC needs cni.dev/valid-attachments") {
		t.Errorf("GC without valid-attachments: %v %v", m, err)
	}
	// GC of an empty store with nothing valid succeeds and prints nothing.
	cmd := exec.Command(bin)
	cmd.Env = []string{"CNI_COMMAND=GC", "CNI_PATH=/nonexistent"}
	cmd.Stdin = bytes.NewReader(conf(t, dir, `"cni.dev/valid-attachments":[]`))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
		t.Errorf("GC: %v %q", err, out)
	}
}

func toStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
