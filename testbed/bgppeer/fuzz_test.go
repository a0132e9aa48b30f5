package bgppeer

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// seedMessages are valid messages and the malformed ones the end-to-end
// tests send, as fuzz seeds.
func seedMessages(tb testing.TB) [][]byte {
	tb.Helper()
	nh4, nh6 := netip.MustParseAddr("172.31.9.2"), netip.MustParseAddr("fd00:31:9::2")
	open, err := Open{ASN: 65099, HoldTime: 9, RouterID: nh4, Families: []Family{IPv4Unicast, IPv6Unicast},
		GracefulRestart: &GracefulRestart{Time: 120, Forwarding: map[Family]bool{IPv4Unicast: true}}}.Encode()
	if err != nil {
		tb.Fatal(err)
	}
	var out [][]byte
	for _, u := range []Update{
		{NLRI: prefixes("10.244.128.0/24", "10.244.129.7/32"), NextHop: nh4, ASPath: []uint32{65099}},
		{NLRI: prefixes("fd00:244:0:80::/64"), NextHop: nh6, LinkLocal: netip.MustParseAddr("fe80::2"), ASPath: []uint32{65099}},
		{Withdrawn: prefixes("10.244.128.0/24", "fd00:244:0:80::/64")},
	} {
		b, err := u.Encode()
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	mpReach3 := func(f Family) []byte {
		v := binary.BigEndian.AppendUint16(nil, f.AFI())
		return Message(TypeUpdate, UpdateBody(nil, append(append(OriginAttr(0), ASPathAttr([]uint32{65099})...),
			Attr(FlagOptional, AttrMPReach, append(v, f.SAFI()))...), nil))
	}
	out = append(out, open, Keepalive(), Notification{Code: 6, Subcode: 2}.Encode(),
		EndOfRIB(IPv4Unicast), EndOfRIB(IPv6Unicast),
		Message(9, nil), Message(255, []byte{1, 2, 3}),
		mpReach3(IPv4Unicast), mpReach3(IPv6Unicast),
		Header(Marker, 18, TypeKeepalive), Header(Marker, 5000, TypeUpdate), Header([16]byte{}, 19, TypeKeepalive))
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		m, _ := Mutate(r, out[i%3])
		out = append(out, m)
	}
	return out
}

// FuzzGoBGPDecode feeds arbitrary bytes to GoBGP's message parser and
// UPDATE validation the way GoBGP's session code calls them on what a
// peer sent (pkg/server/fsm.go, recvMessageWithError and
// recvMessageloop, v4.8.0): neither may panic, and every error must be a
// *bgp.MessageError, since fsm.go asserts that type without checking
// (`fmsg.MsgData.(*bgp.BGPMessage)` after an error of another type,
// `validationErr.(*bgp.MessageError)`): any other error would crash
// podrouted.
func FuzzGoBGPDecode(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, ipv6 bool) {
		if len(data) < HeaderLen {
			return
		}
		hdr := &bgp.BGPHeader{}
		if err := hdr.DecodeFromBytes(data[:HeaderLen]); err != nil {
			checkMessageError(t, "header", err)
			return
		}
		if hdr.Len > MaxMessageLen {
			return // refused before the body is read
		}
		body := data[HeaderLen:]
		if int(hdr.Len)-HeaderLen < len(body) {
			body = body[:int(hdr.Len)-HeaderLen]
		} else if int(hdr.Len)-HeaderLen > len(body) {
			return // GoBGP would wait for the rest
		}
		fam := bgp.RF_IPv4_UC
		if ipv6 {
			fam = bgp.RF_IPv6_UC
		}
		rfs := map[bgp.Family]bgp.BGPAddPathMode{fam: bgp.BGP_ADD_PATH_NONE}
		m, err := bgp.ParseBGPBody(hdr, body, &bgp.MarshallingOption{AddPath: rfs})
		if err != nil {
			checkMessageError(t, "parse", err)
			return
		}
		if u, ok := m.Body.(*bgp.BGPUpdate); ok {
			if ok, err := bgp.ValidateUpdateMsg(u, rfs, true, false, false); !ok {
				checkMessageError(t, "validate", err)
			}
		}
	})
}

func checkMessageError(t *testing.T, step string, err error) {
	t.Helper()
	var me *bgp.MessageError
	if _, ok := err.(*bgp.MessageError); !ok {
		t.Fatalf("%s: error of type %T (%v), not *bgp.MessageError (as errors.As: %v): GoBGP's session code would panic on it",
			step, err, err, errors.As(err, &me))
	}
}

// FuzzPeerReader feeds arbitrary bytes to the peer's own reader: it must
// not panic, and must end when the connection does.
func FuzzPeerReader(f *testing.F) {
	for _, m := range seedMessages(f) {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c1, c2 := net.Pipe()
		p := New(c1, Config{ASN: 65099, RouterID: netip.MustParseAddr("192.0.2.1")})
		go func() {
			c2.Write(data)
			c2.Close()
		}()
		if !p.WaitClosed(5 * time.Second) {
			t.Fatal("the reader did not end with the connection")
		}
		p.State()
		p.Outcome()
	})
}
