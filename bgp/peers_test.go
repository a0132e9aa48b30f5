package bgp

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
)

// basePeer is a fully populated peer, so that every field a case changes
// starts from a non-zero value and the change is visible to ==.
func basePeer(addr string) Peer {
	return Peer{
		Address:           netip.MustParseAddr(addr),
		ASN:               65002,
		Description:       "tor-a",
		LocalAddress:      netip.MustParseAddr("192.0.2.1"),
		Port:              1179,
		Passive:           false,
		HoldTime:          9 * time.Second,
		KeepaliveInterval: 3 * time.Second,
		ConnectRetry:      5 * time.Second,
		MultihopTTL:       2,
		Password:          "s3cret",
		MaxPrefixes:       100,
		GracefulRestart:   true,
	}
}

func peerMap(ps ...Peer) map[netip.Addr]Peer {
	m := make(map[netip.Addr]Peer, len(ps))
	for _, p := range ps {
		m[p.Address] = p
	}
	return m
}

// addrsOf returns the sorted addresses of ps: diffPeers walks maps, so
// its output order is not defined and the test must not depend on it.
func addrsOf(ps []Peer) []netip.Addr {
	out := make([]netip.Addr, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Address)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func TestDiffPeers(t *testing.T) {
	const a, b, c = "192.0.2.10", "192.0.2.11", "2001:db8::12"
	changed := func(addr string, f func(*Peer)) Peer {
		p := basePeer(addr)
		f(&p)
		return p
	}
	type want struct{ add, update, recreate, remove []string }
	cases := []struct {
		name             string
		applied, desired []Peer
		want             want
	}{
		{name: "identical sets do nothing",
			applied: []Peer{basePeer(a), basePeer(c)}, desired: []Peer{basePeer(a), basePeer(c)}},
		{name: "both empty", want: want{}},
		{name: "hold time updates in place",
			applied: []Peer{basePeer(a), basePeer(b)},
			desired: []Peer{changed(a, func(p *Peer) { p.HoldTime = 30 * time.Second }), basePeer(b)},
			want:    want{update: []string{a}}},
		{name: "keepalive updates in place",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.KeepaliveInterval = 10 * time.Second })},
			want:    want{update: []string{a}}},
		{name: "connect retry updates in place",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.ConnectRetry = time.Second })},
			want:    want{update: []string{a}}},
		{name: "max prefixes updates in place",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.MaxPrefixes = 5 })},
			want:    want{update: []string{a}}},
		{name: "multihop TTL updates in place",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.MultihopTTL = 5 })},
			want:    want{update: []string{a}}},
		{name: "description updates in place",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.Description = "tor-b" })},
			want:    want{update: []string{a}}},
		{name: "ASN change recreates",
			applied: []Peer{basePeer(a), basePeer(b)},
			desired: []Peer{changed(a, func(p *Peer) { p.ASN = 65099 }), basePeer(b)},
			want:    want{recreate: []string{a}}},
		{name: "password change recreates",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.Password = "other" })},
			want:    want{recreate: []string{a}}},
		{name: "local address change recreates",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.LocalAddress = netip.MustParseAddr("192.0.2.2") })},
			want:    want{recreate: []string{a}}},
		{name: "port change recreates",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.Port = 179 })},
			want:    want{recreate: []string{a}}},
		{name: "passive change recreates",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.Passive = true })},
			want:    want{recreate: []string{a}}},
		{name: "graceful restart change recreates",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.GracefulRestart = false })},
			want:    want{recreate: []string{a}}},
		{name: "route reflector client change recreates",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.RouteReflectorClient = true })},
			want:    want{recreate: []string{a}}},
		{name: "route reflector cluster ID change recreates",
			applied: []Peer{changed(a, func(p *Peer) { p.RouteReflectorClient = true; p.RouteReflectorClusterID = "10.0.0.1" })},
			desired: []Peer{changed(a, func(p *Peer) { p.RouteReflectorClient = true; p.RouteReflectorClusterID = "10.0.0.9" })},
			want:    want{recreate: []string{a}}},
		{name: "a session change wins over an in-place change in the same edit",
			applied: []Peer{basePeer(a)},
			desired: []Peer{changed(a, func(p *Peer) { p.HoldTime = time.Minute; p.ASN = 65099 })},
			want:    want{recreate: []string{a}}},
		{name: "new peer is added, existing untouched",
			applied: []Peer{basePeer(a)},
			desired: []Peer{basePeer(a), basePeer(c)},
			want:    want{add: []string{c}}},
		{name: "missing peer is removed, others untouched",
			applied: []Peer{basePeer(a), basePeer(b), basePeer(c)},
			desired: []Peer{basePeer(a), basePeer(c)},
			want:    want{remove: []string{b}}},
		{name: "everything at once",
			applied: []Peer{basePeer(a), basePeer(b)},
			desired: []Peer{changed(a, func(p *Peer) { p.Passive = true }), basePeer(c)},
			want:    want{recreate: []string{a}, add: []string{c}, remove: []string{b}}},
		{name: "all removed",
			applied: []Peer{basePeer(a), basePeer(c)},
			want:    want{remove: []string{a, c}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := diffPeers(peerMap(tc.applied...), peerMap(tc.desired...))
			check := func(what string, got []Peer, want []string) {
				t.Helper()
				var w []netip.Addr
				for _, s := range want {
					w = append(w, netip.MustParseAddr(s))
				}
				slices.SortFunc(w, func(a, b netip.Addr) int { return a.Compare(b) })
				if g := addrsOf(got); !slices.Equal(g, w) {
					t.Errorf("%s = %v, want %v", what, g, w)
				}
			}
			check("add", plan.add, tc.want.add)
			check("update", plan.update, tc.want.update)
			check("recreate", plan.recreate, tc.want.recreate)
			check("remove", plan.remove, tc.want.remove)

			// Added, updated and re-created peers must carry the desired
			// config (that is what gets applied); removed ones the applied.
			desired, applied := peerMap(tc.desired...), peerMap(tc.applied...)
			for _, l := range [][]Peer{plan.add, plan.update, plan.recreate} {
				for _, p := range l {
					if p != desired[p.Address] {
						t.Errorf("plan carries %+v for %s, want the desired %+v", p, p.Address, desired[p.Address])
					}
				}
			}
			for _, p := range plan.remove {
				if p != applied[p.Address] {
					t.Errorf("remove carries %+v, want the applied %+v", p, applied[p.Address])
				}
			}
		})
	}
}

