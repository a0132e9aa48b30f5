package nft

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podroute/podroute/policy"
)

// Render without a kernel: the rule texts and set layout the namespace
// tests then load for real.
func TestRenderRules(t *testing.T) {
	web := policy.Key{Namespace: "a", Name: "web"}
	p1 := policy.Key{Namespace: "a", Name: "p1"}
	p2 := policy.Key{Namespace: "a", Name: "p2"}
	peers := []netip.Prefix{netip.MustParsePrefix("10.0.1.0/25"), netip.MustParsePrefix("10.0.1.128/25"),
		netip.MustParsePrefix("10.0.2.5/32"), netip.MustParsePrefix("fd00::/64")}
	shared := policy.Rule{PeerID: "peers;x", Peers: peers, Ports: []policy.PortRange{
		{Proto: policy.TCP, First: 80, Last: 80}, {Proto: policy.TCP, First: 90, Last: 100}, {Proto: policy.UDP, First: 0, Last: 65535}}}
	res := &policy.Result{
		Pods: map[policy.Key]*policy.LocalPod{web: {Key: web,
			Addrs:   []netip.Addr{netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("fd00::10")},
			Ingress: []policy.Key{p1, p2}, Egress: []policy.Key{p2}}},
		Policies: map[policy.Key]*policy.Compiled{
			p1: {Key: p1, HasIngress: true, Ingress: []policy.Rule{shared, {AnyPeer: true, AnyPort: true}}},
			p2: {Key: p2, HasIngress: true, HasEgress: true, Ingress: []policy.Rule{shared},
				Egress: []policy.Rule{{AnyPeer: true, HasNamed: true, NamedID: "named;any;tcp/http",
					Named: []policy.NamedPort{{Addr: netip.MustParseAddr("10.0.1.7"), Proto: policy.TCP, Port: 8080}}}}},
		},
	}
	s := Render(res)
	set4, set6 := peerSet(shared, 4), peerSet(shared, 6)
	wantP1 := []string{
		"ip saddr @" + set4 + " tcp dport { 80, 90-100 } accept",
		"ip saddr @" + set4 + " meta l4proto udp accept",
		"ip6 saddr @" + set6 + " tcp dport { 80, 90-100 } accept",
		"ip6 saddr @" + set6 + " meta l4proto udp accept",
		"accept",
	}
	if got := s.Chains[PolicyChain(p1, policy.Ingress)].Rules; !slices.Equal(got, wantP1) {
		t.Errorf("p1 ingress rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantP1, "\n"))
	}
	// Both policies use the one peer set; adjacent prefixes became one
	// element; the families went to their own sets.
	if got := keys(s.Sets[set4].Elems); !slices.Equal(got, []string{"10.0.1.0/24", "10.0.2.5/32"}) {
		t.Errorf("IPv4 peer set %v", got)
	}
	if got := keys(s.Sets[set6].Elems); !slices.Equal(got, []string{"fd00::/64"}) {
		t.Errorf("IPv6 peer set %v", got)
	}
	if n := strings.Count(strings.Join(keys(s.Sets), " "), "peer-"); n != 2 {
		t.Errorf("%d peer sets, want the one pair shared by both policies: %v", n, keys(s.Sets))
	}
	// Egress named ports match the destination, per family.
	out := s.Chains[PolicyChain(p2, policy.Egress)].Rules
	if len(out) != 2 || out[0] != "ip daddr . meta l4proto . th dport @"+namedSet(p2, policy.Egress, 0, res.Policies[p2].Egress[0], 4)+" accept" {
		t.Errorf("p2 egress rules %v", out)
	}
	// The pod: its chains jump to its policies and then drop; the maps
	// send its addresses there.
	if got := s.Chains[PodChain(web, policy.Ingress)].Rules; !slices.Equal(got, []string{"jump " + PolicyChain(p1, policy.Ingress), "jump " + PolicyChain(p2, policy.Ingress), "drop"}) {
		t.Errorf("web ingress chain %v", got)
	}
	if got := s.Sets["ingress6"].Elems["fd00::10"]; got != "goto "+PodChain(web, policy.Ingress) {
		t.Errorf("ingress6[fd00::10] = %q", got)
	}
	if got := s.Sets["egress4"].Elems["10.0.0.10"]; got != "goto "+PodChain(web, policy.Egress) {
		t.Errorf("egress4[10.0.0.10] = %q", got)
	}
}

func TestRangeKeys(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	cases := []struct {
		in   []netip.Prefix
		fam  int
		want string
	}{
		{pp("10.0.0.0/25", "10.0.0.128/25"), 4, "10.0.0.0/24"},
		{pp("10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/30"), 4, "10.0.0.1-10.0.0.7"},
		{pp("10.0.0.1/32", "10.0.0.3/32"), 4, "10.0.0.1/32 10.0.0.3/32"},
		{pp("10.0.0.1/32", "fd00::1/128"), 6, "fd00::1/128"},
	}
	for _, tc := range cases {
		if got := strings.Join(rangeKeys(tc.in, tc.fam), " "); got != tc.want {
			t.Errorf("rangeKeys(%v, %d) = %s, want %s", tc.in, tc.fam, got, tc.want)
		}
	}
}

// What nft -j lists (captured from nft 1.0.6) reads back in Render's
// spelling, so a restart finds an up-to-date table unchanged.
func TestParseTable(t *testing.T) {
	listing := `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"table": {"family": "inet", "name": "podroute-policy", "handle": 1}},
 {"set": {"family": "inet", "name": "peer-1-4", "table": "podroute-policy", "type": "ipv4_addr", "handle": 2, "flags": ["interval"],
   "elem": ["10.0.0.5", {"prefix": {"addr": "10.0.0.6", "len": 31}}, {"range": ["10.0.1.0", "10.0.1.20"]}]}},
 {"set": {"family": "inet", "name": "named-1-4", "table": "podroute-policy", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 3,
   "elem": [{"concat": ["10.0.0.5", "tcp", 8080]}]}},
 {"map": {"family": "inet", "name": "ingress6", "table": "podroute-policy", "type": "ipv6_addr", "map": "verdict", "handle": 4,
   "elem": [["fd00:0::10", {"goto": {"target": "pod-1-in"}}]]}},
 {"chain": {"family": "inet", "table": "podroute-policy", "name": "pod-1-in", "handle": 5}},
 {"chain": {"family": "inet", "table": "podroute-policy", "name": "ingress", "handle": 6, "type": "filter", "hook": "forward", "prio": 1, "policy": "accept"}},
 {"chain": {"family": "inet", "table": "podroute-policy", "name": "pol-empty", "handle": 9}},
 {"rule": {"family": "inet", "table": "podroute-policy", "chain": "pod-1-in", "handle": 7, "comment": "a/web ingress #abc", "expr": []}},
 {"rule": {"family": "inet", "table": "podroute-policy", "chain": "pod-1-in", "handle": 8, "comment": "a/web ingress #abc", "expr": []}},
 {"rule": {"family": "inet", "table": "podroute-policy", "chain": "ingress", "handle": 10, "comment": "x #def", "expr": []}},
 {"rule": {"family": "inet", "table": "podroute-policy", "chain": "ingress", "handle": 11, "expr": []}}
]}`
	s, err := parseTable([]byte(listing))
	if err != nil {
		t.Fatal(err)
	}
	if got := keys(s.Sets["peer-1-4"].Elems); !slices.Equal(got, []string{"10.0.0.5/32", "10.0.0.6/31", "10.0.1.0-10.0.1.20"}) {
		t.Errorf("interval elements %v", got)
	}
	if got := keys(s.Sets["named-1-4"].Elems); !slices.Equal(got, []string{"10.0.0.5 . tcp . 8080"}) {
		t.Errorf("concatenated elements %v", got)
	}
	if got := s.Sets["ingress6"].Elems["fd00::10"]; got != "goto pod-1-in" || !s.Sets["ingress6"].Map {
		t.Errorf("map element %q", got)
	}
	if c := s.Chains["pod-1-in"]; c.Digest != "abc" || len(c.Rules) != 2 {
		t.Errorf("pod chain %+v", c)
	}
	if c := s.Chains["ingress"]; c.Digest != "mismatch" || c.Hook != "forward" {
		t.Errorf("a chain with a rule lacking the digest reads as %+v, want a mismatch", c)
	}
	if c := s.Chains["pol-empty"]; c.Digest != digest("", "", nil) {
		t.Errorf("an empty chain reads as %+v, want the digest of no rules", c)
	}
}
