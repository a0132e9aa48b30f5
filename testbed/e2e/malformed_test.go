package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/podroute/podroute/internal/testutil"
	"github.com/podroute/podroute/testbed/bgppeer"
)

// malformedCase is one bad thing a configured peer sends on a fresh
// connection.
type malformedCase struct {
	name string
	ipv6 bool // from an IPv6 raw address (an IPv6 unicast session)
	// established: complete the handshake (and announce one valid
	// prefix) first; otherwise the bytes go out after podrouted's OPEN
	// and before ours.
	established bool
	send        func(p *bgppeer.Peer) error
	// want is the NOTIFICATION RFC 4271/7606 ask for, "code/subcode" or
	// "code/*"; "closed" when closing the connection is enough (no
	// message to answer); "" when any outcome short of a crash will do.
	want string
	// holdTimer: the reset comes from podrouted's hold timer (the peer
	// goes silent), so waiting takes the hold time.
	holdTimer bool
	// never is a prefix the bad message carries: it must not reach the
	// kernel, whatever else happens.
	never netip.Prefix
}

// mpReach3 is an UPDATE whose MP_REACH_NLRI is 3 bytes: AFI and SAFI,
// no next-hop length.
func mpReach3(f bgppeer.Family) []byte {
	v := binary.BigEndian.AppendUint16(nil, f.AFI())
	attrs := append(bgppeer.OriginAttr(0), bgppeer.ASPathAttr([]uint32{rawASN})...)
	attrs = append(attrs, bgppeer.Attr(bgppeer.FlagOptional, bgppeer.AttrMPReach, append(v, f.SAFI()))...)
	return bgppeer.Message(bgppeer.TypeUpdate, bgppeer.UpdateBody(nil, attrs, nil))
}

// bigUpdate is a well-formed UPDATE of more than 4096 bytes (a thousand
// /32s), which a session without extended messages must refuse.
func bigUpdate() []byte {
	var ps []netip.Prefix
	for i := range 1000 {
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(200 + i/256), byte(i)}), 32))
	}
	b, err := bgppeer.Update{NLRI: ps, NextHop: netip.MustParseAddr("172.31.9.2"), ASPath: []uint32{rawASN}}.Encode()
	if err != nil {
		panic(err)
	}
	return b
}