func TestToAPIPeerFamilies(t *testing.T) {
	for _, tc := range []struct {
		addr string
		afi  api.Family_Afi
	}{
		{"192.0.2.10", api.Family_AFI_IP},
		{"2001:db8::10", api.Family_AFI_IP6},
	} {
		t.Run(tc.addr, func(t *testing.T) {
			p := basePeer(tc.addr)
			p.LocalAddress = netip.Addr{}
			out := toAPIPeer(p, peerOptions{restartTime: 0, restarting: false, gobgpLimit: true})
			if len(out.AfiSafis) != 1 {
				t.Fatalf("AfiSafis = %v, want exactly one family", out.AfiSafis)
			}
			cfg := out.AfiSafis[0].Config
			if !cfg.Enabled || cfg.Family.Afi != tc.afi || cfg.Family.Safi != api.Family_SAFI_UNICAST {
				t.Errorf("family config = %v, want enabled %v unicast", cfg, tc.afi)
			}
			if out.Conf.NeighborAddress != tc.addr {
				t.Errorf("NeighborAddress = %q, want %q", out.Conf.NeighborAddress, tc.addr)
			}
			// An unset local address must not be rendered as "invalid IP".
			if out.Transport.LocalAddress != "" {
				t.Errorf("LocalAddress = %q for an unset local address, want empty", out.Transport.LocalAddress)
			}
		})
	}
}

