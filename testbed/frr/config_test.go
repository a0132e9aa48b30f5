package frr

import (
	"strings"
	"testing"
)

func TestHarnessFRRConfig(t *testing.T) {
	conf := Config(RouterSpec{
		Name: "r1", ASN: 65001, RouterID: "10.0.0.1",
		Neighbors: []Neighbor{
			{Address: "10.0.12.2", ASN: 65002, Password: "s3cret", Keepalive: 1},
			{Address: "2001:db8:12::2", ASN: 65002, Hold: 9, Multihop: 2, Passive: true},
		},
		Networks:        []string{"10.1.0.0/24", "2001:db8:1::/64"},
		GracefulRestart: true,
		Extra:           "router bgp 65001\n neighbor 10.0.12.2 timers connect 1\n",
	})
	for _, want := range []string{
		"frr defaults datacenter\nhostname r1\n",
		"router bgp 65001\n bgp router-id 10.0.0.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n bgp graceful-restart\n",
		" neighbor 10.0.12.2 remote-as 65002\n neighbor 10.0.12.2 password s3cret\n neighbor 10.0.12.2 timers 1 3\n",
		" neighbor 2001:db8:12::2 remote-as 65002\n neighbor 2001:db8:12::2 timers 3 9\n neighbor 2001:db8:12::2 ebgp-multihop 2\n neighbor 2001:db8:12::2 passive\n",
		" address-family ipv4 unicast\n  network 10.1.0.0/24\n  neighbor 10.0.12.2 activate\n  no neighbor 2001:db8:12::2 activate\n exit-address-family\n",
		" address-family ipv6 unicast\n  network 2001:db8:1::/64\n  neighbor 2001:db8:12::2 activate\n exit-address-family\n",
		"exit\n!\nrouter bgp 65001\n neighbor 10.0.12.2 timers connect 1\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks\n%s\ngot:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "neighbor 10.0.12.2 activate\n exit-address-family\n exit") ||
		strings.Count(conf, "neighbor 10.0.12.2 activate") != 1 {
		t.Errorf("IPv4 neighbour must be activated only for IPv4 unicast:\n%s", conf)
	}
}

// UpdateAtOnce is what the lab's routers and the benchmark's injector run
// with; without it FRR holds a new session's first UPDATE about 1 s.
func TestHarnessFRRConfigUpdateAtOnce(t *testing.T) {
	spec := RouterSpec{Name: "r1", ASN: 65001, RouterID: "10.0.0.1"}
	if conf := Config(spec); strings.Contains(conf, "coalesce-time") {
		t.Errorf("coalesce-time set without UpdateAtOnce:\n%s", conf)
	}
	spec.UpdateAtOnce = true
	if conf := Config(spec); !strings.Contains(conf, "router bgp 65001\n bgp router-id 10.0.0.1\n no bgp ebgp-requires-policy\n no bgp network import-check\n coalesce-time 0\n") {
		t.Errorf("UpdateAtOnce: want coalesce-time 0 in the router bgp block:\n%s", conf)
	}
}
