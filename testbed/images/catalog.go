package images

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Names the images are tagged with: those k8s.io/kubernetes v1.36.0's
// test/utils/image/manifest.go gives them (e2e pulls by these names with
// imagePullPolicy IfNotPresent, so an imported image is used as is), plus
// containerd's sandbox image and CoreDNS.
const (
	K8sVersion = "v1.36.0"

	PauseImage              = "registry.k8s.io/pause:3.10.2" // GetPauseImageName(); containerd's sandbox_image
	AgnhostImage            = "registry.k8s.io/e2e-test-images/agnhost:2.63.0"
	AgnhostPrevImage        = "registry.k8s.io/e2e-test-images/agnhost:2.55"
	GlibcDNSTestingImage    = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.0.0"
	BusyBoxImage            = "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
	NginxImage              = "registry.k8s.io/e2e-test-images/nginx:1.15-4"
	NginxNewImage           = "registry.k8s.io/e2e-test-images/nginx:1.27-0"
	RegressionIssue74839    = "registry.k8s.io/e2e-test-images/regression-issue-74839:1.4"
	DistrolessIptablesImage = "registry.k8s.io/build-image/distroless-iptables:v0.9.1"
	CoreDNSVersion          = "v1.14.7"
	CoreDNSImage            = "registry.k8s.io/coredns/coredns:" + CoreDNSVersion
)

//go:embed pause/main.go
var pauseSource []byte

// Spec is one archive of the catalog: a file name and how to assemble its
// images.
type Spec struct {
	Name string // archive file is NAME.tar
	// Why says which specs need it (for the listing of `podroute-images list`).
	Why      string
	Assemble func(ctx context.Context, b *builder) ([]Image, error)
}

// Catalog is every archive Build makes. Images e2e's manifest.go knows but
// the sig-network specs do not pull (ResourceConsumer for autoscaling, the
// NFS/iSCSI volume servers, AppArmorLoader, node-perf, ...) are not built;
// see NotBuilt.
var Catalog = []Spec{
	{"pause", "every pod's sandbox (containerd sandbox_image); Deployments in service_latency.go", assemblePause},
	{"busybox", "e2e's default test image on Linux (framework/pod GetDefaultTestImage)", assembleBusybox},
	{"agnhost", "nearly every network spec (netexec, connect, serve-hostname, /coredns, nc, curl, dig); glibc-dns-testing probes in the DNS specs", assembleAgnhost},
	{"coredns", "the cluster DNS Deployment (kube-dns Service)", assembleCoreDNS},
	{"nginx", "Endpoints and EndpointSlice Conformance specs (pods that only need to run)", assembleNginx},
	{"regression-issue-74839", "Conntrack: proxy implementation should not be vulnerable to the invalid conntrack state bug", assembleRegression},
	{"distroless-iptables", "KubeProxy: should set TCP CLOSE_WAIT timeout (conntrack in a hostNetwork pod)", assembleDistrolessIptables},
}

// NotBuilt lists images of manifest.go that no sig-network spec pulls, with
// the reason each is left out.
var NotBuilt = map[string]string{
	"resource-consumer":            "autoscaling specs only",
	"volume/nfs, volume/iscsi":     "storage specs only",
	"apparmor-loader":              "node specs only; no AppArmor on this kernel",
	"sample-apiserver":             "apimachinery aggregator spec only",
	"etcd:3.6.8-0":                 "etcd upgrade specs only",
	"kitten, nautilus, nonewprivs": "node and apps specs only",
	"nonroot, perl, ipc-utils":     "node specs only",
	"node-perf/*":                  "node performance specs only",
	"agnhost:2.6 (private)":        "authenticated-registry pull specs; needs a registry by design",
	"invalid.registry.k8s.io/...":  "meant to fail to pull",
}

// builder holds what the assemble functions share.
type builder struct {
	opt     Options
	workDir string
}

