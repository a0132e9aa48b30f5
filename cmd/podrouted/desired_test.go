package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/podroute/podroute/bgp"
	"github.com/podroute/podroute/cluster"
	"github.com/podroute/podroute/config"
)

// Static mode: servicePrefixes become advertisements (with their
// communities) and status lines; without them nothing is advertised.
func TestDesiredFromConfigServicePrefixes(t *testing.T) {
	cfg, err := config.Parse([]byte(validConfig + "servicePrefixes:\n- cidr: 10.96.0.0/16\n  communities: [\"65001:100\"]\n  largeCommunities: [\"65001:1:100\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := desiredFromConfig(cfg)
	want := bgp.Advertisement{Prefix: netip.MustParsePrefix("10.96.0.0/16"), Communities: []uint32{65001<<16 | 100}, LargeCommunities: [][3]uint32{{65001, 1, 100}}}
	if len(d.Advertisements) != 1 || d.Advertisements[0].Prefix != want.Prefix ||
		!slices.Equal(d.Advertisements[0].Communities, want.Communities) || !slices.Equal(d.Advertisements[0].LargeCommunities, want.LargeCommunities) {
		t.Errorf("advertisements %+v, want %+v", d.Advertisements, want)
	}
	if len(d.Services) != 1 || !d.Services[0].Advertised || d.Services[0].Kind != kindStatic {
		t.Errorf("status lines %+v", d.Services)
	}

	plain, err := config.Parse([]byte(validConfig))
	if err != nil {
		t.Fatal(err)
	}
	plain.ApplyDefaults()
	if d := desiredFromConfig(plain); d.Advertisements != nil || d.Services != nil {
		t.Errorf("no servicePrefixes: advertisements %v, lines %v", d.Advertisements, d.Services)
	}
}

// The status API shows what the speaker really originates: a line the
// computation wanted advertised but the speaker refused says so.
func TestServiceLines(t *testing.T) {
	lines := []cluster.ServiceRoute{
		{Prefix: netip.MustParsePrefix("10.96.0.0/16"), Via: netip.MustParsePrefix("10.96.0.0/16"), Kind: cluster.KindClusterIP, Advertised: true, Reason: cluster.ReasonAggregateRange},
		{Prefix: netip.MustParsePrefix("10.96.0.7/32"), Via: netip.MustParsePrefix("10.96.0.0/16"), Service: "a/b", Kind: cluster.KindClusterIP, Advertised: true, Reason: cluster.ReasonInAggregate},
		{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Via: netip.MustParsePrefix("198.51.100.1/32"), Service: "a/c", Kind: cluster.KindLoadBalancerIP, Advertised: true, Reason: cluster.ReasonPolicyCluster},
		{Prefix: netip.MustParsePrefix("198.51.100.2/32"), Service: "a/d", Kind: cluster.KindLoadBalancerIP, Reason: cluster.ReasonNoLocalEndpoint},
	}
	s := &statusServer{services: func() []cluster.ServiceRoute { return lines }}
	got := s.serviceLines([]bgp.Advertisement{{Prefix: netip.MustParsePrefix("10.96.0.0/16"), Communities: []uint32{64512<<16 | 100}}})
	var out []string
	for _, l := range got {
		out = append(out, strings.Join([]string{l.GetPrefix(), l.GetService(), l.GetKind(), yes(l.GetAdvertised()), l.GetVia(), strings.Join(l.GetCommunities(), ","), l.GetReason()}, "|"))
	}
	want := []string{
		"10.96.0.0/16||ClusterIP|yes|10.96.0.0/16|64512:100|" + string(cluster.ReasonAggregateRange),
		"10.96.0.7/32|a/b|ClusterIP|yes|10.96.0.0/16|64512:100|" + string(cluster.ReasonInAggregate),
		"198.51.100.1/32|a/c|LoadBalancerIP|no|||" + string(cluster.ReasonPolicyCluster) + "; but 198.51.100.1/32 is not originated (refused by the speaker: see the log)",
		"198.51.100.2/32|a/d|LoadBalancerIP|no|||" + string(cluster.ReasonNoLocalEndpoint),
	}
	if !slices.Equal(out, want) {
		t.Errorf("lines\n%s\nwant\n%s", strings.Join(out, "\n"), strings.Join(want, "\n"))
	}
	if (&statusServer{}).serviceLines(nil) != nil {
		t.Error("no service source: want no lines")
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
