package main

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/podroute/podroute/api"
)

// The renderers take the response and a clock reading and write to an
// io.Writer, so the output format is tested without a daemon. Each one builds
// its whole output in memory and writes it once: a broken pipe (podroute
// status | head) is then one error, not one per line.

// renderStatus prints the node, its peers per address family and the
// prefixes it originates, in the spirit of `calicoctl node status`.
func renderStatus(w io.Writer, resp *api.GetStatusResponse, now time.Time) error {
	var b bytes.Buffer
	node := resp.GetNode()
	fmt.Fprintf(&b, "podrouted is running on node %s (AS %d, router ID %s, up %s, table re-learned: %s)\n",
		orDash(node.GetName()), node.GetAsn(), orDash(node.GetRouterId()),
		since(node.GetStartedUnix(), now), yesNo(node.GetSynced()))
	fmt.Fprintf(&b, "version %s, graceful restart: %s, kernel routes: %s\n",
		orDash(node.GetVersion()), onOff(node.GetGracefulRestart()), kernelRoutesCommand(node))
	if !node.GetSynced() {
		b.WriteString("Routes from the previous run stay in the kernel until the table is re-learned.\n")
	}
	b.WriteString("\n")
	writePeerTables(&b, resp.GetPeers(), now)
	b.WriteString("\nOriginated prefixes:\n")
	prefixes := slices.Clone(resp.GetOriginatedPrefixes())
	slices.SortFunc(prefixes, comparePrefixes)
	if len(prefixes) == 0 {
		b.WriteString("  none\n")
	}
	for _, p := range prefixes {
		fmt.Fprintf(&b, "  %s\n", clean(p))
	}
	_, err := w.Write(b.Bytes())
	return err
}

// renderPeers prints only the peer tables, one per address family.
func renderPeers(w io.Writer, peers []*api.Peer, now time.Time) error {
	var b bytes.Buffer
	writePeerTables(&b, peers, now)
	_, err := w.Write(b.Bytes())
	return err
}

func writePeerTables(b *bytes.Buffer, peers []*api.Peer, now time.Time) {
	var v4, v6 []*api.Peer
	for _, p := range peers {
		// A colon is enough to tell the families apart, and unlike a parse
		// it cannot fail on an address the daemon wrote oddly.
		if strings.Contains(p.GetAddress(), ":") {
			v6 = append(v6, p)
		} else {
			v4 = append(v4, p)
		}
	}
	writePeerTable(b, "IPv4 peers", v4, now)
	b.WriteString("\n")
	writePeerTable(b, "IPv6 peers", v6, now)
}

func writePeerTable(b *bytes.Buffer, title string, peers []*api.Peer, now time.Time) {
	if len(peers) == 0 {
		fmt.Fprintf(b, "%s: none\n", title)
		return
	}
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(x, y *api.Peer) int { return compareAddrs(x.GetAddress(), y.GetAddress()) })

	rows := make([][]string, 0, len(peers))
	for _, p := range peers {
		rows = append(rows, []string{
			orDash(p.GetAddress()), strconv.FormatUint(uint64(p.GetAsn()), 10),
			orDash(p.GetType()), orDash(p.GetState()), since(p.GetStateSinceUnix(), now),
			strconv.FormatUint(p.GetReceived(), 10), strconv.FormatUint(p.GetAccepted(), 10),
			strconv.FormatUint(p.GetAdvertised(), 10), clean(p.GetInfo()),
		})
	}
	fmt.Fprintf(b, "%s:\n", title)
	writeTable(b, []string{"PEER ADDRESS", "ASN", "TYPE", "STATE", "SINCE", "RECEIVED", "ACCEPTED", "ADVERTISED", "INFO"}, rows)
}

