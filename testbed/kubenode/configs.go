package kubenode

import (
	"bytes"
	"encoding/base64"
	"text/template"
)

// templateT is text/template's Template.
type templateT = template.Template

var containerdTmpl = template.Must(template.New("containerd").Parse(`# containerd 1.6 of lab node {{.Name}}: every path its own.
version = 2
root = "{{.D}}/ctd/root"
state = "{{.D}}/ctd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{{.Socket}}"
[ttrpc]
  address = "{{.Socket}}.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{{.D}}/ctd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.PauseImage}}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # This kind of machine lacks CAP_SYS_RESOURCE: no process may lower its
  # oom_score_adj, and runc fails when CRI asks for -998 for the sandbox.
  # Clamp every container to containerd's own score instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{{.D}}/ctd/runc"
  [plugins."io.containerd.grpc.v1.cri".registry]
    # hosts.toml per registry: pulls fail at once (see deadRegistries).
    config_path = "{{.D}}/ctd/hosts"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBinDir}}"
    conf_dir = "{{.CNIConfDir}}"
    max_conf_num = 1
`))

var kubeletTmpl = template.Must(template.New("kubelet").Parse(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1 (hybrid) machine, no systemd: cgroupfs, and v1 allowed.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: {{.CgroupRoot}}
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
containerRuntimeEndpoint: unix://{{.Socket}}
imageServiceEndpoint: unix://{{.Socket}}
podLogsDir: {{.D}}/podlogs
volumePluginDir: {{.D}}/volume-plugins
address: {{.NodeIP}}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# The API server execs and reads logs without a client certificate.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
failSwapOn: false
# The six kernel tunables are shadowed in the node's mount namespace with
# the values kubelet wants, so it finds nothing to change.
protectKernelDefaults: false
clusterDNS: [{{.ClusterDNS}}]
clusterDomain: {{.ClusterDomain}}
resolvConf: {{.D}}/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
rotateCertificates: false
serverTLSBootstrap: false
staticPodPath: ""
`))

var proxyTmpl = template.Must(template.New("kube-proxy").Parse(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: {{.D}}/kube-proxy.kubeconfig}
hostnameOverride: {{.Name}}
clusterCIDR: {{.ClusterCIDR}}
mode: {{.ProxyMode}}
# maxPerCore 0: leave nf_conntrack_max (machine-wide) alone. The TCP
# timeouts kube-proxy sets are per network namespace.
conntrack: {maxPerCore: 0, min: 0}
oomScoreAdj: 0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 0.0.0.0:10256
`))

var kubeconfigTmpl = template.Must(template.New("kubeconfig").Parse(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "{{.Server}}", certificate-authority-data: {{.CA}}}
users:
- name: {{.User}}
  user: {token: "{{.Token}}"}
contexts:
- name: lab
  context: {cluster: lab, user: {{.User}}}
current-context: lab
`))

func render(t *template.Template, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// kubeconfig renders a kubeconfig for a bearer token.
func kubeconfig(server string, ca []byte, user, token string) ([]byte, error) {
	return render(kubeconfigTmpl, map[string]string{
		"Server": server, "CA": base64.StdEncoding.EncodeToString(ca), "User": user, "Token": token,
	})
}
