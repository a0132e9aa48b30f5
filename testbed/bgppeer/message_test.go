package bgppeer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// The encoder is checked against GoBGP's parser: what GoBGP reads back
// from our bytes must be what we meant.

func parse(t *testing.T, msg []byte) *bgp.BGPMessage {
	t.Helper()
	m, err := bgp.ParseBGPMessage(msg)
	if err != nil {
		t.Fatalf("GoBGP cannot parse %x: %v", msg, err)
	}
	if int(m.Header.Len) != len(msg) {
		t.Fatalf("header length %d, message %d bytes", m.Header.Len, len(msg))
	}
	return m
}

func TestOpenParsesInGoBGP(t *testing.T) {
	for _, asn := range []uint32{65099, 4200000001} {
		o := Open{ASN: asn, HoldTime: 9, RouterID: netip.MustParseAddr("192.0.2.9"),
			Families: []Family{IPv4Unicast, IPv6Unicast}, RouteRefresh: true, ExtendedMessage: true,
			GracefulRestart: &GracefulRestart{Restarting: true, Time: 120,
				Forwarding: map[Family]bool{IPv4Unicast: true, IPv6Unicast: false}}}
		b, err := o.Encode()
		if err != nil {
			t.Fatal(err)
		}
		open := parse(t, b).Body.(*bgp.BGPOpen)
		wantAS := uint16(asn)
		if asn > 0xffff {
			wantAS = 23456
		}
		if open.Version != 4 || open.MyAS != wantAS || open.HoldTime != 9 || open.ID.String() != "192.0.2.9" {
			t.Errorf("AS %d: OPEN header fields %+v", asn, open)
		}
		var fams []bgp.Family
		var as4 uint32
		var gr *bgp.CapGracefulRestart
		ext, rr := false, false
		for _, p := range open.OptParams {
			for _, c := range p.(*bgp.OptionParameterCapability).Capability {
				switch c := c.(type) {
				case *bgp.CapMultiProtocol:
					fams = append(fams, c.CapValue)
				case *bgp.CapFourOctetASNumber:
					as4 = c.CapValue
				case *bgp.CapGracefulRestart:
					gr = c
				case *bgp.CapExtendedMessage:
					ext = true
				case *bgp.CapRouteRefresh:
					rr = true
				}
			}
		}
		if !slices.Equal(fams, []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC}) || as4 != asn || !ext || !rr {
			t.Errorf("AS %d: capabilities: families %v, 4-octet AS %d, extended %v, route refresh %v", asn, fams, as4, ext, rr)
		}
		if gr == nil || gr.Flags&0x08 == 0 || gr.Time != 120 || len(gr.Tuples) != 2 ||
			gr.Tuples[0].AFI != 1 || gr.Tuples[0].Flags != 0x80 || gr.Tuples[1].AFI != 2 || gr.Tuples[1].Flags != 0 {
			t.Errorf("AS %d: graceful restart capability %+v", asn, gr)
			if gr != nil {
				for _, tu := range gr.Tuples {
					t.Logf("tuple %+v", tu)
				}
			}
		}
	}
	if _, err := (Open{ASN: 1, RouterID: netip.MustParseAddr("2001:db8::1")}).Encode(); err == nil {
		t.Error("an IPv6 router ID was accepted")
	}
}

func TestKeepaliveAndNotificationParseInGoBGP(t *testing.T) {
	if m := parse(t, Keepalive()); m.Header.Type != bgp.BGP_MSG_KEEPALIVE || len(Keepalive()) != 19 {
		t.Errorf("KEEPALIVE: %+v", m.Header)
	}
	n := parse(t, Notification{Code: 6, Subcode: 1, Data: []byte{0, 1, 1, 0, 0, 0, 200}}.Encode()).Body.(*bgp.BGPNotification)
	if n.ErrorCode != 6 || n.ErrorSubcode != 1 || !bytes.Equal(n.Data, []byte{0, 1, 1, 0, 0, 0, 200}) {
		t.Errorf("NOTIFICATION: %+v", n)
	}
	if got := (Notification{Code: 1, Subcode: 3}).String(); got != "1/3 (Message Header Error / Bad Message Type)" {
		t.Errorf("name: %q", got)
	}
}

