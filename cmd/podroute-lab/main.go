package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/netns"
	"github.com/podroute/podroute/testbed/topology"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	var exit exitCode
	switch {
	case errors.As(err, &exit):
		os.Exit(int(exit))
	case err != nil:
		fmt.Fprintln(os.Stderr, "podroute-lab:", err)
		os.Exit(1)
	}
}

// exitCode passes a command's exit status through without a message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

type globalFlags struct {
	stateDir string
	binDir   string
	keep     bool
}

func newRoot() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:           "podroute-lab",
		Short:         "Build podroute's lab: FRR routers, podrouted nodes and pods in network namespaces",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", lab.DefaultStateDir, "where the lab keeps its state, configs and logs")
	root.PersistentFlags().StringVar(&g.binDir, "bin-dir", defaultBinDir(), "directory holding podrouted and podroute")
	root.AddCommand(upCmd(g), statusCmd(g), downCmd(g), execCmd(g), topologiesCmd(), e2eCmd(g))
	root.AddCommand(clabCmd(g))
	return root
}

// defaultBinDir is the directory of this executable: `make lab` builds
// every binary into bin/.
func defaultBinDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	return filepath.Dir(exe)
}

func (g *globalFlags) options(cmd *cobra.Command) lab.Options {
	return lab.Options{StateDir: g.stateDir, BinDir: g.binDir, Out: cmd.OutOrStdout(), KeepOnFailure: g.keep}
}

func upCmd(g *globalFlags) *cobra.Command {
	var topoName string
	var kube kubeFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Build the lab, wait until it has converged, show sessions and pod-to-pod reachability",
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if os.Geteuid() != 0 {
				return errors.New("the lab creates network namespaces: run it as root (sudo)")
			}
			pkgs := append([]string(nil), lab.Packages...)
			if kube.enabled {
				pkgs = append(pkgs, lab.KubePackages...)
			}
			if err := lab.EnsurePackages(out, pkgs); err != nil {
				return err
			}
			if kube.enabled {
				if err := k8sharness.CheckBinaries(kube.binDir, "", true); err != nil {
					return err
				}
				if _, err := os.Stat(filepath.Join(kube.manifests, "01-crds.yaml")); err != nil {
					return fmt.Errorf("podroute's manifests not found (%v): pass --manifests DIR (the repository's manifests/)", err)
				}
			}
			if err := g.checkPodrouteBinaries(); err != nil {
				return err
			}
			topo, err := topology.Load(topoName)
			if err != nil {
				return err
			}
			opts := g.options(cmd)
			opts.Kubernetes = kube.options()
			l, err := lab.Up(cmd.Context(), topo, opts)
			if err != nil {
				return err
			}
			return report(cmd, l, true)
		},
	}
	cmd.Flags().StringVar(&topoName, "topology", "leafspine", "built-in topology ("+joinNames()+") or a YAML file")
	cmd.Flags().BoolVar(&kube.enabled, "kubernetes", false, "Kubernetes mode: a control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) in namespace cp on the first LAN, and real nodes (containerd, kubelet, kube-proxy) beside podrouted, which learns nodes, pod CIDRs and peers from the API server; CoreDNS; the pods are real Pods")
	cmd.Flags().StringVar(&kube.binDir, "k8s-bin-dir", k8sharness.DefaultBinDir(), "directory holding kube-apiserver, kube-controller-manager, kubectl (make k8s-tools), kubelet, kube-proxy and kube-scheduler (make k8s-node-tools)")
	cmd.Flags().StringVar(&kube.manifests, "manifests", defaultManifestsDir(defaultBinDir()), "podroute's manifests directory (Kubernetes mode applies 00-namespace, 01-crds and 02-rbac from it)")
	cmd.Flags().BoolVar(&g.keep, "keep-on-failure", false, "leave a lab that did not come up in place for inspection")
	return cmd
}

