package bgppeer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Message types (RFC 4271 §4.1, RFC 2918).
const (
	TypeOpen         uint8 = 1
	TypeUpdate       uint8 = 2
	TypeNotification uint8 = 3
	TypeKeepalive    uint8 = 4
	TypeRouteRefresh uint8 = 5
)

// Sizes (RFC 4271 §4, RFC 8654).
const (
	HeaderLen          = 19
	MaxMessageLen      = 4096
	MaxExtendedMessage = 65535
)

// Path attribute type codes and flags used here (RFC 4271 §4.3).
const (
	AttrOrigin         uint8  = 1
	AttrASPath         uint8  = 2
	AttrNextHop        uint8  = 3
	AttrMPReach        uint8  = 14
	AttrMPUnreach      uint8  = 15
	FlagOptional       uint8  = 0x80
	FlagTransitive     uint8  = 0x40
	FlagPartial        uint8  = 0x20
	FlagExtendedLength uint8  = 0x10
	asSequence         uint8  = 2
	asTrans            uint16 = 23456
)

// Family is an AFI/SAFI pair, AFI in the upper 16 bits (as GoBGP's
// bgp.Family).
type Family uint32

// The families this peer speaks.
const (
	IPv4Unicast Family = 1<<16 | 1
	IPv6Unicast Family = 2<<16 | 1
)

// AFI and SAFI of f.
func (f Family) AFI() uint16 { return uint16(f >> 16) }
func (f Family) SAFI() uint8 { return uint8(f) }

func (f Family) String() string {
	switch f {
	case IPv4Unicast:
		return "ipv4-unicast"
	case IPv6Unicast:
		return "ipv6-unicast"
	}
	return fmt.Sprintf("afi %d safi %d", f.AFI(), f.SAFI())
}

// Marker is the all-ones marker of RFC 4271 §4.1.
var Marker = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Header returns a 19-byte header with the given marker, length field and
// type, whatever they are: the length field need not match anything.
func Header(marker [16]byte, length uint16, typ uint8) []byte {
	b := make([]byte, HeaderLen)
	copy(b, marker[:])
	binary.BigEndian.PutUint16(b[16:18], length)
	b[18] = typ
	return b
}

// Message returns a message of type typ with body, header length set to
// match (truncated to 16 bits if the body is longer than a BGP message can
// be: the caller asked for it).
func Message(typ uint8, body []byte) []byte {
	b := Header(Marker, uint16(HeaderLen+len(body)), typ)
	return append(b, body...)
}

// Keepalive is a KEEPALIVE message.
func Keepalive() []byte { return Message(TypeKeepalive, nil) }

// Notification is a NOTIFICATION message body.
type Notification struct {
	Code, Subcode uint8
	Data          []byte
}

// Encode returns the NOTIFICATION message.
func (n Notification) Encode() []byte {
	return Message(TypeNotification, append([]byte{n.Code, n.Subcode}, n.Data...))
}

func (n Notification) String() string {
	s := fmt.Sprintf("%d/%d (%s)", n.Code, n.Subcode, NotificationName(n.Code, n.Subcode))
	if len(n.Data) > 0 {
		s += fmt.Sprintf(" data %x", n.Data)
	}
	return s
}

// NotificationName names an error code and subcode (RFC 4271 §4.5 and
// 6.1-6.6, RFC 4486, RFC 8538).
func NotificationName(code, subcode uint8) string {
	codes := map[uint8]string{1: "Message Header Error", 2: "OPEN Message Error", 3: "UPDATE Message Error",
		4: "Hold Timer Expired", 5: "Finite State Machine Error", 6: "Cease", 7: "ROUTE-REFRESH Message Error"}
	subcodes := map[uint8]map[uint8]string{
		1: {1: "Connection Not Synchronized", 2: "Bad Message Length", 3: "Bad Message Type"},
		2: {1: "Unsupported Version Number", 2: "Bad Peer AS", 3: "Bad BGP Identifier",
			4: "Unsupported Optional Parameter", 6: "Unacceptable Hold Time", 7: "Unsupported Capability"},
		3: {1: "Malformed Attribute List", 2: "Unrecognized Well-known Attribute", 3: "Missing Well-known Attribute",
			4: "Attribute Flags Error", 5: "Attribute Length Error", 6: "Invalid ORIGIN Attribute",
			8: "Invalid NEXT_HOP Attribute", 9: "Optional Attribute Error", 10: "Invalid Network Field",
			11: "Malformed AS_PATH"},
		6: {1: "Maximum Number of Prefixes Reached", 2: "Administrative Shutdown", 3: "Peer De-configured",
			4: "Administrative Reset", 5: "Connection Rejected", 6: "Other Configuration Change",
			7: "Connection Collision Resolution", 8: "Out of Resources", 9: "Hard Reset"},
	}
	name, ok := codes[code]
	if !ok {
		return "unknown code"
	}
	if sub, ok := subcodes[code][subcode]; ok {
		return name + " / " + sub
	}
	if subcode == 0 {
		return name
	}
	return fmt.Sprintf("%s / subcode %d", name, subcode)
}

