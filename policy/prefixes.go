package policy

import (
	"net/netip"
	"slices"
)

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ lo, hi netip.Addr }

// prefixRange returns the range a (masked) prefix covers.
func prefixRange(p netip.Prefix) addrRange {
	p = p.Masked()
	return addrRange{lo: p.Addr(), hi: lastAddr(p)}
}

// lastAddr is the highest address inside p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

// normalize sorts ranges and merges the ones that overlap or touch, so that
// the same set of addresses always gives the same ranges, whatever order and
// shape the policy wrote them in. Families never merge (an IPv4 range sorts
// before every IPv6 one and they are never adjacent by Next).
func normalize(rs []addrRange) []addrRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.lo.Compare(b.lo) })
	out := []addrRange{rs[0]}
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		next := last.hi.Next()
		if r.lo.Is4() == last.lo.Is4() && (r.lo.Compare(last.hi) <= 0 || (next.IsValid() && r.lo == next)) {
			if r.hi.Compare(last.hi) > 0 {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtract removes cut from the (normalized) ranges rs.
func subtract(rs []addrRange, cut addrRange) []addrRange {
	var out []addrRange
	for _, r := range rs {
		if r.lo.Is4() != cut.lo.Is4() || cut.hi.Compare(r.lo) < 0 || cut.lo.Compare(r.hi) > 0 {
			out = append(out, r)
			continue
		}
		if cut.lo.Compare(r.lo) > 0 {
			out = append(out, addrRange{r.lo, cut.lo.Prev()})
		}
		if cut.hi.Compare(r.hi) < 0 {
			out = append(out, addrRange{cut.hi.Next(), r.hi})
		}
	}
	return out
}

// rangePrefixes splits a range into the fewest prefixes that cover exactly
// it: nftables interval sets take prefixes, and a canonical split means the
// same addresses always become the same set elements, so diffs stay small.
func rangePrefixes(r addrRange) []netip.Prefix {
	var out []netip.Prefix
	lo := r.lo
	for {
		// The shortest prefix that starts at lo and ends at or before hi.
		bits := lo.BitLen()
		for b := 0; b <= lo.BitLen(); b++ {
			p := netip.PrefixFrom(lo, b)
			if p.Masked().Addr() == lo && lastAddr(p).Compare(r.hi) <= 0 {
				bits = b
				break
			}
		}
		p := netip.PrefixFrom(lo, bits)
		out = append(out, p)
		end := lastAddr(p)
		if end.Compare(r.hi) >= 0 {
			return out
		}
		lo = end.Next()
	}
}

// canonicalPrefixes returns the fewest prefixes covering exactly the union
// of rs, IPv4 first, each family in address order.
func canonicalPrefixes(rs []addrRange) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range normalize(rs) {
		out = append(out, rangePrefixes(r)...)
	}
	return out
}
