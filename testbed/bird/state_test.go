package bird

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// The testdata files are `birdc -v` output of Debian's BIRD 2.0.12, taken
// from two BIRDs in namespaces (one of them killed to show a graceful
// restart in progress) and edited to add the rarer shapes: a second route
// for a prefix, a "from" address, multipath next hops, a date as the
// time, a sync error, a filtered count.

func readReply(t *testing.T, name string) Reply {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	reply, err := ParseReply(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

func TestHarnessParseReply(t *testing.T) {
	reply, err := ParseReply("0001 BIRD 2.0.12 ready.\n1000-BIRD 2.0.12\n1011-Router ID is 10.99.0.1\n     Hostname is vm\n0013 Daemon is up and running\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Reply{{1000, "BIRD 2.0.12"}, {1011, "Router ID is 10.99.0.1"}, {1011, "Hostname is vm"}, {13, "Daemon is up and running"}}
	if !reflect.DeepEqual(reply, want) {
		t.Errorf("got %v, want %v", reply, want)
	}
	if !reply.Contains(13, "up and running") || reply.Contains(1011, "up and running") {
		t.Error("Contains looks at the wrong lines")
	}
	for _, bad := range []string{"??? <garbage>", "Table master4:", "     continuation before any code"} {
		if _, err := ParseReply(bad); err == nil {
			t.Errorf("ParseReply(%q) = nil error, want one", bad)
		}
	}
	if r, err := ParseReply(""); err != nil || len(r) != 0 {
		t.Errorf("empty output: %v %v", r, err)
	}
}

func TestHarnessParseProtocols(t *testing.T) {
	protos, err := ParseProtocols(readReply(t, "show_protocols_all_gr.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(protos) != 4 {
		t.Fatalf("got %d protocols, want 4: %v", len(protos), protos)
	}
	y4 := protos["y4"]
	if y4.Proto != "BGP" || y4.State != "start" || y4.Since != "01:12:52.244" || y4.Info != "Active Socket: Connection closed" {
		t.Errorf("y4 row: %+v", y4)
	}
	if y4.BGPState != "Active" || y4.NeighborAddress != "10.99.0.2" || y4.NeighborAS != 65002 ||
		y4.LastError != "Socket: Connection closed" || !y4.GracefulRestartActive {
		t.Errorf("y4 details: %+v", y4)
	}
	if c := y4.Channels["ipv4"]; c.State != "START" || c.Imported != 2 || c.Exported != 0 || c.Preferred != 2 || c.NeighborGR != "Regular" {
		t.Errorf("y4 ipv4 channel: %+v", c)
	}
	if y4.Details["Restart timer"] != "118.995/-" {
		t.Errorf("y4 restart timer: %q", y4.Details["Restart timer"])
	}

	y6 := protos["y6"]
	if y6.Since != "2026-11-30" || y6.Info != "Established" || y6.BGPState != "Established" || y6.GracefulRestartActive {
		t.Errorf("y6: %+v", y6)
	}
	for key, want := range map[string]string{
		"Neighbor capabilities/Graceful restart/Restart time": "90",
		"Neighbor capabilities/Graceful restart/AF preserved": "ipv6",
		"Local capabilities/Graceful restart/AF preserved":    "",
		"Local capabilities/Multiprotocol/AF announced":       "ipv6",
		"Source address":   "fd99::1",
		"Hold timer":       "1.802/3",
		"Neighbor ID":      "10.99.0.2",
		"Session":          "external AS4",
		"Local AS":         "65001",
		"Neighbor AS":      "65002",
		"Neighbor address": "fd99::2",
		"BGP state":        "Established",
		"Keepalive timer":  "0.041/1",
		"Neighbor capabilities/Graceful restart/AF supported": "ipv6",
		"Local capabilities/Graceful restart/Restart time":    "120",
		"Neighbor capabilities/Multiprotocol/AF announced":    "ipv6",
		"Local capabilities/Graceful restart/AF supported":    "ipv6",
	} {
		if got, ok := y6.Details[key]; !ok || got != want {
			t.Errorf("y6 %q = %q (%v), want %q", key, got, ok, want)
		}
	}
	if gr := y6.NeighborGRCapability; !reflect.DeepEqual(gr, GRCapability{Advertised: true, Restarting: true, RestartTime: 90, Preserved: []string{"ipv6"}}) {
		t.Errorf("y6 neighbour's GR capability: %+v", gr)
	}
	if gr := y4.NeighborGRCapability; gr.Advertised {
		t.Errorf("y4 (down) has a neighbour GR capability: %+v", gr)
	}
	if c := y6.Channels["ipv6"]; c.Imported != 1 || c.Filtered != 3 || c.Exported != 2 || c.Details["BGP Next hop"] != "fd99::1 fe80::1" {
		t.Errorf("y6 ipv6 channel: %+v", c)
	}
	if !strings.Contains(strings.Join(y6.Flags, ","), "Neighbor capabilities/Route refresh") {
		t.Errorf("y6 flags: %v", y6.Flags)
	}
	if k := protos["k4"]; k.Channels["ipv4"].Exported != 2 || k.BGPState != "" {
		t.Errorf("k4: %+v", k)
	}
	if d := protos["device1"]; d.Proto != "Device" || d.State != "up" || d.Info != "" {
		t.Errorf("device1: %+v", d)
	}
}

func TestHarnessParseRoutes(t *testing.T) {
	routes, err := ParseRoutes(readReply(t, "show_route_all.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 5 {
		t.Fatalf("got %d routes, want 5: %+v", len(routes), routes)
	}
	r0 := routes[0]
	if r0.Table != "master4" || r0.Prefix != "10.60.0.0/24" || r0.Type != "unicast" || r0.Protocol != "y4" ||
		r0.Since != "01:12:32.431" || !r0.Primary || r0.SyncError || r0.Preference != 100 || r0.LLStale ||
		r0.Info != "(100) [AS65002i]" || !reflect.DeepEqual(r0.NextHops, []NextHop{{Via: "10.99.0.2", Dev: "e0"}}) ||
		r0.Attrs["BGP.as_path"] != "65002" || r0.Attrs["Type"] != "BGP univ" || r0.Attrs["BGP.local_pref"] != "100" {
		t.Errorf("first route: %+v", r0)
	}
	r1 := routes[1]
	if r1.Prefix != "10.60.0.0/24" || r1.Primary || r1.Protocol != "z4" || r1.From != "10.99.0.9" || r1.Since != "01:12:33.001" ||
		!r1.LLStale || r1.Attrs["BGP.as_path"] != "65009 65002" ||
		!reflect.DeepEqual(r1.NextHops, []NextHop{{"10.99.0.3", "e1", 1}, {"10.99.0.4", "e2", 2}}) {
		t.Errorf("second route of the prefix: %+v", r1)
	}
	if r := routes[2]; r.Prefix != "10.50.1.0/24" || r.Type != "blackhole" || r.Protocol != "s4" || len(r.NextHops) != 0 || r.Attrs["Type"] != "static univ" {
		t.Errorf("blackhole: %+v", r)
	}
	if r := routes[3]; r.Type != "unreachable" || r.Since != "2026-11-30 01:12:27" || !r.Primary || !r.SyncError {
		t.Errorf("sync error: %+v", r)
	}
	if r := routes[4]; r.Table != "master6" || r.Prefix != "fd60::/64" || r.Attrs["BGP.next_hop"] != "fd99::2 fe80::d429:deff:fe76:63cb" {
		t.Errorf("v6 route: %+v", r)
	}

	// Without "all" there are no attribute lines; one code for the table.
	plain, err := ParseReply("0001 BIRD 2.0.12 ready.\n1007-Table master4:\n     10.60.0.0/24         unicast [y4 01:12:32.431] * (100) [AS65002i]\n     \tvia 10.99.0.2 on e0\n     10.60.1.0/24         unicast [y4 01:12:32.431] * (100) [AS65002i]\n     \tdev e0\n")
	if err != nil {
		t.Fatal(err)
	}
	routes, err = ParseRoutes(plain)
	if err != nil || len(routes) != 2 || routes[1].Prefix != "10.60.1.0/24" || routes[1].NextHops[0].Dev != "e0" {
		t.Errorf("plain listing: %+v %v", routes, err)
	}
	if _, err := ParseRoutes(Reply{{1007, "not a route"}}); err == nil {
		t.Error("a line that is no route was accepted")
	}
}
