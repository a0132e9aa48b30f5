package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podroute/podroute/testbed/containerlab"
	"github.com/podroute/podroute/testbed/topology"
)

// defaultClabDir is where the committed containerlab files live, relative
// to the repository root.
const defaultClabDir = "testbed/containerlab"

// clabCmd writes (or, with --check, verifies) containerlab files generated
// from the same topology model as the namespace lab. It needs neither root
// nor Docker.
func clabCmd(_ *globalFlags) *cobra.Command {
	var (
		topologies []string
		out        string
		check      bool
		opts       containerlab.Options
	)
	cmd := &cobra.Command{
		Use:   "clab [--topology NAME|FILE]... [--out DIR] [--check]",
		Short: "Write containerlab files (NAME.clab.yml and configs) generated from a lab topology",
		Long: "clab renders a topology (a built-in or a YAML file) as a containerlab topology\n" +
			"DIR/NAME.clab.yml plus the files its containers bind under DIR/NAME/: FRR's\n" +
			"frr.conf and daemons per router, podrouted.yaml per node and the nodes' start\n" +
			"script. Without --topology it does every built-in. --check compares the files\n" +
			"on disk with what would be written and fails, listing the differences, when\n" +
			"they are stale. See " + defaultClabDir + "/README.md to deploy them.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := cmd.OutOrStdout()
			if len(topologies) == 0 {
				topologies = topology.BuiltinNames()
			}
			stale := 0
			for _, name := range topologies {
				topo, err := topology.Load(name)
				if err != nil {
					return err
				}
				plan, err := topology.NewPlan(topo)
				if err != nil {
					return fmt.Errorf("topology %s: %w", name, err)
				}
				files, err := containerlab.Files(plan, opts)
				if err != nil {
					return err
				}
				if check {
					diffs, err := containerlab.Compare(out, topo.Name, files)
					if err != nil {
						return err
					}
					if len(diffs) == 0 {
						fmt.Fprintf(w, "%s: %d files up to date in %s\n", topo.Name, len(files), out)
						continue
					}
					stale += len(diffs)
					fmt.Fprintf(w, "%s: %d of the files in %s are stale:\n", topo.Name, len(diffs), out)
					for _, d := range diffs {
						fmt.Fprintf(w, "  %s\n", d)
					}
					fmt.Fprintf(w, "  regenerate: go run ./cmd/podroute-lab clab --topology %s%s\n", name, outFlag(out))
					continue
				}
				written, removed, err := containerlab.Write(out, topo.Name, files)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "%s: %s (%d files: %d written, %d unchanged, %d removed)\n", topo.Name,
					strings.TrimSuffix(out, "/")+"/"+containerlab.TopologyFile(topo.Name),
					len(files), len(written), len(files)-len(written), len(removed))
				for _, rel := range written {
					fmt.Fprintf(w, "  wrote   %s\n", rel)
				}
				for _, rel := range removed {
					fmt.Fprintf(w, "  removed %s\n", rel)
				}
			}
			if stale > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&topologies, "topology", nil, "built-in topology ("+joinNames()+") or a YAML file; repeat for several (default: every built-in)")
	cmd.Flags().StringVar(&out, "out", defaultClabDir, "directory for NAME.clab.yml and NAME/ (relative paths: from the current directory)")
	cmd.Flags().BoolVar(&check, "check", false, "compare instead of writing; exit 1 when a file is stale")
	cmd.Flags().StringVar(&opts.FRRImage, "frr-image", containerlab.DefaultFRRImage, "container image of the FRR routers")
	cmd.Flags().StringVar(&opts.PodroutedImage, "podrouted-image", containerlab.DefaultPodroutedImage, "container image of the podrouted nodes (build: "+defaultClabDir+"/Dockerfile)")
	cmd.Flags().StringVar(&opts.PodImage, "pod-image", containerlab.DefaultPodImage, "container image of the pods and LAN switches")
	return cmd
}

func outFlag(out string) string {
	if out == defaultClabDir {
		return ""
	}
	return " --out " + out
}
