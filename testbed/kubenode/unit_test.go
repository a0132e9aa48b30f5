package kubenode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podroute/podroute/testbed/images"
)

func TestCoreDNSObjects(t *testing.T) {
	objs, err := CoreDNSObjects(CoreDNSOptions{ClusterDNS: "10.96.0.53", Domain: "lab.local"})
	if err != nil {
		t.Fatal(err)
	}
	var svc *corev1.Service
	var dep *appsv1.Deployment
	var cm *corev1.ConfigMap
	for _, o := range objs {
		switch x := o.(type) {
		case *corev1.Service:
			svc = x
		case *appsv1.Deployment:
			dep = x
		case *corev1.ConfigMap:
			cm = x
		}
	}
	if len(objs) != 6 || svc == nil || dep == nil || cm == nil {
		t.Fatalf("got %d objects (service %v, deployment %v, configmap %v), want 6", len(objs), svc != nil, dep != nil, cm != nil)
	}
	if svc.Spec.ClusterIP != "10.96.0.53" || svc.Name != "kube-dns" || svc.Namespace != "kube-system" {
		t.Errorf("service %s/%s at %s", svc.Namespace, svc.Name, svc.Spec.ClusterIP)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != images.CoreDNSImage {
		t.Errorf("image %s, want %s", img, images.CoreDNSImage)
	}
	if !strings.Contains(cm.Data["Corefile"], "kubernetes lab.local in-addr.arpa") {
		t.Errorf("Corefile does not serve the domain:\n%s", cm.Data["Corefile"])
	}
	if _, err := CoreDNSManifest(CoreDNSOptions{ClusterDNS: "dns"}); err == nil {
		t.Error("a ClusterDNS that is not an IP was accepted")
	}
}

func TestConfigDefaultsAndRendering(t *testing.T) {
	c := Config{Name: "n1", Netns: "pr123456-n1", Dir: "/tmp/x/n1", NodeIP: "10.77.0.11", APIServer: "https://10.77.0.1:6443",
		CACertPEM: []byte("ca"), Token: "tok", CNIBinDir: "/b", CNIConfDir: "/c", Images: []string{}}
	if err := c.defaults(); err != nil {
		t.Fatal(err)
	}
	if c.CgroupRoot != "/podroute-pr123456-n1" || c.ProxyMode != "nftables" || c.ClusterDNS != DefaultClusterDNS {
		t.Errorf("defaults: %+v", c)
	}
	n := &Node{cfg: c, socket: "/tmp/x/n1/ctd/containerd.sock"}
	data := map[string]string{"Name": c.Name, "D": c.Dir, "Socket": n.socket, "PauseImage": images.PauseImage,
		"CNIBinDir": c.CNIBinDir, "CNIConfDir": c.CNIConfDir, "CgroupRoot": c.CgroupRoot, "NodeIP": c.NodeIP,
		"ClusterDNS": c.ClusterDNS, "ClusterDomain": c.ClusterDomain, "ClusterCIDR": c.ClusterCIDR, "ProxyMode": c.ProxyMode}
	for _, tc := range []struct {
		t    *templateT
		want map[string]any
	}{
		{kubeletTmpl, map[string]any{"cgroupRoot": "/podroute-pr123456-n1", "failCgroupV1": false, "cgroupDriver": "cgroupfs",
			"containerRuntimeEndpoint": "unix:///tmp/x/n1/ctd/containerd.sock", "address": "10.77.0.11", "protectKernelDefaults": false}},
		{proxyTmpl, map[string]any{"mode": "nftables", "hostnameOverride": "n1", "clusterCIDR": DefaultClusterCIDR}},
	} {
		b, err := render(tc.t, data)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v\n%s", tc.t.Name(), err, b)
		}
		for k, v := range tc.want {
			if m[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.t.Name(), k, m[k], v)
			}
		}
	}
	b, err := render(containerdTmpl, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`restrict_oom_score_adj = true`, `sandbox_image = "` + images.PauseImage + `"`,
		`address = "/tmp/x/n1/ctd/containerd.sock"`, `Root = "/tmp/x/n1/ctd/runc"`, `path = "/tmp/x/n1/ctd/opt"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("containerd config lacks %s", want)
		}
	}

	for _, bad := range []func(*Config){
		func(c *Config) { c.Name = "" },
		func(c *Config) { c.Dir = "rel" },
		func(c *Config) { c.NodeIP = "x" },
		func(c *Config) { c.ProxyMode = "ipvs" },
		func(c *Config) { c.CgroupRoot = "/a/b" },
		func(c *Config) { c.Token = "" },
	} {
		c2 := Config{Name: "n1", Netns: "x", Dir: "/d", NodeIP: "10.0.0.1", APIServer: "https://a", CACertPEM: []byte("ca"),
			Token: "t", CNIBinDir: "/b", CNIConfDir: "/c", Images: []string{}}
		bad(&c2)
		if err := c2.defaults(); err == nil {
			t.Errorf("bad config accepted: %+v", c2)
		}
	}
}

func TestInCgroupsAndMounts(t *testing.T) {
	v1, _, err := cgroupMounts()
	if err != nil {
		t.Fatal(err)
	}
	if len(v1) == 0 {
		t.Skip("no cgroup v1 hierarchies here")
	}
	if inCgroups(1, []string{"/sys/fs/cgroup/cpu/podroute-no-such-node"}) {
		t.Error("pid 1 reported in a cgroup that does not exist")
	}
}

func TestKeptPaths(t *testing.T) {
	// Only directories that exist are kept; /run/podroute-kept-test is made
	// here and removed again.
	top := "/run/podroute-kept-test"
	if err := os.MkdirAll(top+"/lab/node-1", 0o755); err != nil {
		t.Skipf("cannot create %s: %v", top, err)
	}
	defer os.RemoveAll(top)
	c := Config{Dir: top + "/lab/node-1", CNIConfDir: "/var/run/podroute-kept-test/lab/node-1/cni",
		CNIBinDir: "/usr/lib/cni", HostPaths: []string{"/run/does-not-exist-podroute/x", "relative/path"},
		Images: []string{"/root/.cache/podroute/images/agnhost.tar"}}
	got := keptPaths(c)
	if len(got) != 1 || got[0] != top {
		t.Errorf("keptPaths = %v, want [%s] once (a /var/run path is /run; missing, relative and unhidden paths are not kept)", got, top)
	}
	if s := nodeLabels(map[string]string{"b": "2", "a": "1"}); s != "a=1,b=2" {
		t.Errorf("nodeLabels = %q", s)
	}
	bad := Config{Name: "n1", Netns: "x", Dir: "/tmp/x", NodeIP: "10.0.0.1,10.0.0.2,10.0.0.3", APIServer: "https://x",
		CACertPEM: []byte("ca"), Token: "t", CNIBinDir: "/b", CNIConfDir: "/c", Images: []string{}}
	if err := bad.defaults(); err == nil {
		t.Error("three node IPs accepted")
	}
	dual := bad
	dual.NodeIP = "10.0.0.1,fd00::1"
	if err := dual.defaults(); err != nil {
		t.Errorf("dual-stack NodeIP: %v", err)
	}
}

// The directory the nodes mount over is removed only if they made it and
// it holds nothing else, whichever node made it.
func TestMarkedDir(t *testing.T) {
	const marker = ".ours"
	base := t.TempDir()
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }

	made := filepath.Join(base, "made")
	if err := ensureMarkedDir(made, marker); err != nil {
		t.Fatal(err)
	}
	if !exists(filepath.Join(made, marker)) {
		t.Fatal("a directory we made has no marker")
	}
	if err := ensureMarkedDir(made, marker); err != nil { // a second node
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(made, "in-use"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removeMarkedDir(made, marker)
	if !exists(made) {
		t.Error("removed a marked directory that holds something else")
	}
	os.Remove(filepath.Join(made, "in-use"))
	removeMarkedDir(made, marker)
	if exists(made) {
		t.Error("a marked directory holding only its marker was left")
	}

	before := filepath.Join(base, "before")
	if err := os.Mkdir(before, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ensureMarkedDir(before, marker); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(before, marker)) {
		t.Error("marked a directory that was there before")
	}
	removeMarkedDir(before, marker)
	if !exists(before) {
		t.Error("removed an empty directory that was there before")
	}
}