// GracefulRestart is the graceful-restart capability (RFC 4724) of an
// OPEN.
type GracefulRestart struct {
	Restarting   bool   // R: this speaker has restarted
	Notification bool   // N: RFC 8538 graceful notification support
	Time         uint16 // restart time in seconds (12 bits)
	// Forwarding lists the families in the capability, with F (forwarding
	// state preserved) set for those mapped to true.
	Forwarding map[Family]bool
}

// Open is what an OPEN message says.
type Open struct {
	ASN             uint32
	HoldTime        uint16 // seconds
	RouterID        netip.Addr
	Families        []Family
	RouteRefresh    bool
	ExtendedMessage bool
	GracefulRestart *GracefulRestart
}

// Encode returns the OPEN message: one Capabilities optional parameter
// holding multiprotocol (one per family), route refresh, 4-octet AS,
// extended message and graceful restart, as asked.
func (o Open) Encode() ([]byte, error) {
	if !o.RouterID.Is4() {
		return nil, fmt.Errorf("OPEN: router ID %v is not an IPv4 address", o.RouterID)
	}
	var caps []byte
	capability := func(code uint8, value []byte) {
		caps = append(caps, code, uint8(len(value)))
		caps = append(caps, value...)
	}
	for _, f := range o.Families {
		capability(1, []byte{byte(f.AFI() >> 8), byte(f.AFI()), 0, f.SAFI()})
	}
	if o.RouteRefresh {
		capability(2, nil)
	}
	if o.ExtendedMessage {
		capability(6, nil)
	}
	if gr := o.GracefulRestart; gr != nil {
		if gr.Time > 0xfff {
			return nil, fmt.Errorf("OPEN: graceful restart time %d does not fit 12 bits", gr.Time)
		}
		v := binary.BigEndian.AppendUint16(nil, gr.Time)
		if gr.Restarting {
			v[0] |= 0x80
		}
		if gr.Notification {
			v[0] |= 0x40
		}
		for _, f := range sortedFamilies(gr.Forwarding) {
			flags := uint8(0)
			if gr.Forwarding[f] {
				flags = 0x80
			}
			v = append(v, byte(f.AFI()>>8), byte(f.AFI()), f.SAFI(), flags)
		}
		capability(64, v)
	}
	capability(65, binary.BigEndian.AppendUint32(nil, o.ASN))
	if len(caps) > 255 {
		return nil, errors.New("OPEN: capabilities longer than one optional parameter holds")
	}

	myAS := asTrans
	if o.ASN <= 0xffff {
		myAS = uint16(o.ASN)
	}
	body := []byte{4}
	body = binary.BigEndian.AppendUint16(body, myAS)
	body = binary.BigEndian.AppendUint16(body, o.HoldTime)
	id := o.RouterID.As4()
	body = append(body, id[:]...)
	body = append(body, uint8(2+len(caps)), 2, uint8(len(caps)))
	body = append(body, caps...)
	return Message(TypeOpen, body), nil
}

func sortedFamilies(m map[Family]bool) []Family {
	var out []Family
	for f := range m {
		out = append(out, f)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Attr encodes one path attribute with the given flags, type and value;
// the extended-length flag is set when the value needs it (or when flags
// already asks for it).
func Attr(flags, typ uint8, value []byte) []byte {
	if len(value) > 255 {
		flags |= FlagExtendedLength
	}
	b := []byte{flags, typ}
	if flags&FlagExtendedLength != 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(value)))
	} else {
		b = append(b, uint8(len(value)))
	}
	return append(b, value...)
}

