package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/podroute/podroute/api"
)

func newStatusCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the node, its BGP peers and the prefixes it originates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.callDaemon(cmd.Context(), func(ctx context.Context, c api.StatusClient) error {
				resp, err := c.GetStatus(ctx, &api.GetStatusRequest{})
				if err != nil {
					return err
				}
				if opts.output == outputJSON {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				return renderStatus(cmd.OutOrStdout(), resp, time.Now())
			})
		},
	}
}

func newPeersCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "Show the BGP peers and their sessions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.callDaemon(cmd.Context(), func(ctx context.Context, c api.StatusClient) error {
				resp, err := c.GetStatus(ctx, &api.GetStatusRequest{})
				if err != nil {
					return err
				}
				if opts.output == outputJSON {
					// Only the peers, still in the response's shape so that
					// scripts read the same field names as from `status`.
					return writeJSON(cmd.OutOrStdout(), &api.GetStatusResponse{Peers: resp.GetPeers()})
				}
				return renderPeers(cmd.OutOrStdout(), resp.GetPeers(), time.Now())
			})
		},
	}
}

func newRoutesCommand(opts *options) *cobra.Command {
	var summary bool
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "Show the routes podrouted keeps in the kernel and whether each is there",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.callDaemon(cmd.Context(), func(ctx context.Context, c api.StatusClient) error {
				resp, err := c.ListRoutes(ctx, &api.ListRoutesRequest{SummaryOnly: summary})
				if err != nil {
					return err
				}
				if opts.output == outputJSON {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				if summary {
					return renderRouteSummary(cmd.OutOrStdout(), resp.GetSummary())
				}
				return renderRoutes(cmd.OutOrStdout(), resp)
			})
		},
	}
	cmd.Flags().BoolVar(&summary, "summary", false, "only the counts (answered without listing the table, fast at any size)")
	return cmd
}

func newPolicyCommand(opts *options) *cobra.Command {
	return &cobra.Command{
		Use:   "policy",
		Short: "Show, per pod on this node, the NetworkPolicies that isolate it and the rules it passes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return opts.callDaemon(cmd.Context(), func(ctx context.Context, c api.StatusClient) error {
				resp, err := c.GetPolicy(ctx, &api.GetPolicyRequest{})
				if err != nil {
					return err
				}
				if opts.output == outputJSON {
					return writeJSON(cmd.OutOrStdout(), resp)
				}
				return renderPolicy(cmd.OutOrStdout(), resp)
			})
		},
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's version (the daemon's is in `podroute status`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "podroute %s\n", version)
			return err
		},
	}
}
