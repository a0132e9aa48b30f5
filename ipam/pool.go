package ipam

import (
	"fmt"
	"math/big"
	"net/netip"
	"strings"
)

// Smallest pod CIDRs accepted: a /30 leaves two IPv4 addresses once the
// network and broadcast addresses are set aside, a /126 three IPv6 ones once
// the subnet-router anycast address is. Anything smaller is almost certainly a
// typo (a node address pasted where the pod CIDR belongs).
const (
	maxBitsV4 = 30
	maxBitsV6 = 126
	// rfc2526Bits: subnets at least this large (a /120 or shorter) also set
	// aside their highest 128 addresses, the reserved subnet anycast
	// addresses of RFC 2526.
	rfc2526Bits  = 120
	rfc2526Count = 128
)

// ParseCIDRs parses this node's pod CIDRs: at most one per address family,
// each in canonical form (no host bits set) and large enough to hold pods.
// what names the setting in errors ("podCIDRs").
func ParseCIDRs(what string, cidrs []string) ([]netip.Prefix, error) {
	if len(cidrs) == 0 {
		return nil, fmt.Errorf("%s is empty: give this node's pod CIDR(s), at most one IPv4 and one IPv6, e.g. [\"10.244.1.0/24\", \"fd00:244:0:1::/64\"]", what)
	}
	var out []netip.Prefix
	var seen [2]string // by family: v4, v6
	for i, s := range cidrs {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%s[%d] %q is not a CIDR (want e.g. 10.244.1.0/24): %v", what, i, s, err)
		}
		if p.Addr().Zone() != "" || p.Addr().Is4In6() {
			return nil, fmt.Errorf("%s[%d] %q: want a plain IPv4 or IPv6 CIDR", what, i, s)
		}
		if m := p.Masked(); m != p {
			return nil, fmt.Errorf("%s[%d] %q has host bits set: the CIDR is %s", what, i, s, m)
		}
		fam, max := 0, maxBitsV4
		if p.Addr().Is6() {
			fam, max = 1, maxBitsV6
		}
		if p.Bits() > max {
			return nil, fmt.Errorf("%s[%d] %q is too small for pods: want /%d or larger", what, i, s, max)
		}
		if seen[fam] != "" {
			return nil, fmt.Errorf("%s has two %s CIDRs, %q and %q: a node has at most one pod CIDR per address family", what, familyName(p.Addr()), seen[fam], s)
		}
		seen[fam] = s
		out = append(out, p)
	}
	return out, nil
}

func familyName(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// lastAddr is the highest address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	if p.Addr().Is4() {
		b := p.Addr().As4()
		setHostBits(b[:], p.Bits())
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	setHostBits(b[:], p.Bits())
	return netip.AddrFrom16(b)
}

func setHostBits(b []byte, bits int) {
	for i := range b {
		switch {
		case bits >= 8*(i+1):
		case bits <= 8*i:
			b[i] = 0xff
		default:
			b[i] |= 0xff >> (bits - 8*i)
		}
	}
}

// size is the number of addresses in p.
func size(p netip.Prefix) *big.Int {
	return new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits()))
}

// builtinReserved counts the addresses of p that are never handed out,
// whatever the caller reserves on top: see isBuiltinReserved.
func builtinReserved(p netip.Prefix) int64 {
	if p.Addr().Is4() {
		return 2 // network and broadcast
	}
	if p.Bits() <= rfc2526Bits {
		return 1 + rfc2526Count
	}
	return 1
}

// isBuiltinReserved reports whether a is an address of p that no pod may
// hold: the IPv4 network and broadcast addresses; the IPv6 subnet-router
// anycast address (all host bits zero, which routers answer to) and, in
// subnets of /120 or larger, the 128 reserved subnet anycast addresses at the
// top (RFC 2526).
func isBuiltinReserved(p netip.Prefix, a netip.Addr) bool {
	first, last := p.Masked().Addr(), lastAddr(p)
	if a == first {
		return true
	}
	if a.Is4() {
		return a == last
	}
	if p.Bits() <= rfc2526Bits {
		lowest := last
		for range rfc2526Count - 1 {
			lowest = lowest.Prev()
		}
		return a.Compare(lowest) >= 0
	}
	return false
}

// Capacity is how many addresses of p can be handed out: its size less the
// built-in reserved addresses and those of reserved that lie inside p.
func Capacity(p netip.Prefix, reserved []netip.Addr) *big.Int {
	n := size(p)
	n.Sub(n, big.NewInt(builtinReserved(p)))
	seen := map[netip.Addr]bool{}
	for _, a := range reserved {
		if p.Contains(a) && !isBuiltinReserved(p, a) && !seen[a] {
			seen[a] = true
			n.Sub(n, big.NewInt(1))
		}
	}
	if n.Sign() < 0 {
		n.SetInt64(0)
	}
	return n
}

// next returns the address after a in p, wrapping from the last one to the
// first.
func next(p netip.Prefix, a netip.Addr) netip.Addr {
	n := a.Next()
	if !n.IsValid() || !p.Contains(n) {
		return p.Masked().Addr()
	}
	return n
}
