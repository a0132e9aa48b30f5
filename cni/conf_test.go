package cni

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

const goodConf = `{"cniVersion":"1.1.0","name":"podroute","type":"podroute-cni",
 "podCIDRs":["10.244.1.0/24","fd00:244:0:1::/64"],"mtu":1450,"dataDir":"/tmp/x","reservedIPs":["10.244.1.9"]}`

func TestCniParseNetConf(t *testing.T) {
	c, err := ParseNetConf([]byte(goodConf))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Pools) != 2 || c.Pools[0].String() != "10.244.1.0/24" || c.MTU != 1450 || c.DataDir != "/tmp/x" ||
		len(c.Reserved) != 1 || c.Reserved[0].String() != "10.244.1.9" || c.Name != "podroute" {
		t.Errorf("parsed %+v", c)
	}
	c, err = ParseNetConf([]byte(`{"cniVersion":"1.1.0","name":"n","podCIDRs":["10.244.1.0/24"]}`))
	if err != nil || c.DataDir != "/var/lib/podroute/ipam" || c.MTU != 0 {
		t.Errorf("defaults: %+v, %v", c, err)
	}
}

// TestCniParseNetConfErrors checks that each bad input gets the right CNI
// error code and a message naming the field and the value.
func TestCniParseNetConfErrors(t *testing.T) {
	for _, c := range []struct {
		name, in string
		code     uint
		msg      string
	}{
		{"not JSON", `{"name":"n",`, types.ErrDecodingFailure, "network config is not valid JSON (at byte 12)"},
		{"mtu as string", `{"name":"n","podCIDRs":["10.0.0.0/24"],"mtu":"1500"}`, types.ErrDecodingFailure, `network config field "mtu": want an integer, got a JSON string`},
		{"podCIDRs as string", `{"name":"n","podCIDRs":"10.0.0.0/24"}`, types.ErrDecodingFailure, `network config field "podCIDRs": want a list of strings, got a JSON string`},
		{"podCIDR as number", `{"name":"n","podCIDRs":[10]}`, types.ErrDecodingFailure, `network config field "podCIDRs": want a string, got a JSON number`},
		{"dataDir as bool", `{"name":"n","podCIDRs":["10.0.0.0/24"],"dataDir":true}`, types.ErrDecodingFailure, `field "dataDir": want a string, got a JSON bool`},
		{"missing podCIDRs", `{"name":"n"}`, types.ErrInvalidNetworkConfig, `"podCIDRs" is missing`},
		{"empty podCIDRs", `{"name":"n","podCIDRs":[]}`, types.ErrInvalidNetworkConfig, `network config "podCIDRs" is empty`},
		{"bad CIDR", `{"name":"n","podCIDRs":["10.0.0.0/40"]}`, types.ErrInvalidNetworkConfig, `network config "podCIDRs"[0] "10.0.0.0/40" is not a CIDR`},
		{"host bits", `{"name":"n","podCIDRs":["10.0.0.1/24"]}`, types.ErrInvalidNetworkConfig, `"10.0.0.1/24" has host bits set: the CIDR is 10.0.0.0/24`},
		{"two v6", `{"name":"n","podCIDRs":["fd00::/64","fd01::/64"]}`, types.ErrInvalidNetworkConfig, `two IPv6 CIDRs`},
		{"mtu too small for v6", `{"name":"n","podCIDRs":["fd00::/64"],"mtu":1000}`, types.ErrInvalidNetworkConfig, `"mtu" 1000: want 1280..65535`},
		{"mtu too big", `{"name":"n","podCIDRs":["10.0.0.0/24"],"mtu":70000}`, types.ErrInvalidNetworkConfig, `"mtu" 70000: want 68..65535`},
		{"relative dataDir", `{"name":"n","podCIDRs":["10.0.0.0/24"],"dataDir":"ipam"}`, types.ErrInvalidNetworkConfig, `"dataDir" "ipam": want an absolute path`},
		{"reserved outside", `{"name":"n","podCIDRs":["10.0.0.0/24"],"reservedIPs":["10.1.0.1"]}`, types.ErrInvalidNetworkConfig, `"reservedIPs"[0] 10.1.0.1 is outside the pod CIDRs [10.0.0.0/24]`},
		{"reserved not an IP", `{"name":"n","podCIDRs":["10.0.0.0/24"],"reservedIPs":["x"]}`, types.ErrInvalidNetworkConfig, `"reservedIPs"[0] "x" is not an IP address`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseNetConf([]byte(c.in))
			var te *types.Error
			if !errors.As(err, &te) {
				t.Fatalf("error %v (%T) is not a CNI error", err, err)
			}
			if te.Code != c.code || !strings.Contains(te.Msg, c.msg) {
				t.Errorf("got code %d %q, want code %d containing %q", te.Code, te.Msg, c.code, c.msg)
			}
		})
	}
}