// renderRoutes prints the routes sorted by address family, then prefix, so
// that the same table always prints the same way whatever order the daemon
// keeps it in.
func renderRoutes(w io.Writer, resp *api.ListRoutesResponse) error {
	routes := slices.Clone(resp.GetRoutes())
	slices.SortStableFunc(routes, func(x, y *api.Route) int { return comparePrefixes(x.GetPrefix(), y.GetPrefix()) })

	var b bytes.Buffer
	if len(routes) == 0 {
		b.WriteString("No routes.\n")
	} else {
		rows := make([][]string, 0, len(routes))
		for _, r := range routes {
			rows = append(rows, []string{
				orDash(r.GetPrefix()), orDash(strings.Join(r.GetNextHops(), ",")),
				orDash(r.GetKind()), yesNo(r.GetInKernel()), clean(r.GetError()),
			})
		}
		writeTable(&b, []string{"PREFIX", "NEXT HOPS", "KIND", "IN KERNEL", "ERROR"}, rows)
	}
	writeServices(&b, resp.GetServices())
	_, err := w.Write(b.Bytes())
	return err
}

// writeServices prints the Service addresses and ranges, whether this
// node advertises each and why, sorted by prefix then Service. Nothing
// when no service range is configured.
func writeServices(b *bytes.Buffer, services []*api.ServicePrefix) {
	if len(services) == 0 {
		return
	}
	services = slices.Clone(services)
	slices.SortStableFunc(services, func(x, y *api.ServicePrefix) int {
		if c := comparePrefixes(x.GetPrefix(), y.GetPrefix()); c != 0 {
			return c
		}
		return strings.Compare(x.GetService(), y.GetService())
	})
	advertised := 0
	rows := make([][]string, 0, len(services))
	for _, s := range services {
		if s.GetAdvertised() {
			advertised++
		}
		comms := append(slices.Clone(s.GetCommunities()), s.GetLargeCommunities()...)
		rows = append(rows, []string{
			orDash(s.GetPrefix()), orDash(clean(s.GetService())), orDash(s.GetKind()), yesNo(s.GetAdvertised()),
			orDash(s.GetVia()), orDash(strings.Join(comms, ",")), clean(s.GetReason()),
		})
	}
	fmt.Fprintf(b, "\nService prefixes (%d of %d advertised by this node):\n", advertised, len(services))
	writeTable(b, []string{"PREFIX", "SERVICE", "KIND", "ADVERTISED", "VIA", "COMMUNITIES", "WHY"}, rows)
}

