package k8sharness

import (
	"context"
	"path/filepath"

	"github.com/podroute/podroute/testbed/lab"
)

// LabStarter adapts Start to the namespace lab's Kubernetes mode
// (lab.KubernetesOptions.Start). It lives here because testbed/lab cannot
// import this package, which imports testbed/lab; cmd/podroute-lab and the
// lab's tests share it.
func LabStarter(binDir string) lab.KubeStartFunc {
	return func(ctx context.Context, s lab.KubeControlPlaneSpec) (lab.KubeControlPlane, error) {
		var tokens []Token
		if s.ProxyToken != "" {
			tokens = append(tokens, Token{Token: s.ProxyToken, User: "system:kube-proxy"})
		}
		cp, err := Start(ctx, Options{
			Dir: s.Dir, BinDir: binDir, Netns: s.Netns, BindAddress: s.BindAddress, APIServerPort: s.Port,
			ServiceClusterIPRanges: s.ServiceClusterIPRanges,
			NodeNames:              s.NodeNames, Tokens: tokens, ExtraAPIServerArgs: s.ExtraAPIServerArgs,
			ControllerManager: &ControllerManagerOptions{
				ClusterCIDRs: s.ClusterCIDRs, NodeCIDRMaskSizeIPv4: s.NodeCIDRMaskSizeIPv4, NodeCIDRMaskSizeIPv6: s.NodeCIDRMaskSizeIPv6,
				Controllers: s.Controllers,
			},
			Logf: s.Logf,
		})
		if err != nil {
			return nil, err
		}
		return labControlPlane{cp, binDir}, nil
	}
}

var _ lab.KubeControlPlane = labControlPlane{}

// labControlPlane adds what the lab records (URL, kubeconfig, PIDs for
// teardown after a crash) to the control plane.
type labControlPlane struct {
	*ControlPlane
	binDir string
}

func (c labControlPlane) LabInfo() lab.KubeControlPlaneInfo {
	info := lab.KubeControlPlaneInfo{
		URL: c.URL, AdminKubeconfig: c.AdminKubeconfig,
		Kubectl: filepath.Join(c.binDir, Kubectl),
		LogDir:  filepath.Dir(c.LogPath(Etcd)),
	}
	for _, p := range c.Processes() {
		info.Processes = append(info.Processes, lab.ProcessState{Name: p.Name, PID: p.PID, Marker: p.Marker})
	}
	return info
}