// updateContent is what GoBGP read from an UPDATE.
type updateContent struct {
	withdrawn, nlri, mpReach, mpUnreach []string
	nextHop, mpNextHop                  string
	asPath                              string
	origin                              int
}

func readUpdate(t *testing.T, msg []byte) updateContent {
	t.Helper()
	u := parse(t, msg).Body.(*bgp.BGPUpdate)
	c := updateContent{origin: -1}
	for _, w := range u.WithdrawnRoutes {
		c.withdrawn = append(c.withdrawn, w.NLRI.String())
	}
	for _, n := range u.NLRI {
		c.nlri = append(c.nlri, n.NLRI.String())
	}
	for _, a := range u.PathAttributes {
		switch a := a.(type) {
		case *bgp.PathAttributeOrigin:
			c.origin = int(a.Value)
		case *bgp.PathAttributeAsPath:
			var path []string
			for _, seg := range a.Value {
				for _, as := range seg.GetAS() {
					path = append(path, fmt.Sprint(as))
				}
			}
			c.asPath = strings.Join(path, " ")
		case *bgp.PathAttributeNextHop:
			c.nextHop = a.Value.String()
		case *bgp.PathAttributeMpReachNLRI:
			for _, n := range a.Value {
				c.mpReach = append(c.mpReach, n.NLRI.String())
			}
			c.mpNextHop = a.Nexthop.String()
		case *bgp.PathAttributeMpUnreachNLRI:
			for _, n := range a.Value {
				c.mpUnreach = append(c.mpUnreach, n.NLRI.String())
			}
		}
	}
	return c
}

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestUpdateParsesInGoBGP(t *testing.T) {
	u := Update{
		Withdrawn: prefixes("10.244.9.0/24", "0.0.0.0/0", "fd00:244:0:9::/64"),
		NLRI:      prefixes("10.244.7.0/24", "10.244.8.128/25", "10.244.200.7/32", "fd00:244:0:7::/64", "fd00:244::/48"),
		NextHop:   netip.MustParseAddr("172.31.9.2"), NextHop6: netip.MustParseAddr("fd00:31:9::2"),
		ASPath: []uint32{65099, 4200000001}, Origin: 2,
	}
	b, err := u.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got := readUpdate(t, b)
	want := updateContent{
		withdrawn: []string{"10.244.9.0/24", "0.0.0.0/0"},
		nlri:      []string{"10.244.7.0/24", "10.244.8.128/25", "10.244.200.7/32"},
		mpReach:   []string{"fd00:244:0:7::/64", "fd00:244::/48"},
		mpUnreach: []string{"fd00:244:0:9::/64"},
		nextHop:   "172.31.9.2", mpNextHop: "fd00:31:9::2", asPath: "65099 4200000001", origin: 2,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("GoBGP read\n %+v\nwant\n %+v", got, want)
	}

	// Withdrawals only: no ORIGIN or AS_PATH.
	b, err = Update{Withdrawn: prefixes("10.244.9.0/24")}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := readUpdate(t, b); got.origin != -1 || len(got.withdrawn) != 1 {
		t.Errorf("withdrawal: %+v", got)
	}
	// A link-local next hop after the global one.
	b, err = Update{NLRI: prefixes("fd00:244:0:7::/64"), NextHop: netip.MustParseAddr("fd00:31:9::2"),
		LinkLocal: netip.MustParseAddr("fe80::2"), ASPath: []uint32{65099}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := readUpdate(t, b); got.mpNextHop != "fd00:31:9::2" {
		t.Errorf("global + link-local next hop: %+v", got)
	}
	for _, bad := range []Update{
		{NLRI: prefixes("10.244.7.0/24"), NextHop: netip.MustParseAddr("fd00::1")},
		{NLRI: prefixes("fd00::/64"), NextHop: netip.MustParseAddr("10.0.0.1")},
		{NLRI: []netip.Prefix{{}}},
	} {
		if _, err := bad.Encode(); err == nil {
			t.Errorf("%+v was encoded", bad)
		}
	}
}

func TestEndOfRIBParsesInGoBGP(t *testing.T) {
	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		u := parse(t, EndOfRIB(f)).Body.(*bgp.BGPUpdate)
		if eor, fam := u.IsEndOfRib(); !eor || uint32(fam) != uint32(f) {
			t.Errorf("%v: End-of-RIB %v for %v", f, eor, fam)
		}
	}
}

