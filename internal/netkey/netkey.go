// Package netkey is a prefix as a compact map key without pointers.
//
// netip.Prefix holds a pointer (the address's zone handle), so a map keyed
// by it is scanned by the garbage collector on every cycle: with a full
// table of 100k prefixes in several maps, that scanning was a large part
// of podrouted's CPU while it loaded a table. Key has the same content as
// a zone-less Prefix and no pointer. Packages bgp and routes both keep
// per-prefix state this way; this package holds nothing else.
package netkey

import "net/netip"

// Key is a prefix as a comparable value without pointers. Zones are
// dropped (routes and BGP prefixes have none).
type Key struct {
	addr [16]byte
	bits uint8
	v6   bool
}

// Of returns p's key; p should be masked.
func Of(p netip.Prefix) Key {
	return Key{addr: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

// Prefix returns the prefix k was made of.
func (k Key) Prefix() netip.Prefix {
	a := netip.AddrFrom16(k.addr)
	if !k.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(k.bits))
}

// Is6 reports whether k is an IPv6 prefix.
func (k Key) Is6() bool { return k.v6 }
