package main

import (
	"os"
	"path/filepath"

	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/lab"
)

// kubeFlags are up's Kubernetes-mode flags.
type kubeFlags struct {
	enabled   bool
	binDir    string
	manifests string
}

// options returns the lab's Kubernetes options, or nil in static mode.
func (k *kubeFlags) options() *lab.KubernetesOptions {
	if !k.enabled {
		return nil
	}
	return &lab.KubernetesOptions{Start: k8sharness.LabStarter(k.binDir), ManifestsDir: k.manifests, NodeBinDir: k.binDir}
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