func (b *builder) bin(name string) (string, error) {
	p := filepath.Join(b.opt.BinDir, name)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("images: %s missing; build it with `make e2e-tools` (directory $PODROUTE_K8S_BIN, default ~/.cache/podroute/k8s-%s)", p, K8sVersion)
	}
	return p, nil
}

// host returns the host path of a tool from a Debian package, or an error
// naming the package (`make images-deps` installs them all).
func host(path, pkg string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("images: %s missing: install the Debian package %s (make images-deps)", path, pkg)
	}
	return path, nil
}

func hostAll(pairs ...string) ([]string, error) {
	var out []string
	for i := 0; i < len(pairs); i += 2 {
		p, err := host(pairs[i], pairs[i+1])
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (b *builder) busybox(ctx context.Context) (string, error) {
	dir, err := DebianPackage(ctx, b.opt.Dir, "busybox-static")
	if err != nil {
		return "", err
	}
	for _, p := range []string{"bin/busybox", "usr/bin/busybox"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			return filepath.Join(dir, p), nil
		}
	}
	return "", fmt.Errorf("images: no busybox in %s", dir)
}

func assemblePause(ctx context.Context, b *builder) ([]Image, error) {
	src := filepath.Join(b.workDir, "pause-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), pauseSource, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module pause\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(b.workDir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if o, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("images: building pause: %w: %s", err, o)
	}
	t := NewTree()
	if err := t.HostFile("pause", out); err != nil {
		return nil, err
	}
	return []Image{{Tags: []string{PauseImage}, Layers: []*Tree{t}, Config: Config{Entrypoint: []string{"/pause"}}}}, nil
}

func assembleBusybox(ctx context.Context, b *builder) ([]Image, error) {
	bb, err := b.busybox(ctx)
	if err != nil {
		return nil, err
	}
	t := NewTree()
	if err := t.MergedUsr(); err != nil {
		return nil, err
	}
	// Debian's busybox-static is 1.35; the tag is the one e2e asks for.
	// Its `wget -T N` segfaults (exit 139); plain wget works.
	if err := t.BusyboxApplets(ctx, bb); err != nil {
		return nil, err
	}
	if err := t.Accounts(nil, nil); err != nil {
		return nil, err
	}
	return []Image{{Tags: []string{BusyBoxImage}, Layers: []*Tree{t}, Config: Config{Cmd: []string{"sh"}}}}, nil
}

// toolsTree is the base of the images that run shell scripts from e2e
// specs: bash as /bin/sh (busybox's ash runs its own applets before $PATH,
// so `sh -c 'nc -u ...'` would get busybox's nc without -u), the Debian
// tools given with their libraries, and busybox applets for everything else
// (seq, sleep, awk, hostname, ...).
func (b *builder) toolsTree(ctx context.Context, bins []string, links map[string]string) (*Tree, error) {
	bb, err := b.busybox(ctx)
	if err != nil {
		return nil, err
	}
	t := NewTree()
	if err := t.MergedUsr(); err != nil {
		return nil, err
	}
	if err := t.CopyBinaries(ctx, bins...); err != nil {
		return nil, err
	}
	for l, target := range links {
		if err := t.Symlink(l, target); err != nil {
			return nil, err
		}
	}
	if err := t.Symlink("usr/bin/sh", "bash"); err != nil {
		return nil, err
	}
	// Applets that would shadow or stand in for the real tools are left
	// out even where the real tool is missing, so a spec fails loudly
	// rather than running busybox's variant.
	if err := t.BusyboxApplets(ctx, bb, "sh", "ash", "nc", "ip", "ss", "nslookup", "wget", "ping", "ping6",
		"traceroute", "traceroute6", "iptables", "ip6tables", "netstat", "route", "arp", "ifconfig"); err != nil {
		return nil, err
	}
	return t, nil
}

func assembleAgnhost(ctx context.Context, b *builder) ([]Image, error) {
	agn, err := b.bin("agnhost")
	if err != nil {
		return nil, err
	}
	coredns, err := b.bin("coredns")
	if err != nil {
		return nil, err
	}
	bins, err := hostAll(
		"/usr/bin/bash", "bash",
		"/usr/bin/curl", "curl",
		"/usr/bin/wget", "wget",
		"/usr/bin/nc.openbsd", "netcat-openbsd",
		"/usr/bin/ip", "iproute2",
		"/usr/bin/ss", "iproute2",
		"/usr/bin/dig", "bind9-dnsutils",
		"/usr/bin/nslookup", "bind9-dnsutils",
		"/usr/bin/host", "bind9-host",
		"/usr/bin/getent", "libc-bin",
	)
	if err != nil {
		return nil, err
	}
	t, err := b.toolsTree(ctx, bins, map[string]string{"usr/bin/nc": "nc.openbsd"})
	if err != nil {
		return nil, err
	}
	// What agnhost's Dockerfile adds: the binary and its second name (for
	// the entrypoint-tester specs), porter's TLS pair, netexec's /uploads,
	// CoreDNS at /coredns (DNS specs run it as a server), and a user and
	// group for the SupplementalGroups specs. Left out: iperf (only the
	// [Feature:Networking-Performance] specs), ipcs (SELinux node specs) and
	// the fake registry's /var/registry (image-pull node specs).
	certs, err := agnhostSourceDir(ctx)
	if err != nil {
		return nil, err
	}
	steps := []error{
		t.HostFile("agnhost", agn),
		t.Symlink("agnhost-2", "agnhost"),
		t.HostFile("coredns", coredns),
		t.HostFile("localhost.crt", filepath.Join(certs, "porter", "localhost.crt")),
		t.HostFile("localhost.key", filepath.Join(certs, "porter", "localhost.key")),
		t.Dir("uploads", 0o755),
		t.Accounts([]User{{"user-defined-in-image", 1000, 1000, "/home/user-defined-in-image", "/bin/sh"}},
			[]Group{{"user-defined-in-image", 1000, nil}, {"group-defined-in-image", 50000, []string{"user-defined-in-image"}}}),
		t.DirOwned("home/user-defined-in-image", 0o755, 1000, 1000),
	}
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}
	ports := []string{"80/tcp", "8080/tcp", "8081/tcp", "9376/tcp", "5000/tcp"}
	return []Image{
		{Tags: []string{AgnhostImage, AgnhostPrevImage}, Layers: []*Tree{t},
			Config: Config{Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}, ExposedPorts: ports}},
		// glibc-dns-testing is Debian with dnsutils and /coredns: the same
		// root filesystem (its tools are glibc-linked Debian ones), run
		// without agnhost's entrypoint.
		{Tags: []string{GlibcDNSTestingImage}, Layers: []*Tree{t}, Config: Config{Cmd: []string{"/bin/bash"}}},
	}, nil
}