var malformedCases = []malformedCase{
	{name: "type 9 before OPEN", want: "1/3",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Message(9, nil)) }},
	{name: "type 255 before OPEN", want: "1/3",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Message(255, []byte{1, 2, 3, 4})) }},
	{name: "type 9 after Established", established: true, want: "1/3",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Message(9, nil)) }},
	{name: "type 255 after Established", established: true, want: "1/3",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Message(255, []byte{1, 2, 3, 4})) }},
	{name: "3-byte MP_REACH_NLRI, IPv4", established: true, want: "3/*",
		send: func(p *bgppeer.Peer) error { return p.Send(mpReach3(bgppeer.IPv4Unicast)) }},
	{name: "3-byte MP_REACH_NLRI, IPv6", ipv6: true, established: true, want: "3/*",
		send: func(p *bgppeer.Peer) error { return p.Send(mpReach3(bgppeer.IPv6Unicast)) }},
	{name: "truncated header (10 of 19 bytes), then silence", established: true, want: "4/0", holdTimer: true,
		send: func(p *bgppeer.Peer) error {
			p.StopKeepalives()
			return p.Send(bgppeer.Keepalive()[:10])
		}},
	{name: "truncated header (10 of 19 bytes), then FIN", established: true, want: "closed",
		send: func(p *bgppeer.Peer) error {
			if err := p.Send(bgppeer.Keepalive()[:10]); err != nil {
				return err
			}
			return p.CloseWrite()
		}},
	{name: "header length 18 (< 19)", established: true, want: "1/2",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Header(bgppeer.Marker, 18, bgppeer.TypeKeepalive)) }},
	{name: "length 200, 60 bytes sent, then silence", established: true, want: "4/0", holdTimer: true,
		send: func(p *bgppeer.Peer) error {
			p.StopKeepalives()
			return p.Send(append(bgppeer.Header(bgppeer.Marker, 200, bgppeer.TypeUpdate), make([]byte, 41)...))
		}},
	{name: "length 5000 (> 4096), 100 bytes sent", established: true, want: "1/2",
		send: func(p *bgppeer.Peer) error {
			return p.Send(append(bgppeer.Header(bgppeer.Marker, 5000, bgppeer.TypeUpdate), make([]byte, 81)...))
		}},
	{name: "UPDATE of 5019 bytes, no extended messages", established: true, want: "1/2",
		send: func(p *bgppeer.Peer) error { return p.Send(bigUpdate()) }},
	{name: "marker of zeros (KEEPALIVE)", established: true, want: "1/1",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Header([16]byte{}, 19, bgppeer.TypeKeepalive)) }},
	{name: "marker of zeros before OPEN", want: "1/1",
		send: func(p *bgppeer.Peer) error { return p.Send(bgppeer.Header([16]byte{}, 19, bgppeer.TypeKeepalive)) }},
	// Not asked by the issue; RFC 7606 §7.1 wants treat-as-withdraw.
	{name: "ORIGIN value 7 (RFC 7606: treat-as-withdraw)", established: true, never: netip.MustParsePrefix("10.244.199.0/24"),
		send: func(p *bgppeer.Peer) error {
			attrs := append(bgppeer.Attr(bgppeer.FlagTransitive, bgppeer.AttrOrigin, []byte{7}), bgppeer.ASPathAttr([]uint32{rawASN})...)
			attrs = append(attrs, bgppeer.NextHopAttr(netip.MustParseAddr("172.31.9.2"))...)
			return p.Send(bgppeer.Message(bgppeer.TypeUpdate, bgppeer.UpdateBody(nil, attrs, bgppeer.EncodePrefix(nil, netip.MustParsePrefix("10.244.199.0/24")))))
		}},
}

// TestMalformedMessages sends every malformed message of issue 8, each on
// a fresh connection from a configured peer, and checks after each that
// podrouted runs, answers `podroute status`, kept its FRR sessions and
// their routes, and reset the offending session with the NOTIFICATION the
// RFCs ask for. One line per case:
//
//	case | survived | NOTIFICATION code/subcode | session state after
func TestMalformedMessages(t *testing.T) {
	l := newHostileLab(t, hostileOptions{raw4: 4, raw6: 2})
	next := map[bool]int{}
	t.Logf("%-50s | %-60s | %-55s | %s", "case", "survived", "NOTIFICATION code/subcode", "session state after")
	for i, tc := range malformedCases {
		// A different address for each case, round robin: podrouted keeps
		// a peer it reset Idle for 5 s, and the next case need not wait.
		addrs := l.raw4
		if tc.ipv6 {
			addrs = l.raw6
		}
		local := addrs[next[tc.ipv6]%len(addrs)]
		next[tc.ipv6]++
		row := l.runMalformed(t, i, tc, local)
		t.Logf("%-50s | %-60s | %-55s | %s", tc.name, row.survived, row.notification, row.after)
	}
}

type malformedRow struct{ survived, notification, after string }