func joinNames() string {
	s := ""
	for i, n := range topology.BuiltinNames() {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// report prints the sessions and the reachability matrix; it fails when a
// pod pair is unreachable.
func report(cmd *cobra.Command, l *lab.Lab, hints bool) error {
	out := cmd.OutOrStdout()
	if l.Kubernetes() {
		fmt.Fprintf(out, "\nKubernetes\n")
		l.PrintKubernetes(cmd.Context(), out)
		fmt.Fprintf(out, "\nMemory (RSS)\n")
		l.Memory().Print(out)
	}
	fmt.Fprintf(out, "\nBGP sessions\n")
	l.PrintSessions(cmd.Context(), out)
	fmt.Fprintf(out, "\nPod-to-pod reachability (ping)\n")
	m := l.PingMatrix(cmd.Context())
	m.Print(out)
	if hints {
		n := l.Plan.Nodes[0].Name
		fmt.Fprintf(out, "\nLook around:\n"+
			"  podroute-lab exec %s -- podroute status     # the node's BGP sessions\n"+
			"  podroute-lab exec %s -- ip route            # its kernel routes (podroute's: proto %d)\n", n, n, topology.RouteProtocol)
		if len(l.Plan.Routers) > 0 {
			r := l.Plan.Routers[0].Name
			fmt.Fprintf(out, "  podroute-lab exec %s -- vtysh -N %s -c 'show bgp summary'\n", r, l.RunID()+"-"+r)
		}
		if l.Kubernetes() {
			fmt.Fprintf(out, "  podroute-lab exec %s -- kubectl get nodes,bgppeers   # the control plane (admin kubeconfig)\n", lab.KubeCPElement)
			fmt.Fprintf(out, "  podroute-lab exec %s -- kubectl get pods -A -o wide\n", lab.KubeCPElement)
			if pods := l.Pods(); len(pods) > 0 {
				if ip, err := l.Kubectl(cmd.Context(), "get", "service", "-n", lab.KubePodNamespace, lab.KubePodService, "-o", "jsonpath={.spec.clusterIP}"); err == nil {
					fmt.Fprintf(out, "  podroute-lab exec %s -- curl -s http://%s/hostname   # pod -> ClusterIP Service %s/%s (kube-proxy) -> a lab pod\n",
						pods[0].Name, ip, lab.KubePodNamespace, lab.KubePodService)
				}
			}
			fmt.Fprintf(out, "  podroute-lab e2e                                      # Kubernetes' own sig-network specs against a fresh lab\n")
		}
		fmt.Fprintf(out, "  podroute-lab status | podroute-lab down\n")
	}
	if !m.AllOK() {
		return fmt.Errorf("%d pod pairs unreachable", m.Failures())
	}
	return nil
}

func statusCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running lab's BGP sessions and pod-to-pod reachability",
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Attach(g.options(cmd))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s, topology %s\n", l.RunID(), l.Plan.Topology.Name)
			return report(cmd, l, false)
		},
	}
}

func downCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Remove everything the lab made (works after a crash too)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := lab.ReadState(g.stateDir)
			if err != nil {
				return err
			}
			if st == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "no lab is up")
				return nil
			}
			// Pods go through CNI DEL as kubelet would; if the lab cannot
			// even be read back, plain teardown still removes everything.
			teardown := func() error { return lab.Teardown(g.stateDir) }
			if l, err := lab.Attach(g.options(cmd)); err == nil {
				teardown = l.Down
			}
			if err := teardown(); err != nil {
				return err
			}
			left, err := netns.List(st.RunID + "-")
			if err != nil {
				return err
			}
			if len(left) > 0 {
				return fmt.Errorf("namespaces left behind: %v", left)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "lab %s removed: %d namespaces, %d processes, %d FRR instances\n",
				st.RunID, len(st.Namespaces), len(st.Processes), len(st.FRR))
			return nil
		},
	}
}

func execCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "exec NAME -- COMMAND [ARG...]",
		Short: "Run a command inside a router, node or pod namespace",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Attach(g.options(cmd))
			if err != nil {
				return err
			}
			c, err := l.Command(cmd.Context(), args[0], args[1:]...)
			if err != nil {
				return err
			}
			c.Env = l.Env(args[0])
			c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := c.Run(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					return exitCode(ee.ExitCode())
				}
				return err
			}
			return nil
		},
	}
}

func topologiesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "topologies",
		Short: "List the built-in topologies",
		Run: func(cmd *cobra.Command, _ []string) {
			for _, n := range topology.BuiltinNames() {
				fmt.Fprintf(cmd.OutOrStdout(), "%-10s %s\n", n, topology.Builtins()[n].Description)
			}
		},
	}
}

// checkPodrouteBinaries reports the first of podroute's binaries missing
// from the lab's bin directory, with how to build it.
func (g *globalFlags) checkPodrouteBinaries() error {
	for _, bin := range []string{"podrouted", "podroute", "podroute-cni"} {
		if _, err := os.Stat(filepath.Join(g.binDir, bin)); err != nil {
			return fmt.Errorf("%s not found in %s: build with `make build` or pass --bin-dir", bin, g.binDir)
		}
	}
	return nil
}
