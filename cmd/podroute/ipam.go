package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/podroute/podroute/ipam"
)

// The ipam commands read the plugin's store on this node's disk, not the
// daemon: podroute-cni writes it and podrouted does not know about it. They
// only read, without the store's lock (a reader always sees a whole file).

type ipamOptions struct {
	dir      string
	podCIDRs []string
	now      func() time.Time
	// netnsExists tells a live pod from a leaked allocation (os.Stat of
	// the CNI_NETNS recorded at ADD); tests replace it.
	netnsExists func(string) bool
}

func newIPAMCommand(opts *options, getenv func(string) string) *cobra.Command {
	o := &ipamOptions{
		now: time.Now,
		netnsExists: func(p string) bool {
			_, err := os.Stat(p)
			return err == nil
		},
	}
	cmd := &cobra.Command{
		Use:   "ipam",
		Short: "Show this node's pod address allocations (reads the CNI plugin's store)",
		Long: "ipam reads podroute-cni's allocation store on this node and shows, per address family,\n" +
			"how full the pod CIDR is and which container interface holds which address since when.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.load()
			if err != nil {
				return err
			}
			if opts.output == outputJSON {
				return writeIPAMJSON(cmd.OutOrStdout(), ipamJSON(st, nil))
			}
			return renderIPAM(cmd.OutOrStdout(), o.dir, st, o.now())
		},
	}
	flags := cmd.PersistentFlags()
	dir := ipam.DefaultDir
	if env := getenv(ipamDirEnv); env != "" {
		dir = env
	}
	flags.StringVar(&o.dir, "ipam-dir", dir, "podroute-cni's IPAM store (the dataDir of the CNI config; the default comes from "+ipamDirEnv+" if set)")
	flags.StringSliceVar(&o.podCIDRs, "pod-cidr", nil,
		"compare with these pod CIDRs instead of those the plugin last used (after the node's CIDR changed)")
	cmd.AddCommand(&cobra.Command{
		Use:   "check",
		Short: "Report leaked allocations and conflicts; exit non-zero if there are any",
		Long: "check reports allocations whose pod network namespace no longer exists (leaked: CNI GC\n" +
			"or DEL frees them), addresses held by two attachments, and addresses outside the current\n" +
			"pod CIDRs or reserved. It exits non-zero when it finds anything.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := o.load()
			if err != nil {
				return err
			}
			problems := st.Audit(o.netnsExists)
			if opts.output == outputJSON {
				err = writeIPAMJSON(cmd.OutOrStdout(), ipamJSON(st, problems))
			} else {
				err = renderIPAMCheck(cmd.OutOrStdout(), o.dir, st, problems)
			}
			if err != nil {
				return err
			}
			if len(problems) > 0 {
				return fmt.Errorf("ipam check: %d problem(s) in %s", len(problems), o.dir)
			}
			return nil
		},
	})
	return cmd
}

// load reads the store, refusing a directory that has none: a mistyped
// --ipam-dir must not look like an empty, healthy node.
func (o *ipamOptions) load() (ipam.State, error) {
	if _, err := os.Stat(o.dir); err != nil {
		return ipam.State{}, fmt.Errorf("IPAM store %s: %w (is this the node, and is --ipam-dir the plugin's dataDir?)", o.dir, err)
	}
	st, err := ipam.ReadState(o.dir)
	if err != nil {
		return ipam.State{}, err
	}
	if len(o.podCIDRs) > 0 {
		cidrs, err := ipam.ParseCIDRs("--pod-cidr", o.podCIDRs)
		if err != nil {
			return ipam.State{}, err
		}
		st.CIDRs = cidrs
	}
	slices.SortStableFunc(st.Allocations, func(x, y ipam.Allocation) int {
		return compareAllocs(x, y)
	})
	return st, nil
}

// compareAllocs orders allocations by their first address (IPv4 first),
// which is the order an operator scans for.
func compareAllocs(x, y ipam.Allocation) int {
	var ax, ay netip.Addr
	if len(x.Addrs) > 0 {
		ax = x.Addrs[0]
	}
	if len(y.Addrs) > 0 {
		ay = y.Addrs[0]
	}
	return ax.Compare(ay)
}

func renderIPAM(w io.Writer, dir string, st ipam.State, now time.Time) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "IPAM store %s: %d allocation(s)\n\n", dir, len(st.Allocations))
	var rows [][]string
	for _, u := range st.Usages(nil) {
		rows = append(rows, []string{familyOfPrefix(u.CIDR), u.CIDR.String(), fmt.Sprint(u.InUse), u.Capacity.String()})
	}
	if len(rows) == 0 {
		b.WriteString("No pod CIDR recorded yet (no pod was added on this node).\n")
	} else {
		writeTable(&b, []string{"FAMILY", "POD CIDR", "IN USE", "CAPACITY"}, rows)
	}
	b.WriteString("\n")
	if len(st.Allocations) == 0 {
		b.WriteString("No allocations.\n")
	} else {
		rows = rows[:0]
		for _, a := range st.Allocations {
			addrs := make([]string, len(a.Addrs))
			for i, x := range a.Addrs {
				addrs[i] = x.String()
			}
			rows = append(rows, []string{
				clean(a.ContainerID), clean(a.IfName), strings.Join(addrs, ","),
				humanDuration(now.Sub(a.Since)) + " (" + a.Since.UTC().Format(time.RFC3339) + ")",
			})
		}
		writeTable(&b, []string{"CONTAINER", "INTERFACE", "ADDRESSES", "SINCE"}, rows)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func renderIPAMCheck(w io.Writer, dir string, st ipam.State, problems []ipam.Problem) error {
	var b bytes.Buffer
	if len(problems) == 0 {
		fmt.Fprintf(&b, "IPAM store %s: %d allocation(s), no leaks, no conflicts.\n", dir, len(st.Allocations))
	} else {
		fmt.Fprintf(&b, "IPAM store %s: %d allocation(s), %d problem(s):\n\n", dir, len(st.Allocations), len(problems))
		rows := make([][]string, 0, len(problems))
		for _, p := range problems {
			rows = append(rows, []string{string(p.Kind), clean(strings.Join(p.Attachments, ",")), clean(p.Detail)})
		}
		writeTable(&b, []string{"PROBLEM", "ATTACHMENT", "DETAIL"}, rows)
	}
	_, err := w.Write(b.Bytes())
	return err
}

func familyOfPrefix(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// ipamReport is the JSON form of both commands.
type ipamReport struct {
	CIDRs       []ipamUsageJSON   `json:"cidrs"`
	Allocations []ipam.Allocation `json:"allocations"`
	Problems    []ipam.Problem    `json:"problems,omitempty"`
}

type ipamUsageJSON struct {
	CIDR     string `json:"cidr"`
	InUse    int    `json:"in_use"`
	Capacity string `json:"capacity"` // a string: a /64 holds more than JSON numbers do exactly
}

func ipamJSON(st ipam.State, problems []ipam.Problem) ipamReport {
	r := ipamReport{Allocations: st.Allocations, Problems: problems}
	if r.Allocations == nil {
		r.Allocations = []ipam.Allocation{}
	}
	for _, u := range st.Usages(nil) {
		r.CIDRs = append(r.CIDRs, ipamUsageJSON{CIDR: u.CIDR.String(), InUse: u.InUse, Capacity: u.Capacity.String()})
	}
	return r
}

func writeIPAMJSON(w io.Writer, r ipamReport) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