func (l *hostileLab) runMalformed(t *testing.T, i int, tc malformedCase, local netip.Addr) malformedRow {
	t.Helper()
	fail := func(format string, args ...any) malformedRow {
		t.Errorf("%s: "+format, append([]any{tc.name}, args...)...)
		return malformedRow{survived: "?", notification: "?", after: fmt.Sprintf("test step failed: "+format, args...)}
	}
	var p *bgppeer.Peer
	var err error
	var probe netip.Prefix
	if tc.established {
		if p, err = l.establishRaw(local, 20*time.Second); err != nil {
			return fail("session from %s: %v", local, err)
		}
		// A valid route first: it must reach the kernel, and leave it
		// when the session is reset.
		fam, nh := "ipv4", local
		probe = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(130 + i), 0}), 24)
		if tc.ipv6 {
			fam = "ipv6"
			probe = netip.MustParsePrefix(fmt.Sprintf("fd00:244:0:%x::/64", 0x80+i))
		}
		if err := p.SendUpdate(bgppeer.Update{NLRI: []netip.Prefix{probe}, NextHop: nh}); err != nil {
			p.Close()
			return fail("announce %s: %v", probe, err)
		}
		if _, ok := testutil.Poll(20*time.Millisecond, 10*time.Second, func() bool {
			r, err := l.ownRoutes(fam)
			return err == nil && len(r[probe.String()]) == 1 && r[probe.String()][0] == nh.String()
		}); !ok {
			p.Close()
			return fail("valid prefix %s from %s never reached the kernel", probe, local)
		}
	} else if p, _, _, err = l.connectRaw(local, 20*time.Second); err != nil {
		return fail("connection from %s: %v", local, err)
	}
	defer p.Close()

	if err := tc.send(p); err != nil {
		return fail("send: %v", err)
	}
	wait := 5 * time.Second
	if tc.holdTimer {
		wait += l.rawHold
	}
	closed := p.WaitClosed(wait)
	note, gotNote := p.FirstNotification()

	row := malformedRow{notification: p.Outcome()}
	installed := false
	if tc.never.IsValid() {
		r, err := l.ownRoutes("ipv4")
		installed = err != nil || r[tc.never.String()] != nil
		if installed {
			t.Errorf("%s: %s reached the kernel (%v)", tc.name, tc.never, err)
		}
	}
	if !closed && !gotNote {
		row.notification = "none"
	}
	h := l.health()
	row.survived = h.String()
	if !h.ok() {
		t.Errorf("%s: %s", tc.name, h)
	}

	// What podrouted says about the session now, and whether the probe
	// route left the kernel.
	var after []string
	switch {
	case closed:
		after = append(after, "reset (connection closed)")
	case tc.never.IsValid() && !installed:
		after = append(after, "treat-as-withdraw, session stayed up ("+tc.never.String()+" not installed)")
	default:
		after = append(after, "session stayed up")
	}
	if ps, err := l.rawPeerStatus(local); err == nil {
		after = append(after, fmt.Sprintf("podrouted: %s", ps.GetState()))
	}
	if probe.IsValid() {
		fam := "ipv4"
		if tc.ipv6 {
			fam = "ipv6"
		}
		took, gone := testutil.Poll(20*time.Millisecond, 5*time.Second, func() bool {
			r, err := l.ownRoutes(fam)
			return err == nil && r[probe.String()] == nil
		})
		switch {
		case gone:
			after = append(after, fmt.Sprintf("its route left the kernel in %v", took.Round(time.Millisecond)))
		case closed:
			after = append(after, "its route STAYED in the kernel")
			t.Errorf("%s: the reset session's route %s is still in the kernel", tc.name, probe)
		default:
			after = append(after, "its route stayed (session up)")
		}
	}
	row.after = strings.Join(after, "; ")

	switch {
	case tc.want == "":
	case tc.want == "closed":
		if !closed {
			t.Errorf("%s: the connection is still open after %v", tc.name, wait)
		}
	case !gotNote:
		t.Errorf("%s: want NOTIFICATION %s, got %s", tc.name, tc.want, p.Outcome())
	default:
		code, sub, _ := strings.Cut(tc.want, "/")
		if fmt.Sprint(note.Code) != code || (sub != "*" && fmt.Sprint(note.Subcode) != sub) {
			t.Errorf("%s: want NOTIFICATION %s, got %s", tc.name, tc.want, note)
		}
		if !closed {
			t.Errorf("%s: NOTIFICATION %s but the connection stayed open", tc.name, note)
		}
	}
	return row
}