func TestToAPIPeerFields(t *testing.T) {
	p := basePeer("192.0.2.10")
	out := toAPIPeer(p, peerOptions{restartTime: 120 * time.Second, restarting: false, gobgpLimit: true})

	// Description is deliberately not checked: whether GoBGP gets it at
	// all is open (see TestDescriptionChangeKeepsSession).
	if out.Conf.PeerAsn != p.ASN || out.Conf.AuthPassword != p.Password {
		t.Errorf("Conf = %v, want ASN %d and password from the peer", out.Conf, p.ASN)
	}
	tc := out.Timers.Config
	if tc.HoldTime != 9 || tc.KeepaliveInterval != 3 || tc.ConnectRetry != 5 {
		t.Errorf("timers = %v, want hold 9 keepalive 3 connect-retry 5", tc)
	}
	if tc.IdleHoldTimeAfterReset != 1 {
		t.Errorf("IdleHoldTimeAfterReset = %d, want 1 s (our own resets should heal at once)", tc.IdleHoldTimeAfterReset)
	}
	if out.Transport.RemotePort != 1179 || out.Transport.PassiveMode || out.Transport.LocalAddress != "192.0.2.1" {
		t.Errorf("transport = %v, want port 1179, active, local 192.0.2.1", out.Transport)
	}

	pl := out.AfiSafis[0].PrefixLimits
	if pl == nil || pl.MaxPrefixes != p.MaxPrefixes || pl.Family.Afi != api.Family_AFI_IP {
		t.Errorf("PrefixLimits = %v, want max %d for ipv4", pl, p.MaxPrefixes)
	} else if pl.ShutdownThresholdPct == 0 || pl.ShutdownThresholdPct > 100 {
		t.Errorf("ShutdownThresholdPct = %d, want a percentage in 1..100", pl.ShutdownThresholdPct)
	}

	if out.EbgpMultihop == nil || !out.EbgpMultihop.Enabled || out.EbgpMultihop.MultihopTtl != 2 {
		t.Errorf("EbgpMultihop = %v, want enabled with TTL 2", out.EbgpMultihop)
	}

	gr := out.GracefulRestart
	if gr == nil || !gr.Enabled || gr.RestartTime != 120 || gr.LocalRestarting {
		t.Errorf("GracefulRestart = %v, want enabled, restart time 120, not restarting", gr)
	}
	if mp := out.AfiSafis[0].MpGracefulRestart; mp == nil || mp.Config == nil || !mp.Config.Enabled {
		t.Errorf("MpGracefulRestart = %v, want enabled for the family (GoBGP sends no End-of-RIB without it)", mp)
	}

	// LocalRestarting is what makes GoBGP set the R and F bits in OPEN.
	if gr := toAPIPeer(p, peerOptions{restartTime: 120 * time.Second, restarting: true, gobgpLimit: true}).GracefulRestart; gr == nil || !gr.LocalRestarting {
		t.Errorf("restarting=true: GracefulRestart = %v, want LocalRestarting", gr)
	}

	// GoBGP's own prefix check is off unless asked for (limits.go), and
	// a held peer is administratively down.
	if pl := toAPIPeer(p, peerOptions{}).AfiSafis[0].PrefixLimits; pl != nil {
		t.Errorf("gobgpLimit false: PrefixLimits = %v, want none", pl)
	}
	if !toAPIPeer(p, peerOptions{adminDown: true}).Conf.AdminDown || out.Conf.AdminDown {
		t.Error("AdminDown must follow peerOptions.adminDown")
	}

	// The zero values turn the features off rather than configuring
	// "limit 0" or "TTL 0".
	p.MaxPrefixes, p.MultihopTTL, p.GracefulRestart = 0, 0, false
	p.Passive = true
	out = toAPIPeer(p, peerOptions{restartTime: 120 * time.Second, restarting: true, gobgpLimit: true})
	if out.AfiSafis[0].PrefixLimits != nil {
		t.Errorf("MaxPrefixes 0: PrefixLimits = %v, want none", out.AfiSafis[0].PrefixLimits)
	}
	if out.EbgpMultihop != nil {
		t.Errorf("MultihopTTL 0: EbgpMultihop = %v, want none", out.EbgpMultihop)
	}
	if out.GracefulRestart != nil || out.AfiSafis[0].MpGracefulRestart != nil {
		t.Errorf("GracefulRestart off: got %v / %v, want none", out.GracefulRestart, out.AfiSafis[0].MpGracefulRestart)
	}
	if !out.Transport.PassiveMode {
		t.Error("Passive peer: PassiveMode not set")
	}
}

func TestToAPIPeerRouteReflector(t *testing.T) {
	p := basePeer("192.0.2.10")
	if rr := toAPIPeer(p, peerOptions{restartTime: 0, restarting: false, gobgpLimit: true}).RouteReflector; rr != nil && rr.RouteReflectorClient {
		t.Errorf("plain peer rendered as route reflector client: %v", rr)
	}
	p.RouteReflectorClient, p.RouteReflectorClusterID = true, "10.0.0.1"
	rr := toAPIPeer(p, peerOptions{restartTime: 0, restarting: false, gobgpLimit: true}).RouteReflector
	if rr == nil || !rr.RouteReflectorClient || rr.RouteReflectorClusterId != "10.0.0.1" {
		t.Errorf("RouteReflector = %v, want client with cluster ID 10.0.0.1", rr)
	}
}

func TestSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   time.Duration
		want uint64
	}{
		{0, 0}, {-time.Second, 0},
		// A sub-second timer must not become 0, which GoBGP reads as
		// "use the default".
		{time.Millisecond, 1}, {1500 * time.Millisecond, 1},
		{3 * time.Second, 3}, {time.Minute, 60},
	} {
		if got := seconds(tc.in); got != tc.want {
			t.Errorf("seconds(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}
