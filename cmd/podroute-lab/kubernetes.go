package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/podroute/podroute/testbed"
	k8sharness "github.com/podroute/podroute/testbed/k8s"
)

// kubeFlags are up's Kubernetes-mode flags.
type kubeFlags struct {
	enabled   bool
	binDir    string
	manifests string
}

// options returns the lab's Kubernetes options, or nil in static mode.
func (k *kubeFlags) options() *testbed.KubernetesOptions {
	if !k.enabled {
		return nil
	}
	return &testbed.KubernetesOptions{Start: startControlPlane(k.binDir), ManifestsDir: k.manifests}
}

// startControlPlane starts k8sharness's control plane for the lab (the
// testbed package cannot import k8sharness, which imports it).
func startControlPlane(binDir string) testbed.KubeStartFunc {
	return func(ctx context.Context, s testbed.KubeControlPlaneSpec) (testbed.KubeControlPlane, error) {
		cp, err := k8sharness.Start(ctx, k8sharness.Options{
			Dir: s.Dir, BinDir: binDir, Netns: s.Netns, BindAddress: s.BindAddress, APIServerPort: s.Port,
			ControllerManager: &k8sharness.ControllerManagerOptions{
				ClusterCIDRs: s.ClusterCIDRs, NodeCIDRMaskSizeIPv4: s.NodeCIDRMaskSizeIPv4, NodeCIDRMaskSizeIPv6: s.NodeCIDRMaskSizeIPv6,
			},
			Logf: s.Logf,
		})
		if err != nil {
			return nil, err
		}
		return labControlPlane{cp, binDir}, nil
	}
}

var _ testbed.KubeControlPlane = labControlPlane{}

// labControlPlane adds what the lab records to k8sharness's control plane.
type labControlPlane struct {
	*k8sharness.ControlPlane
	binDir string
}

func (c labControlPlane) LabInfo() testbed.KubeControlPlaneInfo {
	info := testbed.KubeControlPlaneInfo{
		URL: c.URL, AdminKubeconfig: c.AdminKubeconfig,
		Kubectl: filepath.Join(c.binDir, k8sharness.Kubectl),
		LogDir:  filepath.Dir(c.LogPath(k8sharness.Etcd)),
	}
	for _, p := range c.Processes() {
		info.Processes = append(info.Processes, testbed.ProcessState{Name: p.Name, PID: p.PID, Marker: p.Marker})
	}
	return info
}

// defaultManifestsDir is manifests/ of the source tree: from the current
// directory (a clone), else next to bin/ (`make lab` builds into bin/).
func defaultManifestsDir(binDir string) string {
	for _, d := range []string{"manifests", filepath.Join(binDir, "..", "manifests")} {
		if _, err := os.Stat(filepath.Join(d, "01-crds.yaml")); err == nil {
			abs, err := filepath.Abs(d)
			if err == nil {
				return abs
			}
			return d
		}
	}
	return "manifests"
}