// agnhostSourceDir finds test/images/agnhost of k8s.io/kubernetes in the Go
// module cache (make e2e-tools downloaded it).
func agnhostSourceDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMODCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("images: go env GOMODCACHE: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "k8s.io", "kubernetes@"+K8sVersion, "test", "images", "agnhost")
	if _, err := os.Stat(filepath.Join(dir, "porter", "localhost.crt")); err != nil {
		return "", fmt.Errorf("images: k8s.io/kubernetes@%s not in the module cache (%v); run `make e2e-tools`", K8sVersion, err)
	}
	return dir, nil
}

func assembleCoreDNS(ctx context.Context, b *builder) ([]Image, error) {
	c, err := b.bin("coredns")
	if err != nil {
		return nil, err
	}
	t := NewTree()
	if err := t.HostFile("coredns", c); err != nil {
		return nil, err
	}
	if err := t.Accounts(nil, nil); err != nil {
		return nil, err
	}
	return []Image{{Tags: []string{CoreDNSImage}, Layers: []*Tree{t},
		Config: Config{Entrypoint: []string{"/coredns"}, ExposedPorts: []string{"53/tcp", "53/udp"}}}}, nil
}

const nginxConf = `# podroute lab: nginx as the e2e nginx image runs it, in the foreground.
user nobody nogroup;
worker_processes 1;
error_log stderr notice;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
    access_log /dev/stdout;
    default_type text/html;
    server {
        listen 80;
        listen [::]:80;
        root /usr/share/nginx/html;
        index index.html;
    }
}
`