// OriginAttr, ASPathAttr and NextHopAttr are the well-known mandatory
// attributes.
func OriginAttr(origin uint8) []byte { return Attr(FlagTransitive, AttrOrigin, []byte{origin}) }

// ASPathAttr is one AS_SEQUENCE of 4-octet AS numbers (empty for none).
func ASPathAttr(path []uint32) []byte {
	var v []byte
	if len(path) > 0 {
		v = append(v, asSequence, uint8(len(path)))
		for _, as := range path {
			v = binary.BigEndian.AppendUint32(v, as)
		}
	}
	return Attr(FlagTransitive, AttrASPath, v)
}

// NextHopAttr is the IPv4 NEXT_HOP attribute.
func NextHopAttr(nh netip.Addr) []byte {
	a := nh.As4()
	return Attr(FlagTransitive, AttrNextHop, a[:])
}

// EncodePrefix appends prefix p in NLRI form (length in bits, then the
// significant bytes).
func EncodePrefix(b []byte, p netip.Prefix) []byte {
	p = p.Masked()
	bits := p.Bits()
	addr := p.Addr().AsSlice()
	return append(append(b, uint8(bits)), addr[:(bits+7)/8]...)
}

// MPReachAttr is MP_REACH_NLRI for family f with one next hop (16 bytes
// for IPv6, or 32 with a link-local one after it) and prefixes.
func MPReachAttr(f Family, nextHops []netip.Addr, prefixes []netip.Prefix) []byte {
	v := binary.BigEndian.AppendUint16(nil, f.AFI())
	v = append(v, f.SAFI())
	var nh []byte
	for _, a := range nextHops {
		nh = append(nh, a.AsSlice()...)
	}
	v = append(v, uint8(len(nh)))
	v = append(v, nh...)
	v = append(v, 0) // reserved
	for _, p := range prefixes {
		v = EncodePrefix(v, p)
	}
	return Attr(FlagOptional, AttrMPReach, v)
}

// MPUnreachAttr is MP_UNREACH_NLRI for family f (no prefixes: End-of-RIB).
func MPUnreachAttr(f Family, prefixes []netip.Prefix) []byte {
	v := binary.BigEndian.AppendUint16(nil, f.AFI())
	v = append(v, f.SAFI())
	for _, p := range prefixes {
		v = EncodePrefix(v, p)
	}
	return Attr(FlagOptional, AttrMPUnreach, v)
}

// UpdateBody assembles an UPDATE body from its three parts, as given:
// withdrawn routes (already in NLRI form), path attributes (already
// encoded, concatenated) and NLRI.
func UpdateBody(withdrawn, attrs, nlri []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(withdrawn)))
	b = append(b, withdrawn...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(attrs)))
	b = append(b, attrs...)
	return append(b, nlri...)
}

// Update is a well-formed UPDATE. IPv4 prefixes go into the classic
// fields (withdrawn routes, NLRI with a NEXT_HOP attribute), IPv6 ones
// into MP_UNREACH_NLRI and MP_REACH_NLRI. Withdrawals only (no NLRI)
// carry no attributes but MP_UNREACH_NLRI.
type Update struct {
	Withdrawn []netip.Prefix
	NLRI      []netip.Prefix
	// NextHop is the IPv4 NEXT_HOP (for IPv4 NLRI) or the IPv6 global next
	// hop (for IPv6 NLRI); NextHop6 overrides it for IPv6 NLRI when both
	// families are announced at once.
	NextHop  netip.Addr
	NextHop6 netip.Addr
	// LinkLocal, if valid, follows the IPv6 global next hop (32 bytes).
	LinkLocal netip.Addr
	ASPath    []uint32
	Origin    uint8 // 0 IGP, 1 EGP, 2 INCOMPLETE
	// Extra are further encoded attributes, appended as they are.
	Extra [][]byte
}

