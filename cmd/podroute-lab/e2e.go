package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	k8sharness "github.com/podroute/podroute/testbed/k8s"
	"github.com/podroute/podroute/testbed/k8se2e"
	"github.com/podroute/podroute/testbed/lab"
	"github.com/podroute/podroute/testbed/topology"
)

func e2eCmd(g *globalFlags) *cobra.Command {
	var (
		suites    string
		focus     string
		procs     int
		reportDir string
		timeout   time.Duration
		topoName  string
		running   bool
		keep      bool
		kube      kubeFlags
	)
	cmd := &cobra.Command{
		Use:   "e2e",
		Short: "Run Kubernetes' own sig-network e2e specs against a fresh real-node lab (or the running one), print the report, tear down",
		Long: "e2e brings up the real-node lab (--kubernetes), runs the upstream e2e.test through ginkgo from the control plane's\n" +
			"namespace, prints ginkgo's summary, the time, the memory of each node and of the control plane, the JUnit\n" +
			"report's path and a closing line `N passed, M failed`, and tears the lab down. Suites:\n" + suiteHelp() +
			"Skip list (what this machine cannot run), applied to every suite:\n" + k8se2e.SkipText(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if os.Geteuid() != 0 {
				return errors.New("the lab creates network namespaces and runs kubelets: run it as root (sudo)")
			}
			if err := k8se2e.CheckBinaries(kube.binDir); err != nil {
				return err
			}
			if reportDir == "" {
				reportDir = filepath.Join("e2e-report", time.Now().Format("20060102-150405"))
			}
			abs, err := filepath.Abs(reportDir)
			if err != nil {
				return err
			}
			o := k8se2e.Options{Suites: strings.Split(suites, ","), Focus: focus, Procs: procs, ReportDir: abs,
				BinDir: kube.binDir, Timeout: timeout, Out: out}
			var res *k8se2e.Result
			if running {
				l, err := lab.Attach(g.options(cmd))
				if err != nil {
					return err
				}
				res, err = k8se2e.RunOnLab(cmd.Context(), l, o)
				if res != nil {
					res.Print(out)
				}
				return e2eExit(res, err)
			}
			if err := lab.EnsurePackages(out, append(append([]string(nil), lab.Packages...), lab.KubePackages...)); err != nil {
				return err
			}
			if err := k8sharness.CheckBinaries(kube.binDir, "", true); err != nil {
				return err
			}
			if err := g.checkPodrouteBinaries(); err != nil {
				return err
			}
			topo, err := topology.Load(topoName)
			if err != nil {
				return err
			}
			lo := g.options(cmd)
			lo.Kubernetes = k8se2e.LabOptions(kube.binDir, kube.manifests)
			if keep {
				// Bring it up here and leave it: RunOnLab, no Down.
				l, err := lab.Up(cmd.Context(), topo, lo)
				if err != nil {
					return err
				}
				res, err = k8se2e.RunOnLab(cmd.Context(), l, o)
				if res != nil {
					res.Print(out)
				}
				fmt.Fprintf(out, "the lab stays up (--keep-lab): podroute-lab --state-dir %s down removes it\n", g.stateDir)
				return e2eExit(res, err)
			}
			res, err = k8se2e.Run(cmd.Context(), topo, lo, o)
			if res != nil {
				res.Print(out)
			}
			return e2eExit(res, err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&suites, "suite", "network", "suites to run one after the other on the same lab, comma-separated")
	f.StringVar(&focus, "focus", "", "a ginkgo focus regexp replacing the suite's (the skip list still applies)")
	f.IntVar(&procs, "procs", 0, "ginkgo processes (0: the suite's default)")
	f.StringVar(&reportDir, "report-dir", "", "where the JUnit reports and ginkgo's output go (default e2e-report/DATE-TIME)")
	f.DurationVar(&timeout, "timeout", 90*time.Minute, "ginkgo's --timeout per suite")
	f.StringVar(&topoName, "topology", "leafspine", "built-in topology or a YAML file")
	f.BoolVar(&running, "running", false, "run against the lab that is up in --state-dir (Kubernetes mode) instead of a fresh one; it stays up")
	f.BoolVar(&keep, "keep-lab", false, "leave the fresh lab up afterwards")
	f.StringVar(&kube.binDir, "k8s-bin-dir", k8sharness.DefaultBinDir(), "directory holding the Kubernetes binaries, e2e.test and ginkgo (make k8s-tools k8s-node-tools e2e-tools)")
	f.StringVar(&kube.manifests, "manifests", defaultManifestsDir(defaultBinDir()), "podroute's manifests directory")
	return cmd
}

// e2eExit fails the command when a spec failed or the run broke.
func e2eExit(res *k8se2e.Result, err error) error {
	if err != nil {
		return err
	}
	if res.Total.Failed > 0 {
		return exitCode(1)
	}
	return nil
}

func suiteHelp() string {
	var b strings.Builder
	for _, s := range k8se2e.Suites {
		fmt.Fprintf(&b, "  %-12s %s\n", s.Name, s.About)
	}
	return b.String()
}