func assembleNginx(ctx context.Context, b *builder) ([]Image, error) {
	dir, err := DebianPackage(ctx, b.opt.Dir, "nginx")
	if err != nil {
		return nil, err
	}
	bb, err := b.busybox(ctx)
	if err != nil {
		return nil, err
	}
	ngx := filepath.Join(dir, "usr", "sbin", "nginx")
	libs, err := LibraryClosure(ctx, ngx)
	if err != nil {
		return nil, fmt.Errorf("%w (nginx's libraries come from the machine's installed packages)", err)
	}
	t := NewTree()
	if err := t.MergedUsr(); err != nil {
		return nil, err
	}
	steps := []error{t.HostFile("usr/sbin/nginx", ngx)}
	for _, l := range libs {
		steps = append(steps, t.CopyHost(l))
	}
	steps = append(steps,
		t.BusyboxApplets(ctx, bb),
		t.Accounts(nil, nil),
		t.File("etc/nginx/nginx.conf", 0o644, []byte(nginxConf)),
		t.File("usr/share/nginx/html/index.html", 0o644, []byte("<html><body><h1>Welcome to nginx!</h1></body></html>\n")),
		t.Dir("var/log/nginx", 0o755),
		t.Dir("var/lib/nginx/body", 0o755),
		t.Dir("run", 0o755),
	)
	for _, err := range steps {
		if err != nil {
			return nil, err
		}
	}
	// nginx's compiled-in temp paths must be writable by the workers.
	for _, d := range []string{"proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := t.DirOwned("var/lib/nginx/"+d, 0o755, 65534, 65534); err != nil {
			return nil, err
		}
	}
	if err := t.DirOwned("var/lib/nginx/body", 0o755, 65534, 65534); err != nil {
		return nil, err
	}
	return []Image{{Tags: []string{NginxImage, NginxNewImage}, Layers: []*Tree{t},
		Config: Config{Cmd: []string{"/usr/sbin/nginx", "-g", "daemon off;"}, ExposedPorts: []string{"80/tcp"}, StopSignal: "SIGQUIT"}}}, nil
}

func assembleRegression(ctx context.Context, b *builder) ([]Image, error) {
	p, err := b.bin("regression-issue-74839")
	if err != nil {
		return nil, err
	}
	t := NewTree()
	if err := t.HostFile("regression-issue-74839", p); err != nil {
		return nil, err
	}
	return []Image{{Tags: []string{RegressionIssue74839}, Layers: []*Tree{t},
		Config: Config{Entrypoint: []string{"/regression-issue-74839"}}}}, nil
}

func assembleDistrolessIptables(ctx context.Context, b *builder) ([]Image, error) {
	bins, err := hostAll(
		"/usr/bin/bash", "bash",
		"/usr/sbin/conntrack", "conntrack",
		"/usr/sbin/xtables-nft-multi", "iptables",
		"/usr/sbin/xtables-legacy-multi", "iptables",
	)
	if err != nil {
		return nil, err
	}
	// iptables' match and target extensions are loaded with dlopen.
	ext, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	bins = append(bins, ext...)
	links := map[string]string{}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suf := range []string{"", "-save", "-restore"} {
			links["usr/sbin/"+fam+suf] = "xtables-nft-multi"
			links["usr/sbin/"+fam+"-nft"+suf] = "xtables-nft-multi"
			links["usr/sbin/"+fam+"-legacy"+suf] = "xtables-legacy-multi"
		}
	}
	t, err := b.toolsTree(ctx, bins, links)
	if err != nil {
		return nil, err
	}
	if err := t.Accounts(nil, nil); err != nil {
		return nil, err
	}
	return []Image{{Tags: []string{DistrolessIptablesImage}, Layers: []*Tree{t}, Config: Config{Cmd: []string{"/bin/sh"}}}}, nil
}