func TestCniRequestedIPs(t *testing.T) {
	c, err := ParseNetConf([]byte(`{"name":"n","podCIDRs":["10.0.0.0/24","fd00::/64"],"runtimeConfig":{"ips":["10.0.0.7/24"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.RequestedIPs("K8S_POD_NAME=web;IP=fd00::7")
	if err != nil || len(got) != 2 || got[0].String() != "10.0.0.7" || got[1].String() != "fd00::7" {
		t.Fatalf("RequestedIPs = %v, %v", got, err)
	}
	for _, bad := range []struct {
		args string
		code uint
		msg  string
	}{
		{"IP=10.9.0.1", types.ErrInvalidNetworkConfig, "requested IP 10.9.0.1 (CNI_ARGS IP) is outside this node's pod CIDRs [10.0.0.0/24 fd00::/64]"},
		{"IP=banana", types.ErrInvalidNetworkConfig, `requested IP "banana" (CNI_ARGS IP) is not an IP address`},
		{"IP=10.0.0.8", types.ErrInvalidNetworkConfig, "requested IPs 10.0.0.7 and 10.0.0.8 are both IPv4"},
		{"IGNORE", types.ErrInvalidEnvironmentVariables, `"IGNORE" is not KEY=VALUE`},
	} {
		_, err := c.RequestedIPs(bad.args)
		var te *types.Error
		if !errors.As(err, &te) || !strings.Contains(te.Msg, bad.msg) || te.Code != bad.code {
			t.Errorf("CNI_ARGS %q: %v, want code %d and %q", bad.args, err, bad.code, bad.msg)
		}
	}
}

func TestCniHostVethName(t *testing.T) {
	a := HostVethName("0123456789abcdef", "eth0")
	if len(a) != 13 || !IsHostVethName(a) || a != HostVethName("0123456789abcdef", "eth0") {
		t.Errorf("HostVethName = %q: want pr + 11 hex digits, stable", a)
	}
	if HostVethName("0123456789abcdef", "net1") == a || HostVethName("0123456789abcdeg", "eth0") == a {
		t.Errorf("different attachments share the name %s", a)
	}
	for _, n := range []string{"private0", "pr0123456789", "pr0123456789ab", "prABCDEF01234", "eth0"} {
		if IsHostVethName(n) {
			t.Errorf("IsHostVethName(%q) = true", n)
		}
	}
}

func TestCniWriteConfListParsesWithLibcni(t *testing.T) {
	dir := t.TempDir()
	conf := ConfList{PodCIDRs: []string{"10.244.1.0/24", "fd00:244:0:1::/64"}, MTU: 1450, DataDir: "/var/lib/podroute/ipam"}
	if err := WriteConfList(dir, "", conf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, DefaultConfListFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		t.Fatalf("libcni rejects the conflist: %v\n%s", err, b)
	}
	if list.Name != "podroute" || list.CNIVersion != "1.0.0" || len(list.Plugins) != 3 {
		t.Fatalf("conflist %s %s with %d plugins", list.Name, list.CNIVersion, len(list.Plugins))
	}
	wantTypes := []string{"podroute-cni", "portmap", "bandwidth"}
	for i, p := range list.Plugins {
		if p.Network.Type != wantTypes[i] {
			t.Errorf("plugin %d is %q, want %q", i, p.Network.Type, wantTypes[i])
		}
	}
	if !list.Plugins[1].Network.Capabilities["portMappings"] || !list.Plugins[2].Network.Capabilities["bandwidth"] {
		t.Errorf("capabilities: %v, %v", list.Plugins[1].Network.Capabilities, list.Plugins[2].Network.Capabilities)
	}
	// The first plugin's config, as libcni hands it to the plugin (with
	// name and cniVersion injected), parses as our NetConf.
	var raw map[string]any
	json.Unmarshal(list.Plugins[0].Bytes, &raw)
	raw["name"], raw["cniVersion"] = list.Name, list.CNIVersion
	pb, _ := json.Marshal(raw)
	nc, err := ParseNetConf(pb)
	if err != nil || nc.MTU != 1450 || len(nc.Pools) != 2 {
		t.Errorf("podroute-cni's part: %+v, %v", nc, err)
	}
	// libcni finds it by directory scan, as kubelet does, and nothing else
	// (no temporary file) is left in the directory.
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil || len(files) != 1 {
		t.Errorf("ConfFiles = %v, %v", files, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the conflist", len(entries))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}

	// Rewriting the same content leaves the file alone; new content
	// replaces it.
	before, _ := os.Stat(path)
	if err := WriteConfList(dir, "", conf); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) {
		t.Errorf("identical content rewrote the file")
	}
	conf.Chain, conf.MTU = []string{}, 0
	if err := WriteConfList(dir, "", conf); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if list, err := libcni.ConfListFromBytes(b); err != nil || len(list.Plugins) != 1 || strings.Contains(string(b), "mtu") {
		t.Errorf("after rewrite without chained plugins: %v\n%s", err, b)
	}
}

func TestCniWriteConfListRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		file string
		conf ConfList
		msg  string
	}{
		{"", ConfList{}, `"podCIDRs" is missing`},
		{"", ConfList{PodCIDRs: []string{"10.0.0.1/24"}}, "has host bits set"},
		{"10-podroute.conf", ConfList{PodCIDRs: []string{"10.0.0.0/24"}}, "want a plain name ending in .conflist"},
		{"../10-podroute.conflist", ConfList{PodCIDRs: []string{"10.0.0.0/24"}}, "want a plain name"},
	} {
		if err := WriteConfList(dir, c.file, c.conf); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("WriteConfList(%q, %+v) = %v, want %q", c.file, c.conf, err, c.msg)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a rejected config left %d files", len(entries))
	}
}

// TestCniConfListVersions: the conflist says the configured version at the
// top and in every plugin, libcni reads it as that version, and the
// configured chain follows podroute-cni in order.
func TestCniConfListVersions(t *testing.T) {
	pod := []string{"10.244.1.0/24"}
	for _, v := range SupportedVersions {
		for _, c := range []struct {
			name  string
			chain []string
			want  []string
		}{
			{"default chain", nil, []string{"podroute-cni", "portmap", "bandwidth"}},
			{"no chain", []string{}, []string{"podroute-cni"}},
			{"bandwidth first", []string{"bandwidth", "portmap"}, []string{"podroute-cni", "bandwidth", "portmap"}},
			{"portmap only", []string{"portmap"}, []string{"podroute-cni", "portmap"}},
		} {
			t.Run(v+" "+c.name, func(t *testing.T) {
				b, err := ConfList{CNIVersion: v, PodCIDRs: pod, Chain: c.chain}.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				list, err := libcni.ConfListFromBytes(b)
				if err != nil {
					t.Fatalf("libcni: %v\n%s", err, b)
				}
				if list.CNIVersion != v {
					t.Errorf("list cniVersion %q, want %q", list.CNIVersion, v)
				}
				var types []string
				for i, p := range list.Plugins {
					types = append(types, p.Network.Type)
					var raw map[string]any
					if err := json.Unmarshal(p.Bytes, &raw); err != nil {
						t.Fatal(err)
					}
					if raw["cniVersion"] != v {
						t.Errorf("plugin %d (%s) has cniVersion %v, want %q", i, p.Network.Type, raw["cniVersion"], v)
					}
					if want, ok := chainPlugin(p.Network.Type); ok && !reflect.DeepEqual(p.Network.Capabilities, want.Capabilities) {
						t.Errorf("%s capabilities %v, want %v", p.Network.Type, p.Network.Capabilities, want.Capabilities)
					}
				}
				if !reflect.DeepEqual(types, c.want) {
					t.Errorf("plugins %v, want %v", types, c.want)
				}
			})
		}
	}
	// Left empty, the version is the default, 1.0.0.
	b, err := ConfList{PodCIDRs: pod}.Bytes()
	if list, lerr := libcni.ConfListFromBytes(b); err != nil || lerr != nil || list.CNIVersion != "1.0.0" {
		t.Errorf("default version: %v %v %s", err, lerr, b)
	}
	for _, c := range []struct {
		conf ConfList
		msg  string
	}{
		{ConfList{CNIVersion: "2.0.0", PodCIDRs: pod}, `cniVersion "2.0.0": podroute-cni speaks 0.3.1, 0.4.0, 1.0.0, 1.1.0`},
		{ConfList{CNIVersion: "1.0", PodCIDRs: pod}, `cniVersion "1.0"`},
		{ConfList{PodCIDRs: pod, Chain: []string{"tuning"}}, `chained plugin "tuning": podrouted knows portmap, bandwidth`},
		{ConfList{PodCIDRs: pod, Chain: []string{"portmap", "portmap"}}, `"portmap" is listed twice`},
	} {
		if _, err := c.conf.Bytes(); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want %q", c.conf, err, c.msg)
		}
	}
}
