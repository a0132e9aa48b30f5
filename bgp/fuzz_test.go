package bgp

import (
	"io"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// FuzzRIBView feeds podroute's decoding of GoBGP's best-path events
// (pathPrefix, pathNextHop, the view's set arithmetic and counters) with
// paths built from arbitrary UPDATE messages that GoBGP's parser accepts,
// as GoBGP hands them over: NLRI and attributes as parsed, withdrawals as
// withdrawn paths. Nothing may panic, and the view's counters must agree
// with its table afterwards.
func FuzzRIBView(f *testing.F) {
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := gobgp.ParseBGPMessage(data)
		if err != nil {
			return
		}
		upd, ok := msg.Body.(*gobgp.BGPUpdate)
		if !ok {
			return
		}
		peers := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}
		v := newRIBView(slog.New(slog.NewTextHandler(io.Discard, nil)), true)
		v.setLimit(peers[0], 3)
		for i, peer := range peers {
			var paths []*apiutil.Path
			for _, n := range upd.NLRI {
				paths = append(paths, &apiutil.Path{Nlri: n.NLRI, Attrs: upd.PathAttributes, PeerAddress: peer})
			}
			for _, a := range upd.PathAttributes {
				if mp, ok := a.(*gobgp.PathAttributeMpReachNLRI); ok {
					for _, n := range mp.Value {
						paths = append(paths, &apiutil.Path{Nlri: n.NLRI, Attrs: upd.PathAttributes, PeerAddress: peer, Stale: i == 1})
					}
				}
			}
			for _, n := range upd.WithdrawnRoutes {
				paths = append(paths, &apiutil.Path{Nlri: n.NLRI, PeerAddress: peer, Withdrawal: true})
			}
			v.apply(paths)
			v.apply(paths) // twice: a repeat changes nothing
		}
		var learned uint64
		inUse := map[netip.Addr]uint64{}
		for k, id := range v.paths {
			if id == 0 {
				t.Fatalf("%s maps to the empty set", k.Prefix())
			}
			learned++
			for _, p := range v.sets.get(id).peers {
				inUse[p]++
			}
		}
		if learned != v.learned[0]+v.learned[1] {
			t.Fatalf("learned counters %v, table holds %d", v.learned, learned)
		}
		for _, p := range peers {
			if inUse[p] != v.inUse[p] {
				t.Fatalf("in use for %s: counter %d, table %d", p, v.inUse[p], inUse[p])
			}
		}
		if v.inUse[peers[0]] > 3 {
			t.Fatalf("peer limited to 3 prefixes has %d in use", v.inUse[peers[0]])
		}
	})
}

// fuzzSeeds are valid UPDATEs: IPv4 NLRI with NEXT_HOP, a withdrawal, and
// IPv6 MP_REACH.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	var out [][]byte
	add := func(m *gobgp.BGPMessage) {
		b, err := m.Serialize()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	nh, _ := gobgp.NewPathAttributeNextHop(netip.MustParseAddr("192.0.2.1"))
	var nlri []*gobgp.IPAddrPrefix
	for _, p := range []string{"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"} {
		n, _ := gobgp.NewIPAddrPrefix(netip.MustParsePrefix(p))
		nlri = append(nlri, n)
	}
	pn := func(ns ...*gobgp.IPAddrPrefix) []gobgp.PathNLRI {
		var out []gobgp.PathNLRI
		for _, n := range ns {
			out = append(out, gobgp.PathNLRI{NLRI: n})
		}
		return out
	}
	origin := gobgp.NewPathAttributeOrigin(0)
	add(gobgp.NewBGPUpdateMessage(nil, []gobgp.PathAttributeInterface{origin, nh}, pn(nlri...)))
	add(gobgp.NewBGPUpdateMessage(pn(nlri[0]), nil, nil))
	n6, _ := gobgp.NewIPAddrPrefix(netip.MustParsePrefix("fd00:244:0:1::/64"))
	mp, _ := gobgp.NewPathAttributeMpReachNLRI(gobgp.RF_IPv6_UC, pn(n6), netip.MustParseAddr("2001:db8::1"))
	add(gobgp.NewBGPUpdateMessage(nil, []gobgp.PathAttributeInterface{origin, mp}, nil))
	return out
}