func TestLongAttributeUsesExtendedLength(t *testing.T) {
	// 100 IPv6 /64s in MP_REACH: well over 255 bytes of value.
	var ps []netip.Prefix
	for i := range 100 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 2, 0x44, 0, byte(i)}), 64))
	}
	b, err := Update{NLRI: ps, NextHop: netip.MustParseAddr("fd00:31:9::2"), ASPath: []uint32{65099}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if got := readUpdate(t, b); len(got.mpReach) != 100 {
		t.Errorf("GoBGP read %d prefixes, want 100", len(got.mpReach))
	}
}

func TestPackUpdatesFitAndKeepEveryPrefix(t *testing.T) {
	var ps []netip.Prefix
	for i := range 5000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(128 + i/256), byte(i)}), 32))
	}
	tmpl := Update{NextHop: netip.MustParseAddr("172.31.9.2"), ASPath: []uint32{65099}}
	for _, per := range []int{0, 1, 7} {
		msgs, err := PackUpdates(tmpl, ps, per, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range msgs {
			if len(m) > MaxMessageLen {
				t.Fatalf("per %d: a %d-byte UPDATE", per, len(m))
			}
			c := readUpdate(t, m)
			if per > 0 && len(c.nlri) > per {
				t.Fatalf("per %d: %d prefixes in one UPDATE", per, len(c.nlri))
			}
			got = append(got, c.nlri...)
		}
		if len(got) != len(ps) || got[0] != "10.244.128.0/32" || got[len(got)-1] != ps[len(ps)-1].String() {
			t.Errorf("per %d: %d prefixes back in %d UPDATEs", per, len(got), len(msgs))
		}
		// 5 bytes a /32, about 4050 bytes of NLRI an UPDATE.
		if per == 0 && len(msgs) > 7 {
			t.Errorf("5000 /32s in %d UPDATEs: not packed", len(msgs))
		}
	}
}

func TestHeaderWritesWhatItIsTold(t *testing.T) {
	zero := [16]byte{}
	h := Header(zero, 5000, 255)
	if len(h) != 19 || !bytes.Equal(h[:16], zero[:]) || h[16] != 0x13 || h[17] != 0x88 || h[18] != 255 {
		t.Errorf("header %x", h)
	}
	if _, err := bgp.ParseBGPMessage(Header(zero, 19, TypeKeepalive)); err == nil {
		t.Error("GoBGP accepts a zero marker")
	}
}

func TestMutateIsDeterministicAndKeepsFraming(t *testing.T) {
	base, err := Update{NLRI: prefixes("10.244.7.0/24", "10.244.8.0/24"), NextHop: netip.MustParseAddr("172.31.9.2"),
		ASPath: []uint32{65099}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	orig := slices.Clone(base)
	kinds := map[string]int{}
	for seed := range uint64(2000) {
		a, ka := Mutate(rand.New(rand.NewPCG(seed, 1)), base)
		b, _ := Mutate(rand.New(rand.NewPCG(seed, 1)), base)
		if !bytes.Equal(a, b) {
			t.Fatalf("seed %d: two results", seed)
		}
		framed := !slices.Contains(ka, "header-length")
		if framed && int(a[16])<<8|int(a[17]) != len(a) {
			t.Fatalf("seed %d %v: header length %d, message %d bytes", seed, ka, int(a[16])<<8|int(a[17]), len(a))
		}
		for _, k := range ka {
			kinds[k]++
		}
	}
	for _, m := range mutations {
		if kinds[m.name] == 0 {
			t.Errorf("mutation %s never chosen in 2000 draws", m.name)
		}
	}
	if !bytes.Equal(base, orig) {
		t.Error("Mutate changed its input")
	}
}
