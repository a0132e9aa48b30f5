package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/podroute/podroute/api"
)

// now is the clock reading every rendering test uses.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// knownStatus is a node up 3m12s with an established eBGP session to its ToR
// (IPv4), one over IPv6, and an iBGP peer stuck after a max-prefix trip.
func knownStatus() *api.GetStatusResponse {
	return &api.GetStatusResponse{
		Node: &api.Node{
			Name: "node-a", RouterId: "10.0.0.1", Asn: 65001, Version: "v0.3.0",
			StartedUnix: now.Add(-(3*time.Minute + 12*time.Second)).Unix(), Synced: true,
			RouteProtocol: 80, RouteTable: 254, GracefulRestart: true,
		},
		Peers: []*api.Peer{
			{
				Address: "10.0.1.5", Asn: 65001, Type: "iBGP", State: "Idle",
				StateSinceUnix: now.Add(-42 * time.Second).Unix(),
				Received:       101, Accepted: 0, Advertised: 0, MaxPrefixes: 100,
				Info: "max-prefix limit 100 exceeded",
			},
			{
				Address: "10.0.0.254", Asn: 65000, Type: "eBGP", State: "Established",
				StateSinceUnix: now.Add(-(2*time.Hour + 5*time.Minute)).Unix(),
				Received:       12, Accepted: 11, Advertised: 1,
			},
			{
				Address: "fd00::fe", Asn: 65000, Type: "eBGP", State: "Active",
				Info: "connect: no route to host",
			},
		},
		OriginatedPrefixes: []string{"fd00:244:1::/64", "10.244.1.0/24"},
	}
}

func renderStatusString(t *testing.T, resp *api.GetStatusResponse) string {
	t.Helper()
	var b bytes.Buffer
	if err := renderStatus(&b, resp, now); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// lineWith returns the only line of out that contains s.
func lineWith(t *testing.T, out, s string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one line containing %q, got %q in:\n%s", s, found, out)
	}
	return found[0]
}

// cellAt returns the word of a table line that starts at column pos, or ""
// if no word starts there.
func cellAt(line string, pos int) string {
	if pos <= 0 || pos >= len(line) || line[pos-1] != ' ' || line[pos] == ' ' {
		return ""
	}
	return strings.Fields(line[pos:])[0]
}

