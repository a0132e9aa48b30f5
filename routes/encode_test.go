package routes

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// These tests decode the bytes appendRouteRequest produces with the
// standard library's netlink parser, independently of the encoder, so an
// encoding mistake shows up here rather than as a puzzling kernel error.

// decodedRoute is one rtnetlink route request taken apart.
type decodedRoute struct {
	hdr                syscall.NlMsghdr
	family, dstLen     uint8
	table, proto       uint8
	scope, rtType      uint8
	attrTable          uint32
	hasAttrTable       bool
	dst, gateway       netip.Addr
	multipath          []netip.Addr
	multipathIfindexes []int32
	hasMultipath       bool
	attrTypes          []uint16
}

func decodeRequests(t *testing.T, b []byte) []decodedRoute {
	t.Helper()
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		t.Fatalf("ParseNetlinkMessage: %v", err)
	}
	// The kernel walks a batch by NLMSG_ALIGN(nlmsg_len); every message
	// must be aligned and the lengths must cover the buffer exactly.
	total := 0
	for _, m := range msgs {
		if m.Header.Len%4 != 0 {
			t.Errorf("message seq %d has unaligned length %d", m.Header.Seq, m.Header.Len)
		}
		total += int(m.Header.Len)
	}
	if total != len(b) {
		t.Errorf("message lengths add up to %d, buffer holds %d", total, len(b))
	}
	out := make([]decodedRoute, 0, len(msgs))
	for _, m := range msgs {
		if len(m.Data) < syscall.SizeofRtMsg {
			t.Fatalf("message seq %d too short for rtmsg: %d bytes", m.Header.Seq, len(m.Data))
		}
		d := decodedRoute{
			hdr:    m.Header,
			family: m.Data[0], dstLen: m.Data[1],
			table: m.Data[4], proto: m.Data[5], scope: m.Data[6], rtType: m.Data[7],
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			t.Fatalf("ParseNetlinkRouteAttr seq %d: %v", m.Header.Seq, err)
		}
		for _, a := range attrs {
			d.attrTypes = append(d.attrTypes, a.Attr.Type)
			switch a.Attr.Type {
			case unix.RTA_DST:
				d.dst = mustAddr(t, a.Value)
			case unix.RTA_GATEWAY:
				d.gateway = mustAddr(t, a.Value)
			case unix.RTA_TABLE:
				if len(a.Value) != 4 {
					t.Fatalf("RTA_TABLE is %d bytes, want 4", len(a.Value))
				}
				d.hasAttrTable = true
				d.attrTable = binary.NativeEndian.Uint32(a.Value)
			case unix.RTA_MULTIPATH:
				d.hasMultipath = true
				d.multipath, d.multipathIfindexes = decodeMultipath(t, a.Value)
			}
		}
		out = append(out, d)
	}
	return out
}