// Body returns the UPDATE body.
func (u Update) Body() ([]byte, error) {
	var w4, w6, n4, n6 []netip.Prefix
	for _, p := range u.Withdrawn {
		if !p.IsValid() {
			return nil, fmt.Errorf("UPDATE: invalid withdrawn prefix %v", p)
		}
		if p.Addr().Is4() {
			w4 = append(w4, p)
		} else {
			w6 = append(w6, p)
		}
	}
	for _, p := range u.NLRI {
		if !p.IsValid() {
			return nil, fmt.Errorf("UPDATE: invalid prefix %v", p)
		}
		if p.Addr().Is4() {
			n4 = append(n4, p)
		} else {
			n6 = append(n6, p)
		}
	}
	var withdrawn, attrs, nlri []byte
	for _, p := range w4 {
		withdrawn = EncodePrefix(withdrawn, p)
	}
	if len(u.NLRI) > 0 {
		attrs = append(attrs, OriginAttr(u.Origin)...)
		attrs = append(attrs, ASPathAttr(u.ASPath)...)
	}
	if len(n4) > 0 {
		if !u.NextHop.Is4() {
			return nil, fmt.Errorf("UPDATE: IPv4 NLRI need an IPv4 next hop, not %v", u.NextHop)
		}
		attrs = append(attrs, NextHopAttr(u.NextHop)...)
		for _, p := range n4 {
			nlri = EncodePrefix(nlri, p)
		}
	}
	if len(n6) > 0 {
		nh := u.NextHop6
		if !nh.IsValid() {
			nh = u.NextHop
		}
		if !nh.Is6() || nh.Is4In6() {
			return nil, fmt.Errorf("UPDATE: IPv6 NLRI need an IPv6 next hop, not %v", nh)
		}
		hops := []netip.Addr{nh}
		if u.LinkLocal.IsValid() {
			hops = append(hops, u.LinkLocal)
		}
		attrs = append(attrs, MPReachAttr(IPv6Unicast, hops, n6)...)
	}
	if len(w6) > 0 {
		attrs = append(attrs, MPUnreachAttr(IPv6Unicast, w6)...)
	}
	for _, a := range u.Extra {
		attrs = append(attrs, a...)
	}
	return UpdateBody(withdrawn, attrs, nlri), nil
}

// Encode returns the UPDATE message. It refuses one longer than 65535
// bytes (no length field holds it) but not one past 4096: whether that is
// allowed depends on the session (extended messages), and sending one
// anyway is a test.
func (u Update) Encode() ([]byte, error) {
	body, err := u.Body()
	if err != nil {
		return nil, err
	}
	if HeaderLen+len(body) > MaxExtendedMessage {
		return nil, fmt.Errorf("UPDATE: %d bytes do not fit a BGP message", HeaderLen+len(body))
	}
	return Message(TypeUpdate, body), nil
}

// EndOfRIB is the End-of-RIB marker for f (RFC 4724 §2).
func EndOfRIB(f Family) []byte {
	if f == IPv4Unicast {
		return Message(TypeUpdate, UpdateBody(nil, nil, nil))
	}
	return Message(TypeUpdate, UpdateBody(nil, MPUnreachAttr(f, nil), nil))
}

// PackUpdates announces prefixes (one family) with the attributes of tmpl
// in as few UPDATEs as fit maxLen bytes each (MaxMessageLen if 0), at most
// perMessage prefixes each (no limit if 0).
func PackUpdates(tmpl Update, prefixes []netip.Prefix, perMessage, maxLen int) ([][]byte, error) {
	if maxLen <= 0 {
		maxLen = MaxMessageLen
	}
	tmpl.NLRI, tmpl.Withdrawn = nil, nil
	var out [][]byte
	for len(prefixes) > 0 {
		// Grow the chunk while it fits; prefixes are at most 17 bytes, so
		// start from a safe guess and adjust.
		n := len(prefixes)
		if perMessage > 0 && n > perMessage {
			n = perMessage
		}
		for {
			u := tmpl
			u.NLRI = prefixes[:n]
			msg, err := u.Encode()
			if err != nil {
				return nil, err
			}
			if len(msg) <= maxLen {
				out = append(out, msg)
				break
			}
			if n == 1 {
				return nil, fmt.Errorf("UPDATE: one prefix with these attributes is %d bytes, more than %d", len(msg), maxLen)
			}
			// Shrink in proportion to the excess, at least by one.
			next := n * (maxLen - HeaderLen) / len(msg)
			if next >= n {
				next = n - 1
			}
			n = max(next, 1)
		}
		prefixes = prefixes[n:]
	}
	return out, nil
}