// section returns the lines of out from the line starting with title up to
// the next blank line.
func section(t *testing.T, out, title string) string {
	t.Helper()
	i := strings.Index(out, "\n"+title)
	if i < 0 {
		t.Fatalf("no %q section in:\n%s", title, out)
	}
	s := out[i+1:]
	if j := strings.Index(s, "\n\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

func TestRenderStatusHeader(t *testing.T) {
	out := renderStatusString(t, knownStatus())
	first := strings.SplitN(out, "\n", 2)[0]
	want := "podrouted is running on node node-a (AS 65001, router ID 10.0.0.1, up 3m12s, table re-learned: yes)"
	if first != want {
		t.Errorf("header\n got %q\nwant %q", first, want)
	}
	if !strings.Contains(out, "ip route show table 254 proto 80") {
		t.Errorf("output does not tell how to list podroute's kernel routes:\n%s", out)
	}
	if strings.Contains(out, "stay in the kernel") {
		t.Errorf("a synced node is told it still keeps stale routes:\n%s", out)
	}
}

func TestRenderStatusNotSynced(t *testing.T) {
	resp := knownStatus()
	resp.Node.Synced = false
	out := renderStatusString(t, resp)
	if !strings.Contains(lineWith(t, out, "podrouted is running"), "table re-learned: no)") {
		t.Errorf("header does not say the table is not re-learned:\n%s", out)
	}
	if !strings.Contains(out, "Routes from the previous run stay in the kernel") {
		t.Errorf("output does not explain why stale routes are kept:\n%s", out)
	}
}

func TestRenderStatusPeerColumns(t *testing.T) {
	out := renderStatusString(t, knownStatus())
	v4 := section(t, out, "IPv4 peers:")
	header := lineWith(t, v4, "PEER ADDRESS")
	established := lineWith(t, v4, "10.0.0.254")

	want := []string{"10.0.0.254", "65000", "eBGP", "Established", "2h5m", "12", "11", "1"}
	if got := strings.Fields(established); !slices.Equal(got, want) {
		t.Errorf("established peer line fields = %q, want %q", got, want)
	}
	// Each value must sit under its own column heading.
	for _, col := range []struct{ heading, value string }{
		{"ASN", "65000"}, {"STATE", "Established"}, {"SINCE", "2h5m"},
		{"RECEIVED", "12"}, {"ACCEPTED", "11"}, {"ADVERTISED", "1"},
	} {
		if got := cellAt(established, strings.Index(header, col.heading)); got != col.value {
			t.Errorf("under %s: got %q, want %q\n%s\n%s", col.heading, got, col.value, header, established)
		}
	}

	idle := lineWith(t, v4, "10.0.1.5")
	for _, s := range []string{"iBGP", "Idle", "42s", "101", "max-prefix limit 100 exceeded"} {
		if !strings.Contains(idle, s) {
			t.Errorf("idle peer line %q lacks %q", idle, s)
		}
	}
	// Peers are sorted by address, not kept in the daemon's order.
	if strings.Index(v4, "10.0.0.254") > strings.Index(v4, "10.0.1.5") {
		t.Errorf("IPv4 peers not sorted by address:\n%s", v4)
	}
	if strings.Contains(v4, "fd00::fe") {
		t.Errorf("IPv6 peer listed under IPv4:\n%s", v4)
	}

	v6 := section(t, out, "IPv6 peers:")
	active := lineWith(t, v6, "fd00::fe")
	// No state change time is known: SINCE shows "-" rather than a bogus age.
	want = []string{"fd00::fe", "65000", "eBGP", "Active", "-", "0", "0", "0", "connect:", "no", "route", "to", "host"}
	if got := strings.Fields(active); !slices.Equal(got, want) {
		t.Errorf("IPv6 peer line fields = %q, want %q", got, want)
	}
}

func TestRenderStatusOriginatedPrefixes(t *testing.T) {
	out := renderStatusString(t, knownStatus())
	i := strings.Index(out, "Originated prefixes:\n")
	if i < 0 {
		t.Fatalf("no originated prefixes section:\n%s", out)
	}
	got := strings.Fields(out[i+len("Originated prefixes:\n"):])
	want := []string{"10.244.1.0/24", "fd00:244:1::/64"}
	if !slices.Equal(got, want) {
		t.Errorf("originated prefixes = %q, want %q (IPv4 first)", got, want)
	}
}

func TestRenderPeersWithoutPeers(t *testing.T) {
	var b bytes.Buffer
	if err := renderPeers(&b, nil, now); err != nil {
		t.Fatal(err)
	}
	want := "IPv4 peers: none\n\nIPv6 peers: none\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestTablesHaveNoTrailingBlanks(t *testing.T) {
	var routes bytes.Buffer
	// The blackhole route has no error, so its last column is empty.
	err := renderRoutes(&routes, &api.ListRoutesResponse{Routes: []*api.Route{
		{Prefix: "10.244.1.0/24", Kind: "blackhole", InKernel: true},
		{Prefix: "10.244.2.0/24", Kind: "learned", NextHops: []string{"10.0.0.2"}, Error: "netlink: file exists"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{renderStatusString(t, knownStatus()), routes.String()} {
		for i, line := range strings.Split(out, "\n") {
			if strings.TrimRight(line, " ") != line {
				t.Errorf("line %d has trailing blanks: %q", i, line)
			}
		}
	}
}

func TestRenderPeersKeepsTableShapeWithHostileInfo(t *testing.T) {
	peers := []*api.Peer{{Address: "10.0.0.254", Asn: 65000, State: "Idle", Info: "line one\nline\ttwo"}}
	var b bytes.Buffer
	if err := renderPeers(&b, peers, now); err != nil {
		t.Fatal(err)
	}
	line := lineWith(t, b.String(), "10.0.0.254")
	if !strings.HasSuffix(line, "line one line two") {
		t.Errorf("info with newline and tab not kept on the peer's line: %q", line)
	}
}

func TestRenderRoutes(t *testing.T) {
	resp := &api.ListRoutesResponse{Routes: []*api.Route{
		{Prefix: "fd00:244:2::/64", NextHops: []string{"fd00::2"}, Kind: "learned", InKernel: true},
		{Prefix: "10.244.10.0/24", NextHops: []string{"10.0.0.10", "10.0.0.11"}, Kind: "learned", InKernel: false, Error: "netlink: file exists"},
		{Prefix: "10.244.1.0/24", Kind: "blackhole", InKernel: true},
		{Prefix: "10.244.2.0/24", NextHops: []string{"10.0.0.2"}, Kind: "stale", InKernel: true},
	}}
	var b bytes.Buffer
	if err := renderRoutes(&b, resp); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	want := [][]string{
		{"PREFIX", "NEXT", "HOPS", "KIND", "IN", "KERNEL", "ERROR"},
		{"10.244.1.0/24", "-", "blackhole", "yes"},
		{"10.244.2.0/24", "10.0.0.2", "stale", "yes"},
		{"10.244.10.0/24", "10.0.0.10,10.0.0.11", "learned", "no", "netlink:", "file", "exists"},
		{"fd00:244:2::/64", "fd00::2", "learned", "yes"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), b.String())
	}
	for i, l := range lines {
		if got := strings.Fields(l); !slices.Equal(got, want[i]) {
			t.Errorf("line %d fields = %q, want %q", i, got, want[i])
		}
	}
	// The input is the caller's: sorting must not reorder it.
	if resp.Routes[0].GetPrefix() != "fd00:244:2::/64" {
		t.Errorf("renderRoutes reordered the response it was given")
	}
}

func TestRenderRoutesEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := renderRoutes(&b, &api.ListRoutesResponse{}); err != nil {
		t.Fatal(err)
	}
	if b.String() != "No routes.\n" {
		t.Errorf("got %q", b.String())
	}
}

func TestWriteJSONParsesBack(t *testing.T) {
	want := knownStatus()
	var b bytes.Buffer
	if err := writeJSON(&b, want); err != nil {
		t.Fatal(err)
	}
	got := &api.GetStatusResponse{}
	if err := protojson.Unmarshal(b.Bytes(), got); err != nil {
		t.Fatalf("output is not protojson of the response: %v\n%s", err, b.String())
	}
	if !proto.Equal(got, want) {
		t.Errorf("JSON round trip changed the response:\n got %v\nwant %v", got, want)
	}
	// Field names follow podroute.proto.
	for _, s := range []string{`"router_id"`, `"originated_prefixes"`} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("JSON lacks %s:\n%s", s, b.String())
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "0s"},
		{0, "0s"},
		{59*time.Second + 900*time.Millisecond, "59s"},
		{3*time.Minute + 12*time.Second, "3m12s"},
		{time.Hour, "1h0m"},
		{25*time.Hour + 30*time.Minute, "1d1h"},
		{400 * 24 * time.Hour, "400d0h"},
	} {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestComparePrefixes(t *testing.T) {
	got := []string{"fd00::/64", "garbage", "10.244.10.0/24", "10.244.1.0/25", "10.244.1.0/24", "::ffff:10.0.0.0/104"}
	slices.SortFunc(got, comparePrefixes)
	want := []string{"10.244.1.0/24", "10.244.1.0/25", "10.244.10.0/24", "::ffff:10.0.0.0/104", "fd00::/64", "garbage"}
	if !slices.Equal(got, want) {
		t.Errorf("sorted = %q, want %q", got, want)
	}
}

func TestRenderRoutesWithServices(t *testing.T) {
	resp := &api.ListRoutesResponse{
		Routes: []*api.Route{{Prefix: "10.244.1.0/24", Kind: "blackhole", InKernel: true}},
		Services: []*api.ServicePrefix{
			{Prefix: "198.51.100.2/32", Service: "web/local", Kind: "LoadBalancerIP", Reason: "no ready endpoint on this node (policy Local)"},
			{Prefix: "198.51.100.1/32", Service: "web/cluster", Kind: "LoadBalancerIP", Advertised: true, Via: "198.51.100.1/32",
				LargeCommunities: []string{"64512:2:1"}, Reason: "policy Cluster: every node"},
			{Prefix: "10.96.0.0/16", Kind: "ClusterIP", Advertised: true, Via: "10.96.0.0/16", Communities: []string{"64512:100"}, Reason: "aggregate range, from every node"},
			{Prefix: "203.0.113.5/32", Service: "web/cluster", Kind: "ExternalIP", Reason: "out of range"},
		},
	}
	var b bytes.Buffer
	if err := renderRoutes(&b, resp); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "Service prefixes (2 of 4 advertised by this node):") {
		t.Errorf("no services heading with counts:\n%s", out)
	}
	want := [][]string{
		{"PREFIX", "SERVICE", "KIND", "ADVERTISED", "VIA", "COMMUNITIES", "WHY"},
		{"10.96.0.0/16", "-", "ClusterIP", "yes", "10.96.0.0/16", "64512:100", "aggregate", "range,", "from", "every", "node"},
		{"198.51.100.1/32", "web/cluster", "LoadBalancerIP", "yes", "198.51.100.1/32", "64512:2:1", "policy", "Cluster:", "every", "node"},
		{"198.51.100.2/32", "web/local", "LoadBalancerIP", "no", "-", "-", "no", "ready", "endpoint", "on", "this", "node", "(policy", "Local)"},
		{"203.0.113.5/32", "web/cluster", "ExternalIP", "no", "-", "-", "out", "of", "range"},
	}
	heading := strings.Index(out, "Service prefixes (")
	if heading < 0 {
		t.Fatalf("no services section:\n%s", out)
	}
	lines := strings.Split(strings.TrimRight(out[heading:], "\n"), "\n")[1:]
	if len(lines) != len(want) {
		t.Fatalf("got %d service lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		if got := strings.Fields(l); !slices.Equal(got, want[i]) {
			t.Errorf("line %d fields = %q, want %q", i, got, want[i])
		}
		if strings.TrimRight(l, " ") != l {
			t.Errorf("line %d has trailing blanks: %q", i, l)
		}
	}
	var sum bytes.Buffer
	if err := renderRouteSummary(&sum, &api.RouteSummary{ServicePrefixes: 2}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sum.String(), "service prefixes: 2") {
		t.Errorf("summary without the service prefix count:\n%s", sum.String())
	}
}