// decodeMultipath walks struct rtnexthop entries (len, flags, hops,
// ifindex) each followed by its own attributes.
func decodeMultipath(t *testing.T, b []byte) (gws []netip.Addr, ifindexes []int32) {
	t.Helper()
	for len(b) > 0 {
		if len(b) < 8 {
			t.Fatalf("rtnexthop truncated: %d bytes left", len(b))
		}
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < 8 || l > len(b) {
			t.Fatalf("rtnexthop length %d with %d bytes left", l, len(b))
		}
		if b[3] != 0 {
			t.Errorf("rtnh_hops = %d, want 0 (weight 1, as ip route does)", b[3])
		}
		ifindexes = append(ifindexes, int32(binary.NativeEndian.Uint32(b[4:8])))
		attrs := b[8:l]
		found := false
		for len(attrs) >= 4 {
			al := int(binary.NativeEndian.Uint16(attrs[0:2]))
			at := binary.NativeEndian.Uint16(attrs[2:4])
			if al < 4 || al > len(attrs) {
				t.Fatalf("nested attribute length %d with %d bytes left", al, len(attrs))
			}
			if at == unix.RTA_GATEWAY {
				gws = append(gws, mustAddr(t, attrs[4:al]))
				found = true
			}
			attrs = attrs[min((al+3)&^3, len(attrs)):]
		}
		if !found {
			t.Errorf("rtnexthop without RTA_GATEWAY")
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return gws, ifindexes
}

func mustAddr(t *testing.T, b []byte) netip.Addr {
	t.Helper()
	a, ok := netip.AddrFromSlice(b)
	if !ok {
		t.Fatalf("address attribute of %d bytes", len(b))
	}
	return a
}

func encodeOne(t *testing.T, o op, table uint32, proto uint8, seq uint32) decodedRoute {
	t.Helper()
	// A non-empty prefix in the buffer proves the encoder appends at the
	// end and patches its own length, not the buffer's start.
	prev := appendRouteRequest(nil, op{route: blackhole("192.0.2.0/24")}, 254, 201, seq-1)
	b := appendRouteRequest(slices.Clone(prev), o, table, proto, seq)
	if !slices.Equal(b[:len(prev)], prev) {
		t.Fatal("appendRouteRequest changed bytes before its own message")
	}
	ds := decodeRequests(t, b)
	if len(ds) != 2 {
		t.Fatalf("decoded %d messages, want 2", len(ds))
	}
	return ds[1]
}

func TestAppendRouteRequest(t *testing.T) {
	const proto = 201
	tests := []struct {
		name      string
		op        op
		table     uint32
		wantType  uint16
		wantFlags uint16
		wantRTN   uint8
		wantScope uint8
		wantGw    string
		wantMP    []string
	}{
		{
			name:      "new v4 single hop is an exclusive create",
			op:        op{route: via("10.1.0.0/24", "10.0.0.2")},
			table:     unix.RT_TABLE_MAIN,
			wantType:  unix.RTM_NEWROUTE,
			wantFlags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL,
			wantRTN:   unix.RTN_UNICAST, wantScope: unix.RT_SCOPE_UNIVERSE,
			wantGw: "10.0.0.2",
		},
		{
			name:      "replace v4 host route",
			op:        op{route: via("10.1.0.7/32", "10.0.1.2"), replace: true},
			table:     unix.RT_TABLE_MAIN,
			wantType:  unix.RTM_NEWROUTE,
			wantFlags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_REPLACE,
			wantRTN:   unix.RTN_UNICAST, wantScope: unix.RT_SCOPE_UNIVERSE,
			wantGw: "10.0.1.2",
		},
		{
			name:      "delete matches any scope and carries no gateway",
			op:        op{route: via("10.1.0.0/24", "10.0.0.2", "10.0.1.2"), delete: true},
			table:     unix.RT_TABLE_MAIN,
			wantType:  unix.RTM_DELROUTE,
			wantFlags: unix.NLM_F_REQUEST,
			wantScope: unix.RT_SCOPE_NOWHERE,
		},
		{
			name:      "blackhole in a table above 255",
			op:        op{route: blackhole("2001:db8:9::/64")},
			table:     1000,
			wantType:  unix.RTM_NEWROUTE,
			wantFlags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL,
			wantRTN:   unix.RTN_BLACKHOLE, wantScope: unix.RT_SCOPE_UNIVERSE,
		},
		{
			name:      "delete blackhole",
			op:        op{route: blackhole("10.9.0.0/24"), delete: true},
			table:     100,
			wantType:  unix.RTM_DELROUTE,
			wantFlags: unix.NLM_F_REQUEST,
			wantScope: unix.RT_SCOPE_NOWHERE,
		},
		{
			name:      "v6 ECMP with two gateways",
			op:        op{route: via("2001:db8:2::/64", "2001:db8::2", "2001:db8::3").normalize(), replace: true},
			table:     unix.RT_TABLE_MAIN,
			wantType:  unix.RTM_NEWROUTE,
			wantFlags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_REPLACE,
			wantRTN:   unix.RTN_UNICAST, wantScope: unix.RT_SCOPE_UNIVERSE,
			wantMP: []string{"2001:db8::2", "2001:db8::3"},
		},
		{
			name:      "v4 default route ECMP in table 4000000000",
			op:        op{route: via("0.0.0.0/0", "10.0.0.2", "10.0.1.2")},
			table:     4000000000,
			wantType:  unix.RTM_NEWROUTE,
			wantFlags: unix.NLM_F_REQUEST | unix.NLM_F_CREATE | unix.NLM_F_EXCL,
			wantRTN:   unix.RTN_UNICAST, wantScope: unix.RT_SCOPE_UNIVERSE,
			wantMP: []string{"10.0.0.2", "10.0.1.2"},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seq := uint32(1000 + i)
			d := encodeOne(t, tc.op, tc.table, proto, seq)
			r := tc.op.route

			if d.hdr.Type != tc.wantType {
				t.Errorf("nlmsg_type = %d, want %d", d.hdr.Type, tc.wantType)
			}
			if d.hdr.Flags != tc.wantFlags {
				t.Errorf("nlmsg_flags = %#x, want %#x", d.hdr.Flags, tc.wantFlags)
			}
			// Acks are asked for per chunk by apply, never per request.
			if d.hdr.Flags&unix.NLM_F_ACK != 0 {
				t.Error("request asks for its own ack; that is one round trip per route")
			}
			if d.hdr.Seq != seq {
				t.Errorf("seq = %d, want %d", d.hdr.Seq, seq)
			}
			wantFamily := uint8(unix.AF_INET)
			if r.Prefix.Addr().Is6() {
				wantFamily = unix.AF_INET6
			}
			if d.family != wantFamily {
				t.Errorf("family = %d, want %d", d.family, wantFamily)
			}
			if int(d.dstLen) != r.Prefix.Bits() {
				t.Errorf("dst_len = %d, want %d", d.dstLen, r.Prefix.Bits())
			}
			if d.dst != r.Prefix.Addr() {
				t.Errorf("RTA_DST = %v, want %v", d.dst, r.Prefix.Addr())
			}
			// rtm_table is one byte: a table past 255 must be
			// RT_TABLE_UNSPEC there and travel in RTA_TABLE only,
			// otherwise the kernel would use the truncated number.
			wantRtmTable := uint8(unix.RT_TABLE_UNSPEC)
			if tc.table < 256 {
				wantRtmTable = uint8(tc.table)
			}
			if d.table != wantRtmTable {
				t.Errorf("rtm_table = %d, want %d", d.table, wantRtmTable)
			}
			if !d.hasAttrTable || d.attrTable != tc.table {
				t.Errorf("RTA_TABLE = %d (present %v), want %d", d.attrTable, d.hasAttrTable, tc.table)
			}
			// The protocol in a delete is what limits it to our routes.
			if d.proto != proto {
				t.Errorf("rtm_protocol = %d, want %d", d.proto, proto)
			}
			// A delete's rtm_type is left to the kernel test: which type
			// matches which kernel route is the kernel's business, see
			// TestKernelRemovesOwnRoutesOfOtherTypes.
			if !tc.op.delete && d.rtType != tc.wantRTN {
				t.Errorf("rtm_type = %d, want %d", d.rtType, tc.wantRTN)
			}
			if d.scope != tc.wantScope {
				t.Errorf("rtm_scope = %d, want %d", d.scope, tc.wantScope)
			}

			var wantGw netip.Addr
			if tc.wantGw != "" {
				wantGw = netip.MustParseAddr(tc.wantGw)
			}
			if d.gateway != wantGw {
				t.Errorf("RTA_GATEWAY = %v, want %v", d.gateway, wantGw)
			}
			if len(tc.wantMP) == 0 {
				if d.hasMultipath {
					t.Errorf("unexpected RTA_MULTIPATH %v", d.multipath)
				}
			} else {
				if !d.hasMultipath {
					t.Fatal("no RTA_MULTIPATH for an ECMP route")
				}
				if got, want := fmt.Sprint(d.multipath), fmt.Sprint(addrs(tc.wantMP...)); got != want {
					t.Errorf("multipath gateways = %s, want %s", got, want)
				}
				// ifindex 0 lets the kernel find each device from its
				// gateway, like for a single next hop.
				for _, ix := range d.multipathIfindexes {
					if ix != 0 {
						t.Errorf("rtnh_ifindex = %d, want 0", ix)
					}
				}
			}
			for _, at := range d.attrTypes {
				if at == unix.RTA_PRIORITY {
					// Without a metric the kernel's default applies, the
					// same one `ip route` uses, so EEXIST against a
					// foreign route at the same prefix is reliable.
					t.Error("request carries RTA_PRIORITY")
				}
			}
		})
	}
}

// TestAppendRouteRequestBatch checks that many requests packed into one
// buffer stay separable, as apply sends them.
func TestAppendRouteRequestBatch(t *testing.T) {
	var b []byte
	var ops []op
	for i := range 300 {
		r := via(fmt.Sprintf("100.64.%d.%d/32", i/256, i%256), "10.0.0.2")
		switch i % 3 {
		case 1:
			r = via(fmt.Sprintf("2001:db8:%x::/64", i), "2001:db8::2", "2001:db8::3")
		case 2:
			r = blackhole(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
		}
		o := op{route: r, replace: i%5 == 0, delete: i%7 == 0}
		ops = append(ops, o)
		b = appendRouteRequest(b, o, 254, 201, uint32(i+1))
	}
	ds := decodeRequests(t, b)
	if len(ds) != len(ops) {
		t.Fatalf("decoded %d requests, want %d", len(ds), len(ops))
	}
	for i, d := range ds {
		if d.hdr.Seq != uint32(i+1) {
			t.Errorf("request %d has seq %d", i, d.hdr.Seq)
		}
		if d.dst != ops[i].route.Prefix.Addr() || int(d.dstLen) != ops[i].route.Prefix.Bits() {
			t.Errorf("request %d is for %v/%d, want %v", i, d.dst, d.dstLen, ops[i].route.Prefix)
		}
	}
}

// TestParseNlmsgerr feeds a kernel-shaped error reply (NETLINK_CAP_ACK:
// only the request's header echoed, then NLMSGERR_ATTR_MSG) through the
// parser that turns it into the text shown in Snapshot.
func TestParseNlmsgerr(t *testing.T) {
	reqHdr := make([]byte, nlmsgHdrLen)
	binary.NativeEndian.PutUint32(reqHdr[0:], 52)
	binary.NativeEndian.PutUint16(reqHdr[4:], unix.RTM_NEWROUTE)
	binary.NativeEndian.PutUint32(reqHdr[8:], 7)

	build := func(code int32, flags uint16, reason string) syscall.NetlinkMessage {
		data := binary.NativeEndian.AppendUint32(nil, uint32(code))
		data = append(data, reqHdr...)
		if reason != "" {
			// An unrelated attribute first, to check the walk skips it.
			data = appendAttr(data, unix.NLMSGERR_ATTR_OFFS, binary.NativeEndian.AppendUint32(nil, 28))
			data = appendAttr(data, unix.NLMSGERR_ATTR_MSG, append([]byte(reason), 0))
		}
		return syscall.NetlinkMessage{Header: syscall.NlMsghdr{Type: unix.NLMSG_ERROR, Flags: flags, Seq: 7}, Data: data}
	}

	const reason = "Nexthop has invalid gateway"
	errno, msg := parseNlmsgerr(build(-int32(unix.ENETUNREACH), unix.NLM_F_CAPPED|unix.NLM_F_ACK_TLVS, reason))
	if errno != unix.ENETUNREACH || msg != reason {
		t.Errorf("parseNlmsgerr = %v, %q; want %v, %q", errno, msg, unix.ENETUNREACH, reason)
	}
	ke := kernelError{errno: errno, reason: msg}
	if !strings.Contains(ke.Error(), reason) || !strings.Contains(ke.Error(), unix.ENETUNREACH.Error()) {
		t.Errorf("kernelError text %q lacks errno or reason", ke.Error())
	}

	// Without NLM_F_ACK_TLVS, bytes after the header are not TLVs.
	errno, msg = parseNlmsgerr(build(-int32(unix.EEXIST), 0, reason))
	if errno != unix.EEXIST || msg != "" {
		t.Errorf("without ACK_TLVS: %v, %q; want %v and no reason", errno, msg, unix.EEXIST)
	}
	// A success ack is no error.
	if errno, _ := parseNlmsgerr(build(0, 0, "")); errno != 0 {
		t.Errorf("ack parsed as errno %v", errno)
	}
	// A truncated message must not panic.
	if errno, _ := parseNlmsgerr(syscall.NetlinkMessage{Data: []byte{1, 2}}); errno == 0 {
		t.Error("short message parsed as success")
	}
}

func TestCheckProtocol(t *testing.T) {
	for _, p := range []uint8{0, 2, 12, 186} {
		err := CheckProtocol(p)
		if err == nil {
			t.Errorf("CheckProtocol(%d) accepted a protocol another router writes", p)
			continue
		}
		// The error must name the number so the operator knows which
		// setting to change.
		if !strings.Contains(err.Error(), fmt.Sprint(p)) {
			t.Errorf("CheckProtocol(%d) = %q, does not name the number", p, err)
		}
	}
	if err := CheckProtocol(201); err != nil {
		t.Errorf("CheckProtocol(201) = %v, want nil (podroute's default)", err)
	}
	// New must refuse before opening anything.
	if r, err := New(Config{Protocol: 186}); err == nil {
		r.Close()
		t.Error("New accepted protocol 186 (FRR bgp)")
	}
}

// TestReservedProtocols checks the one list config and the reconciler
// share: ascending, not overlapping, one name per number, and the message
// naming the owner of each number.
func TestReservedProtocols(t *testing.T) {
	next := 0
	for i, r := range ReservedProtocols {
		if int(r.Lo) < next || r.Hi < r.Lo {
			t.Errorf("ReservedProtocols[%d] %d..%d overlaps or is out of order", i, r.Lo, r.Hi)
		}
		if len(r.Names) != int(r.Hi-r.Lo)+1 {
			t.Errorf("ReservedProtocols[%d] %d..%d has %d names", i, r.Lo, r.Hi, len(r.Names))
		}
		next = int(r.Hi) + 1
	}
	for _, c := range []struct {
		p    uint8
		want string // in the error; "" means allowed
	}{
		{0, "reserved for unspec (the kernel)"},
		{4, "reserved for static (the kernel)"},
		{5, ""},
		{7, ""},
		{8, "reserved for gated"},
		{12, "reserved for bird"},
		{16, "reserved for dhcp"},
		{18, "reserved for keepalived"},
		{19, ""},
		{42, "reserved for babel"},
		{99, "reserved for openr"},
		{185, ""},
		{186, "reserved for bgp (FRR)"},
		{196, "reserved for static (FRR)"},
		{198, "reserved for srte (FRR)"},
		{199, ""},
		{201, ""},
		{255, ""},
	} {
		err := CheckProtocol(c.p)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckProtocol(%d) = %v, want nil", c.p, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckProtocol(%d) = %v, want %q", c.p, err, c.want)
		}
	}
	if r, ok := ReservedProtocol(190); !ok || r.Owners() != "FRR (bgp, isis, ospf, rip, ripng, nhrp, eigrp, ldp, sharp, pbr, static, openfabric, srte)" {
		t.Errorf("ReservedProtocol(190) = %+v, %v", r, ok)
	}
	if r, _ := ReservedProtocol(17); r.Owners() != "mrouted, keepalived" {
		t.Errorf("Owners of 17..18 = %q", r.Owners())
	}
}
