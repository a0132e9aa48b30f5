package lab

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Packages are the Debian packages the lab needs.
var Packages = []string{"frr", "iproute2", "iputils-ping", "tcpdump"}

// MissingPackages returns the packages of pkgs that dpkg does not list as
// installed.
func MissingPackages(pkgs []string) []string {
	var missing []string
	for _, p := range pkgs {
		out, err := exec.Command("dpkg-query", "-W", "-f=${Status}", p).Output()
		if err != nil || !strings.Contains(string(out), "ok installed") {
			missing = append(missing, p)
		}
	}
	return missing
}

// EnsurePackages installs missing packages with apt-get when running as
// root, and otherwise says exactly what to install.
func EnsurePackages(out io.Writer, pkgs []string) error {
	missing := MissingPackages(pkgs)
	if len(missing) == 0 {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("missing Debian packages %s: install them with `sudo apt-get install %s`", strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	fmt.Fprintf(out, "installing Debian packages: %s\n", strings.Join(missing, " "))
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("apt-get %s: %w (install %s by hand)", args[0], err, strings.Join(missing, " "))
		}
	}
	return nil
}

// KubePackages are the further Debian packages Kubernetes mode needs: etcd
// for the control plane, and what a real node runs with (containerd 1.6 and
// runc; the reference CNI plugins for loopback, portmap and bandwidth;
// conntrack, nftables and iptables for kube-proxy and the plugins). None of
// them starts a service when installed.
var KubePackages = []string{"etcd-server", "containerd", "runc", "containernetworking-plugins", "conntrack", "nftables", "iptables"}