// renderPolicy prints the local pods with the policies isolating them.
func renderPolicy(w io.Writer, resp *api.GetPolicyResponse) error {
	var b bytes.Buffer
	switch {
	case !resp.GetEnforced():
		b.WriteString("NetworkPolicy is not enforced on this node (static mode, or networkPolicy: false).\n")
	case len(resp.GetPods()) == 0:
		if !resp.GetSynced() {
			b.WriteString("Not synced yet (the rules of the previous run stay in the kernel meanwhile).\n")
		}
		b.WriteString("No pods on this node.\n")
	default:
		if !resp.GetSynced() {
			b.WriteString("Not synced yet: showing the last sync.\n")
		}
		names := func(ps []string) string {
			if len(ps) == 0 {
				return "(open)"
			}
			return strings.Join(ps, ",")
		}
		rows := make([][]string, 0, len(resp.GetPods()))
		for _, p := range resp.GetPods() {
			rows = append(rows, []string{p.GetPod(), orDash(strings.Join(p.GetAddresses(), ",")),
				names(p.GetIngress()), strconv.Itoa(int(p.GetIngressRules())),
				names(p.GetEgress()), strconv.Itoa(int(p.GetEgressRules()))})
		}
		writeTable(&b, []string{"POD", "ADDRESSES", "INGRESS POLICIES", "RULES", "EGRESS POLICIES", "RULES"}, rows)
	}
	if len(resp.GetProblems()) > 0 {
		b.WriteString("\nNot expressible (podroute allows less, never more):\n")
		for _, p := range resp.GetProblems() {
			fmt.Fprintf(&b, "  %s %s: %s: %s\n", p.GetKind(), p.GetObject(), p.GetReason(), clean(p.GetMessage()))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// renderRouteSummary prints the table's counts.
func renderRouteSummary(w io.Writer, s *api.RouteSummary) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "learned routes:   %d (%d not in the kernel as wanted)\n", s.GetLearned(), s.GetLearned()+s.GetBlackholes()-min(s.GetInKernel(), s.GetLearned()+s.GetBlackholes()))
	fmt.Fprintf(&b, "own blackholes:   %d\n", s.GetBlackholes())
	fmt.Fprintf(&b, "stale (kept):     %d\n", s.GetStale())
	fmt.Fprintf(&b, "kernel rejected:  %d\n", s.GetFailed())
	fmt.Fprintf(&b, "refused next hop: %d\n", s.GetRefused())
	fmt.Fprintf(&b, "originated:       %d\n", s.GetOriginated())
	fmt.Fprintf(&b, "service prefixes: %d\n", s.GetServicePrefixes())
	_, err := w.Write(b.Bytes())
	return err
}

// writeJSON prints a response as protojson, with the field names written in
// podroute.proto (router_id, not routerId) so that the .proto documents the
// JSON too. As usual for proto3 JSON, false, zero and empty fields are left
// out: jq reads a missing .in_kernel as null, which is false.
func writeJSON(w io.Writer, m proto.Message) error {
	out, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// writeTable aligns rows under header in columns two spaces apart. Lines
// are trimmed on the right: tabwriter pads the cell before an empty last
// column (INFO, ERROR), which would leave trailing blanks on most rows.
func writeTable(b *bytes.Buffer, header []string, rows [][]string) {
	var aligned bytes.Buffer
	tw := tabwriter.NewWriter(&aligned, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	for line := range strings.Lines(aligned.String()) {
		b.WriteString(strings.TrimRight(line, " \n"))
		b.WriteByte('\n')
	}
}

// kernelRoutesCommand is the ip(8) command that lists exactly the routes
// podroute owns, which is how an operator checks the kernel by hand.
func kernelRoutesCommand(node *api.Node) string {
	if node.GetRouteProtocol() == 0 {
		return "-"
	}
	cmd := "ip route show"
	if node.GetRouteTable() != 0 {
		cmd += " table " + strconv.FormatUint(uint64(node.GetRouteTable()), 10)
	}
	return cmd + " proto " + strconv.FormatUint(uint64(node.GetRouteProtocol()), 10)
}

// since is how long ago a Unix time was, or "-" when the daemon did not
// say. A time in the future (clocks disagree) shows as 0s.
func since(unix int64, now time.Time) string {
	if unix == 0 {
		return "-"
	}
	return humanDuration(now.Sub(time.Unix(unix, 0)))
}

// humanDuration keeps the two largest units, like kubectl's AGE column:
// precise while a session is young, short once it has been up for days.
func humanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	default:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	}
}

// comparePrefixes orders IPv4 before IPv6, then by address and length, so
// 10.244.2.0/24 comes before 10.244.10.0/24. Anything unparseable goes last,
// in string order, rather than being dropped.
func comparePrefixes(x, y string) int {
	px, errX := netip.ParsePrefix(x)
	py, errY := netip.ParsePrefix(y)
	if c := cmp.Compare(familyRank(px.Addr(), errX), familyRank(py.Addr(), errY)); c != 0 {
		return c
	}
	if errX != nil {
		return strings.Compare(x, y)
	}
	if c := px.Addr().Compare(py.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(px.Bits(), py.Bits())
}

// compareAddrs orders addresses like comparePrefixes orders prefixes.
func compareAddrs(x, y string) int {
	ax, errX := netip.ParseAddr(x)
	ay, errY := netip.ParseAddr(y)
	if c := cmp.Compare(familyRank(ax, errX), familyRank(ay, errY)); c != 0 {
		return c
	}
	if errX != nil {
		return strings.Compare(x, y)
	}
	return ax.Compare(ay)
}

func familyRank(a netip.Addr, parseErr error) int {
	switch {
	case parseErr != nil:
		return 2
	case a.Is4():
		return 0
	default:
		return 1
	}
}

// cellCleaner keeps text from the daemon (peer info, kernel errors) from
// breaking the table: a tab would start a new column, a newline a new row.
var cellCleaner = strings.NewReplacer("\t", " ", "\n", " ", "\r", " ")

func clean(s string) string { return cellCleaner.Replace(s) }

// orDash fills an empty cell so that the columns after it stay readable.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
