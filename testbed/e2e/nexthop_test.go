package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podroute/podroute/api"
	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bgppeer"
)

// A peer may not set a next hop that is one of the node's own addresses
// (RFC 4271 6.3: ignore such a route) or that lies inside the node's own
// pod CIDRs (that would steer another node's pods into a pod here). Both
// were installed before; now they are refused, with the reason in
// `podroute routes`, in both families, while a legitimate route from the
// same UPDATE stream is installed.
func TestNextHopSanity(t *testing.T) {
	l := newHostileLab(t, hostileOptions{raw4: 1, raw6: 1})
	cases := []struct {
		prefix, nextHop, reason string // reason "": installed
	}{
		{"10.244.60.0/24", "172.31.9.1", "next hop 172.31.9.1 is this node's own address"},
		{"10.244.61.0/24", "10.244.1.5", "next hop 10.244.1.5 is inside this node's own pod CIDR 10.244.1.0/24"},
		{"10.244.62.0/24", "172.31.9.2", ""},
		{"fd00:244:0:60::/64", "fd00:31:9::1", "next hop fd00:31:9::1 is this node's own address"},
		{"fd00:244:0:61::/64", "fd00:244:0:1::5", "next hop fd00:244:0:1::5 is inside this node's own pod CIDR fd00:244:0:1::/64"},
		{"fd00:244:0:62::/64", "fd00:31:9::2", ""},
	}
	peers := map[bool]*bgppeer.Peer{}
	for _, local := range []netip.Addr{l.raw4[0], l.raw6[0]} {
		p, err := l.establishRaw(local, 20*time.Second)
		must(t, err)
		t.Cleanup(func() { p.Close() })
		peers[local.Is4()] = p
	}
	for _, c := range cases {
		pfx := netip.MustParsePrefix(c.prefix)
		u := bgppeer.Update{NLRI: []netip.Prefix{pfx}, NextHop: netip.MustParseAddr(c.nextHop), ASPath: []uint32{rawASN}}
		must(t, peers[pfx.Addr().Is4()].SendUpdate(u))
	}
	cli := api.NewStatusClient(l.grpc)
	testutil.Eventually(t, 20*time.Second, "podroute routes shows every case", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := cli.ListRoutes(ctx, &api.ListRoutesRequest{})
		if err != nil {
			return err
		}
		byPrefix := map[string]*api.Route{}
		for _, r := range resp.GetRoutes() {
			byPrefix[r.GetPrefix()] = r
		}
		for _, c := range cases {
			r := byPrefix[c.prefix]
			switch {
			case r == nil:
				return fmt.Errorf("%s not listed", c.prefix)
			case c.reason == "" && (!r.GetInKernel() || r.GetError() != ""):
				return fmt.Errorf("%s via %s: in kernel %v, error %q; want installed", c.prefix, c.nextHop, r.GetInKernel(), r.GetError())
			case c.reason != "" && (r.GetInKernel() || !strings.Contains(r.GetError(), c.reason)):
				return fmt.Errorf("%s via %s: in kernel %v, error %q; want refused: %s", c.prefix, c.nextHop, r.GetInKernel(), r.GetError(), c.reason)
			}
		}
		return nil
	})
	for _, fam := range []string{"ipv4", "ipv6"} {
		routes, err := l.ownRoutes(fam)
		must(t, err)
		for _, c := range cases {
			if c.reason == "" {
				continue
			}
			if gws, ok := routes[c.prefix]; ok {
				t.Errorf("%s via %v in the node's kernel although its next hop %s must be refused", c.prefix, gws, c.nextHop)
			}
		}
	}
	for _, c := range cases {
		outcome := "installed"
		if c.reason != "" {
			outcome = "refused: " + c.reason
		}
		t.Logf("next-hop sanity: %s via %s: %s", c.prefix, c.nextHop, outcome)
	}
	if h := l.health(); !h.ok() {
		t.Error(h)
	}
}
